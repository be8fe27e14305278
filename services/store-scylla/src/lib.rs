//! The ScyllaDB backend of [`LinkStore`].
//!
//! * Every statement is prepared once at connect time; the driver's default
//!   load balancing is token-aware and shard-aware, so each request goes
//!   straight to a replica's owning shard.
//! * Every link is written with `INSERT ... IF NOT EXISTS` (a lightweight
//!   transaction), generated codes included: an id reissued after a clock
//!   step or a lost lease is refused, never written over a live link. The
//!   other conditional writes are deletes, key names and revocations.
//! * Expiring links carry a CQL TTL of their remaining life plus
//!   [`EXPIRED_GRACE_SECS`], so they answer 410 Gone for a while and are then
//!   dropped by the database itself; `expires_at` stays the source of truth
//!   for redirects. A TTL is only used when it ends before
//!   [`TTL_HORIZON_SECS`] (2038-01-19, the limit of Cassandra's default
//!   storage mode) and within CQL's 20-year maximum; links expiring later,
//!   or never, are written without one and kept (see [`ttl_secs`]).
//! * Reads and writes use the configured consistency (default
//!   `LOCAL_QUORUM`), lightweight transactions `LOCAL_SERIAL`.

pub mod migrate;

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use snowlink_store::{ApiKey, CodeKind, DeleteOutcome, Link, LinkStore, StoreError, StoreResult};

pub use migrate::{migrate, MigrateReport, MIGRATIONS};

/// How long an expired link keeps answering 410 Gone before its row expires.
pub const EXPIRED_GRACE_SECS: i64 = 30 * 86_400;
/// The largest TTL CQL accepts (20 years).
pub const MAX_TTL_SECS: i64 = 630_720_000;
/// The last second a TTL may end at on every engine we run on: Cassandra
/// (before `storage_compatibility_mode: NONE`) stores expiry as a 32-bit
/// count of seconds and rejects writes whose TTL ends after 2038-01-19.
pub const TTL_HORIZON_SECS: i64 = i32::MAX as i64;

#[derive(Debug, thiserror::Error)]
pub enum ScyllaError {
    #[error("connecting to ScyllaDB: {0}")]
    Connect(Box<scylla::errors::NewSessionError>),
    #[error("CQL request failed: {0}")]
    Execution(Box<scylla::errors::ExecutionError>),
    #[error("preparing a CQL statement: {0}")]
    Prepare(Box<scylla::errors::PrepareError>),
    #[error("waiting for schema agreement: {0}")]
    SchemaAgreement(Box<scylla::errors::SchemaAgreementError>),
    #[error("unexpected CQL result: {0}")]
    Result(String),
    #[error("migration: {0}")]
    Migration(String),
    #[error("configuration: {0}")]
    Config(String),
}

macro_rules! boxed_error {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for ScyllaError {
            fn from(e: $t) -> Self { ScyllaError::$v(Box::new(e)) }
        }
    )*};
}
boxed_error!(
    scylla::errors::NewSessionError => Connect,
    scylla::errors::ExecutionError => Execution,
    scylla::errors::PrepareError => Prepare,
    scylla::errors::SchemaAgreementError => SchemaAgreement
);

macro_rules! result_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ScyllaError {
            fn from(e: $t) -> Self { ScyllaError::Result(e.to_string()) }
        }
    )*};
}
result_error!(
    scylla::errors::IntoRowsResultError,
    scylla::errors::MaybeFirstRowError,
    scylla::errors::FirstRowError,
    scylla::errors::RowsError,
    scylla::errors::DeserializationError,
    scylla::errors::NextRowError,
    scylla::errors::PagerExecutionError,
    scylla::deserialize::TypeCheckError
);

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes; the driver discovers the rest.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Consistency of reads and writes, e.g. `LOCAL_QUORUM`.
    pub consistency: Consistency,
    /// Consistency of the serial phase of lightweight transactions.
    pub serial_consistency: SerialConsistency,
    pub username: Option<String>,
    /// Never printed (`Debug` shows it redacted).
    pub password: Option<secrecy::SecretString>,
    /// Prefer replicas in this datacenter (others only as a fallback).
    pub local_datacenter: Option<String>,
    /// Replication map of the keyspace, used by [`migrate`].
    pub replication: String,
    pub request_timeout: Duration,
}

impl ScyllaConfig {
    /// Defaults for `nodes`: keyspace `snowlink`, `LOCAL_QUORUM`,
    /// `LOCAL_SERIAL`, SimpleStrategy with one replica (a demo node).
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: "snowlink".into(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            username: None,
            password: None,
            local_datacenter: None,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Checks what the driver would only reject later, or what would end up
    /// inside CQL text.
    pub fn validate(&self) -> Result<(), ScyllaError> {
        if self.nodes.is_empty() || self.nodes.iter().any(|n| n.trim().is_empty()) {
            return Err(ScyllaError::Config("no ScyllaDB node given".into()));
        }
        let ks = &self.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.starts_with(|c: char| c.is_ascii_alphabetic())
            || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ScyllaError::Config(format!(
                "keyspace {ks:?} must be 1 to 48 letters, digits or underscores, starting with a letter"
            )));
        }
        let r = self.replication.trim();
        if !(r.starts_with('{') && r.ends_with('}')) || r.contains(';') {
            return Err(ScyllaError::Config(format!(
                "replication {r:?} must be a CQL map such as {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}"
            )));
        }
        Ok(())
    }
}

/// Parses a consistency level name such as `LOCAL_QUORUM` or `quorum`.
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    Ok(match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => {
            return Err(format!(
                "unknown consistency {other:?} (ONE, QUORUM, LOCAL_QUORUM, LOCAL_ONE, EACH_QUORUM, ALL, ...)"
            ))
        }
    })
}

/// Parses `SERIAL` or `LOCAL_SERIAL`.
pub fn parse_serial_consistency(s: &str) -> Result<SerialConsistency, String> {
    match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "SERIAL" => Ok(SerialConsistency::Serial),
        "LOCAL_SERIAL" => Ok(SerialConsistency::LocalSerial),
        other => Err(format!(
            "unknown serial consistency {other:?} (SERIAL or LOCAL_SERIAL)"
        )),
    }
}

/// Opens a session with the configured profile. No keyspace is required to
/// exist yet, so [`migrate`] can use it too.
pub async fn connect(config: &ScyllaConfig) -> Result<Session, ScyllaError> {
    config.validate()?;
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(true);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(config.serial_consistency))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(user), Some(pass)) = (&config.username, &config.password) {
        use secrecy::ExposeSecret;
        let pass = pass.expose_secret();
        builder = builder.user(user, pass);
    }
    Ok(builder.build().await?)
}

/// The TTL, in seconds, to write a link with: its remaining life plus the
/// grace period, or 0 (no TTL: the row is kept) when the link never expires
/// or when that TTL would end past [`TTL_HORIZON_SECS`] or exceed
/// [`MAX_TTL_SECS`]. Such a row is never dropped by the database; it answers
/// 410 Gone after `expires_at` like any other, and its code stays taken.
/// Clamping instead would drop a live link before it expires.
pub fn ttl_secs(expires_at: Option<i64>, now_ms: i64) -> i32 {
    let Some(at) = expires_at else {
        return 0;
    };
    let remaining = (at.saturating_sub(now_ms)).max(0).div_euclid(1000) + 1;
    let ttl = remaining.saturating_add(EXPIRED_GRACE_SECS);
    let ends = now_ms.div_euclid(1000).saturating_add(ttl);
    if ttl > MAX_TTL_SECS || ends > TTL_HORIZON_SECS {
        0
    } else {
        ttl as i32
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn backend(e: impl Into<ScyllaError>) -> StoreError {
    StoreError::backend(e.into())
}

/// `[applied]`, the first column of a lightweight transaction's result.
fn applied(result: scylla::response::query_result::QueryResult) -> Result<bool, ScyllaError> {
    let row: Row = result.into_rows_result()?.first_row()?;
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        other => Err(ScyllaError::Result(format!(
            "expected [applied] as the first column, got {other:?}"
        ))),
    }
}

const LINK_COLUMNS: &str =
    "code, id, kind, url, redirect, created_at, expires_at, deleted_at, owner";

type LinkRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

type KeyRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn link_from_row(row: LinkRow) -> Option<Link> {
    let (code, id, kind, url, redirect, created_at, expires_at, deleted_at, owner) = row;
    Some(Link {
        code,
        id: id?,
        kind: CodeKind::parse(kind.as_deref()?)?,
        url: url?,
        redirect: u16::try_from(redirect?).ok()?,
        created_at: created_at?,
        expires_at,
        deleted_at,
        owner,
    })
}

fn key_from_row(row: KeyRow) -> Option<ApiKey> {
    let (hash, name, prefix, created_at, revoked_at) = row;
    Some(ApiKey {
        name: name?,
        hash,
        prefix: prefix.unwrap_or_default(),
        created_at: created_at?,
        revoked_at,
    })
}

struct Statements {
    insert_link_if_absent: PreparedStatement,
    get_link: PreparedStatement,
    delete_link: PreparedStatement,
    claim_key_name: PreparedStatement,
    insert_key: PreparedStatement,
    find_key: PreparedStatement,
    key_name: PreparedStatement,
    revoke_key: PreparedStatement,
    list_keys: PreparedStatement,
    ping: PreparedStatement,
    get_reservation: PreparedStatement,
    reserve_ids: PreparedStatement,
}

/// Links and API keys in ScyllaDB (or Cassandra).
pub struct ScyllaStore {
    session: Session,
    st: Statements,
}

impl ScyllaStore {
    /// Connects and prepares every statement. The schema must exist: run
    /// [`migrate`] (`snowlink migrate`) first.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, ScyllaError> {
        let session = connect(config).await?;
        Self::with_session(session, &config.keyspace).await
    }

    pub async fn with_session(session: Session, keyspace: &str) -> Result<Self, ScyllaError> {
        let ks = keyspace;
        let prep = |cql: String, idempotent: bool| {
            let session = &session;
            async move {
                let mut p = session.prepare(cql).await?;
                p.set_is_idempotent(idempotent);
                Ok::<_, ScyllaError>(p)
            }
        };
        let st = Statements {
            insert_link_if_absent: prep(
                format!("INSERT INTO {ks}.links ({LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"),
                false,
            )
            .await?,
            get_link: prep(
                format!("SELECT {LINK_COLUMNS} FROM {ks}.links WHERE code = ?"),
                true,
            )
            .await?,
            delete_link: prep(
                format!("UPDATE {ks}.links USING TTL ? SET deleted_at = ? WHERE code = ? IF deleted_at = null"),
                false,
            )
            .await?,
            claim_key_name: prep(
                format!("INSERT INTO {ks}.api_key_names (name, hash) VALUES (?, ?) IF NOT EXISTS"),
                false,
            )
            .await?,
            insert_key: prep(
                format!("INSERT INTO {ks}.api_keys (hash, name, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)"),
                true,
            )
            .await?,
            find_key: prep(
                format!("SELECT hash, name, prefix, created_at, revoked_at FROM {ks}.api_keys WHERE hash = ?"),
                true,
            )
            .await?,
            key_name: prep(
                format!("SELECT hash FROM {ks}.api_key_names WHERE name = ?"),
                true,
            )
            .await?,
            revoke_key: prep(
                format!("UPDATE {ks}.api_keys SET revoked_at = ? WHERE hash = ? IF revoked_at = null"),
                false,
            )
            .await?,
            list_keys: prep(
                format!("SELECT hash, name, prefix, created_at, revoked_at FROM {ks}.api_keys"),
                true,
            )
            .await?,
            ping: prep("SELECT release_version FROM system.local".into(), true).await?,
            get_reservation: prep(
                format!("SELECT until_ms FROM {ks}.id_reservations WHERE worker = ?"),
                true,
            )
            .await?,
            // The write timestamp is the reservation itself: the highest
            // reservation wins, whatever order the writes land in.
            reserve_ids: prep(
                format!("UPDATE {ks}.id_reservations USING TIMESTAMP ? SET until_ms = ? WHERE worker = ?"),
                true,
            )
            .await?,
        };
        Ok(Self { session, st })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs a statement and returns its first row, if any.
    async fn first_row<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<Option<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<R>()
            .map_err(backend)
    }

    /// Runs a lightweight transaction; true if it applied.
    async fn conditional(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<bool> {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(backend)?;
        applied(result).map_err(backend)
    }
}

#[async_trait]
impl LinkStore for ScyllaStore {
    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        // Generated codes are unique by construction, and still conditional:
        // a reissued id (clock stepped back, lost lease) must be refused, not
        // silently replace a live link.
        let values = (
            &link.code,
            link.id,
            link.kind.as_str(),
            &link.url,
            link.redirect as i16,
            link.created_at,
            link.expires_at,
            link.deleted_at,
            &link.owner,
            ttl_secs(link.expires_at, now_ms()),
        );
        if self
            .conditional(&self.st.insert_link_if_absent, values)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict(link.code.clone()))
        }
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        let row: Option<LinkRow> = self.first_row(&self.st.get_link, (code,)).await?;
        Ok(row.and_then(link_from_row))
    }

    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
        // The conditional update must not create a row for an unknown code,
        // so existence is checked first.
        let Some(link) = self.get_link(code).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if link.deleted_at.is_some() {
            return Ok(DeleteOutcome::AlreadyDeleted);
        }
        let ttl = ttl_secs(link.expires_at, now_ms());
        Ok(
            if self
                .conditional(&self.st.delete_link, (ttl, at_ms, code))
                .await?
            {
                DeleteOutcome::Deleted
            } else {
                DeleteOutcome::AlreadyDeleted
            },
        )
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        if !self
            .conditional(&self.st.claim_key_name, (&key.name, &key.hash))
            .await?
        {
            return Err(StoreError::KeyNameTaken(key.name.clone()));
        }
        self.session
            .execute_unpaged(
                &self.st.insert_key,
                (
                    &key.hash,
                    &key.name,
                    &key.prefix,
                    key.created_at,
                    key.revoked_at,
                ),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row: Option<KeyRow> = self.first_row(&self.st.find_key, (hash,)).await?;
        Ok(row.and_then(key_from_row))
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = self
            .session
            .execute_iter(self.st.list_keys.clone(), ())
            .await
            .map_err(backend)?
            .rows_stream::<KeyRow>()
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let mut keys: Vec<ApiKey> = rows.into_iter().filter_map(key_from_row).collect();
        keys.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool> {
        let hash: Option<(Option<String>,)> = self.first_row(&self.st.key_name, (name,)).await?;
        let Some((Some(hash),)) = hash else {
            return Ok(false);
        };
        if self.find_api_key(&hash).await?.is_none() {
            return Ok(false);
        }
        self.conditional(&self.st.revoke_key, (at_ms, &hash)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.session
            .execute_unpaged(&self.st.ping, ())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn id_reservation(&self, worker: u16) -> StoreResult<i64> {
        let row: Option<(Option<i64>,)> = self
            .first_row(&self.st.get_reservation, (i32::from(worker),))
            .await?;
        Ok(row.and_then(|(v,)| v).unwrap_or(0))
    }

    async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()> {
        self.session
            .execute_unpaged(
                &self.st.reserve_ids,
                (until_ms.saturating_mul(1000), until_ms, i32::from(worker)),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(ttl_secs(None, 0), 0);
        let now = 1_000_000;
        assert_eq!(
            ttl_secs(Some(now + 60_000), now),
            (61 + EXPIRED_GRACE_SECS) as i32
        );
        // Already expired: still kept for the grace period.
        assert_eq!(
            ttl_secs(Some(now - 5_000), now),
            (1 + EXPIRED_GRACE_SECS) as i32
        );
        // Past CQL's 20-year maximum or Cassandra's 2038 limit: no TTL.
        assert_eq!(ttl_secs(Some(i64::MAX / 2), 0), 0);
        let nov_2026 = 1_795_000_000_000;
        let in_2040 = 2_208_988_800_000;
        assert_eq!(ttl_secs(Some(in_2040), nov_2026), 0);
        let in_2030 = 1_893_456_000_000;
        let ttl = ttl_secs(Some(in_2030), nov_2026);
        assert!(ttl > 0 && (nov_2026 / 1000 + ttl as i64) < TTL_HORIZON_SECS);
    }

    #[test]
    fn consistency_names() {
        assert_eq!(
            parse_consistency("local_quorum").unwrap(),
            Consistency::LocalQuorum
        );
        assert_eq!(parse_consistency("ONE").unwrap(), Consistency::One);
        assert!(parse_consistency("most").is_err());
        assert_eq!(
            parse_serial_consistency("serial").unwrap(),
            SerialConsistency::Serial
        );
        assert!(parse_serial_consistency("quorum").is_err());
    }

    #[test]
    fn config_is_checked() {
        let ok = ScyllaConfig::new(vec!["127.0.0.1:9042".into()]);
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.keyspace = "snow; DROP".into();
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.replication = "{'class': 'SimpleStrategy'}; DROP KEYSPACE x".into();
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.nodes.clear();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn rows_missing_required_columns_are_not_links() {
        let full: LinkRow = (
            "abc".into(),
            Some(1),
            Some("alias".into()),
            Some("https://example.com".into()),
            Some(302),
            Some(5),
            None,
            None,
            None,
        );
        assert!(link_from_row(full.clone()).is_some());
        let mut partial = full;
        partial.3 = None;
        assert!(link_from_row(partial).is_none());
    }
}
