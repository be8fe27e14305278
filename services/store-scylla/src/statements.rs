//! Every CQL statement of the store, prepared at connect time.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use crate::error::ScyllaError;
use crate::rows::LINK_COLUMNS;

/// Every statement the store runs, prepared once per session.
pub(crate) struct Statements {
    pub(crate) insert_link_if_absent: PreparedStatement,
    pub(crate) get_link: PreparedStatement,
    pub(crate) delete_link: PreparedStatement,
    pub(crate) claim_key_name: PreparedStatement,
    pub(crate) insert_key: PreparedStatement,
    pub(crate) find_key: PreparedStatement,
    pub(crate) key_name: PreparedStatement,
    pub(crate) revoke_key: PreparedStatement,
    pub(crate) list_keys: PreparedStatement,
    pub(crate) ping: PreparedStatement,
    pub(crate) get_reservation: PreparedStatement,
    pub(crate) reserve_ids: PreparedStatement,
}

impl Statements {
    pub(crate) async fn prepare(session: &Session, keyspace: &str) -> Result<Self, ScyllaError> {
        let ks = keyspace;
        let prep = |cql: String, idempotent: bool| async move {
            let mut p = session.prepare(cql).await?;
            p.set_is_idempotent(idempotent);
            Ok::<_, ScyllaError>(p)
        };
        Ok(Statements {
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
        })
    }
}

/// `[applied]`, the first column of a lightweight transaction's result.
pub(crate) fn applied(
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, ScyllaError> {
    let row: Row = result.into_rows_result()?.first_row()?;
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        other => Err(ScyllaError::Result(format!(
            "expected [applied] as the first column, got {other:?}"
        ))),
    }
}
