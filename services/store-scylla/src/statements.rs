//! Every CQL statement of the store, prepared at connect time.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use crate::error::ScyllaError;
use crate::rows::{KEY_COLUMNS, LINK_COLUMNS};

/// Every statement the store runs, prepared once per session.
pub(crate) struct Statements {
    pub(crate) insert_link_if_absent: PreparedStatement,
    pub(crate) get_link: PreparedStatement,
    pub(crate) delete_link: PreparedStatement,
    pub(crate) update_link: PreparedStatement,
    pub(crate) insert_owner_entry: PreparedStatement,
    pub(crate) list_owner_entries: PreparedStatement,
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
                format!("INSERT INTO {ks}.links ({LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"),
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
            // Every column but deleted_at is written again, so the whole row
            // takes the new TTL. The condition makes a concurrent delete win
            // and never creates a row for an unknown code.
            update_link: prep(
                format!("UPDATE {ks}.links USING TTL ? SET id = ?, kind = ?, url = ?, redirect = ?, created_at = ?, expires_at = ?, owner = ?, tags = ?, public_stats = ? WHERE code = ? IF created_at = ? AND deleted_at = null"),
                false,
            )
            .await?,
            insert_owner_entry: prep(
                format!("INSERT INTO {ks}.links_by_owner (owner, id, code) VALUES (?, ?, ?) USING TTL ?"),
                true,
            )
            .await?,
            list_owner_entries: prep(
                format!("SELECT id, code FROM {ks}.links_by_owner WHERE owner = ? AND id < ? LIMIT ?"),
                true,
            )
            .await?,
            claim_key_name: prep(
                format!("INSERT INTO {ks}.api_key_names (name, hash) VALUES (?, ?) IF NOT EXISTS"),
                false,
            )
            .await?,
            insert_key: prep(
                format!("INSERT INTO {ks}.api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                true,
            )
            .await?,
            find_key: prep(
                format!("SELECT {KEY_COLUMNS} FROM {ks}.api_keys WHERE hash = ?"),
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
                format!("SELECT {KEY_COLUMNS} FROM {ks}.api_keys"),
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
