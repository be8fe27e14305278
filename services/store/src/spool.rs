//! The click spool: a durable queue of click events in its own SQLite file
//! (`DATA_DIR/spool.db`), written by the service and drained by the batch job.
//!
//! * `clicks(seq, event)`: one JSON event per row. `seq` is AUTOINCREMENT, so
//!   a sequence number is never reused, even after rows are released; file
//!   names in the lake are built from it and must never repeat.
//! * `progress`: the checkpoint (every `seq` at or below it is in the lake)
//!   and the batch in flight (`pending_first..=pending_last`). A batch is
//!   recorded as pending before its files are written, and the checkpoint
//!   advances (and the rows are released) in one transaction after they are
//!   durable. A crash in between leaves the pending range in place, and the
//!   next run rewrites exactly that range to exactly the same file names.
//! * `dirty_days`: days whose daily rollup must be rebuilt; recorded in the
//!   same transaction as the checkpoint, cleared after the rollup is written.
//! * `meta.spool_id`: a random identity created with the file. Events
//!   forwarded to Kafka carry it with their `seq`, so a consumer can tell a
//!   resent event from a new one.
//! * `meta.consumer`: who drains the spool, `lake` (`snowlink-aggregate
//!   --data-dir`) or `kafka` (the service's forwarder). Both advance the
//!   same checkpoint, so two consumers would split and duplicate events:
//!   the first to [`ClickSpool::claim`] it owns it, and the other is refused
//!   until the spool is drained and [`ClickSpool::release`]d.
//! * `visitor_salts`: the random key of each UTC day for visitor hashes; keys
//!   older than yesterday are deleted, so old visitor ids cannot be linked.
//!
//! All methods block: call them from a dedicated thread or a blocking task.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub type SpoolResult<T> = Result<T, rusqlite::Error>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clicks (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    checkpoint    INTEGER NOT NULL,
    pending_first INTEGER,
    pending_last  INTEGER
);
INSERT OR IGNORE INTO progress (id, checkpoint) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS dirty_days (day TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS visitor_salts (day INTEGER PRIMARY KEY, salt BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('spool_id', lower(hex(randomblob(8))));
";

/// The two ways a spool is drained.
pub const CONSUMER_LAKE: &str = "lake";
pub const CONSUMER_KAFKA: &str = "kafka";

/// Why a spool could not be claimed or released.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the click spool is already drained by another consumer ({owner})")]
    Owned { owner: String },
    #[error(
        "{backlog} clicks are still in the spool; let its consumer ({owner}) drain them first"
    )]
    NotDrained { owner: String, backlog: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// `meta.consumer`, read on `conn` (a transaction, or the connection).
fn consumer_of(conn: &Connection) -> SpoolResult<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'consumer'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// Where the batch job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every `seq` at or below this is in the lake.
    pub checkpoint: i64,
    /// A batch whose files may be partly written.
    pub pending: Option<(i64, i64)>,
}

pub struct ClickSpool {
    conn: Connection,
}

impl ClickSpool {
    pub fn open(path: impl AsRef<Path>) -> SpoolResult<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Makes `consumer` the one consumer of this spool, unless another one
    /// already is.
    pub fn claim(&mut self, consumer: &str) -> Result<(), ClaimError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let owner = consumer_of(&tx)?;
        match owner {
            Some(owner) if owner != consumer => return Err(ClaimError::Owned { owner }),
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('consumer', ?1)",
                    [consumer],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The consumer that owns this spool, if any.
    pub fn consumer(&self) -> SpoolResult<Option<String>> {
        consumer_of(&self.conn)
    }

    /// Frees the spool for another consumer, only once nothing is waiting in
    /// it (no backlog, no batch in flight). Returns the former owner.
    pub fn release(&mut self) -> Result<Option<String>, ClaimError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let owner = consumer_of(&tx)?;
        let (checkpoint, pending): (i64, Option<i64>) = tx.query_row(
            "SELECT checkpoint, pending_first FROM progress WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let backlog: i64 = tx.query_row(
            "SELECT COUNT(*) FROM clicks WHERE seq > ?1",
            [checkpoint],
            |r| r.get(0),
        )?;
        if backlog > 0 || pending.is_some() {
            return Err(ClaimError::NotDrained {
                owner: owner.unwrap_or_else(|| "none".into()),
                backlog,
            });
        }
        tx.execute("DELETE FROM meta WHERE key = 'consumer'", [])?;
        tx.commit()?;
        Ok(owner)
    }

    /// Appends events in one transaction (one fsync for the lot).
    pub fn append<S: AsRef<str>>(&mut self, events: &[S]) -> SpoolResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO clicks (event) VALUES (?1)")?;
            for e in events {
                stmt.execute([e.as_ref()])?;
            }
        }
        tx.commit()
    }

    pub fn progress(&self) -> SpoolResult<Progress> {
        self.conn.query_row(
            "SELECT checkpoint, pending_first, pending_last FROM progress WHERE id = 1",
            [],
            |r| {
                let first: Option<i64> = r.get(1)?;
                let last: Option<i64> = r.get(2)?;
                Ok(Progress {
                    checkpoint: r.get(0)?,
                    pending: first.zip(last),
                })
            },
        )
    }

    /// The random identity of this spool file (16 hex digits).
    pub fn spool_id(&self) -> SpoolResult<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'spool_id'", [], |r| {
                r.get(0)
            })
    }

    /// Events still waiting to reach the lake.
    pub fn backlog(&self) -> SpoolResult<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM clicks", [], |r| r.get(0))
    }

    /// Up to `limit` events with `seq > after`, in `seq` order.
    pub fn read_after(&self, after: i64, limit: usize) -> SpoolResult<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, event FROM clicks WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Every event with `first <= seq <= last`.
    pub fn read_range(&self, first: i64, last: i64) -> SpoolResult<Vec<(i64, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, event FROM clicks WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![first, last], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Records the batch about to be written.
    pub fn set_pending(&mut self, first: i64, last: i64) -> SpoolResult<()> {
        self.conn.execute(
            "UPDATE progress SET pending_first = ?1, pending_last = ?2 WHERE id = 1",
            params![first, last],
        )?;
        Ok(())
    }

    /// After the batch's files are durable: releases its rows, advances the
    /// checkpoint to `last`, clears the pending batch and marks `days` for a
    /// rollup, all in one transaction.
    pub fn complete(&mut self, last: i64, days: &[String]) -> SpoolResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM clicks WHERE seq <= ?1", [last])?;
        tx.execute(
            "UPDATE progress SET checkpoint = MAX(checkpoint, ?1), pending_first = NULL, pending_last = NULL WHERE id = 1",
            [last],
        )?;
        for day in days {
            tx.execute("INSERT OR IGNORE INTO dirty_days (day) VALUES (?1)", [day])?;
        }
        tx.commit()
    }

    pub fn dirty_days(&self) -> SpoolResult<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT day FROM dirty_days ORDER BY day")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    pub fn clear_dirty_day(&mut self, day: &str) -> SpoolResult<()> {
        self.conn
            .execute("DELETE FROM dirty_days WHERE day = ?1", [day])?;
        Ok(())
    }

    /// The salt for visitor hashes of UTC day `day` (days since 1970-01-01),
    /// created on first use. Salts older than the day before are deleted.
    pub fn visitor_salt(&mut self, day: i64) -> SpoolResult<[u8; 16]> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT salt FROM visitor_salts WHERE day = ?1",
                [day],
                |r| r.get(0),
            )
            .optional()?;
        let salt = match existing.and_then(|v| <[u8; 16]>::try_from(v).ok()) {
            Some(s) => s,
            None => {
                let s: [u8; 16] = rand::random();
                tx.execute(
                    "INSERT OR REPLACE INTO visitor_salts (day, salt) VALUES (?1, ?2)",
                    params![day, s.to_vec()],
                )?;
                s
            }
        };
        tx.execute("DELETE FROM visitor_salts WHERE day < ?1", [day - 1])?;
        tx.commit()?;
        Ok(salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(dir.path().join("spool.db")).unwrap();
        spool.append(&["a", "b", "c"]).unwrap();
        let p = spool.progress().unwrap();
        assert_eq!(
            p,
            Progress {
                checkpoint: 0,
                pending: None
            }
        );
        let rows = spool.read_after(0, 2).unwrap();
        assert_eq!(rows, vec![(1, "a".into()), (2, "b".into())]);
        spool.set_pending(1, 2).unwrap();
        assert_eq!(spool.progress().unwrap().pending, Some((1, 2)));
        spool.complete(2, &["2026-01-01".into()]).unwrap();
        assert_eq!(
            spool.progress().unwrap(),
            Progress {
                checkpoint: 2,
                pending: None
            }
        );
        assert_eq!(spool.backlog().unwrap(), 1);
        assert_eq!(spool.dirty_days().unwrap(), vec!["2026-01-01".to_string()]);
        // Released sequence numbers are never reused.
        spool.complete(3, &[]).unwrap();
        spool.append(&["d"]).unwrap();
        assert_eq!(spool.read_after(3, 10).unwrap(), vec![(4, "d".into())]);
    }

    #[test]
    fn spool_identity_is_stable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let id = ClickSpool::open(dir.path().join("a.db"))
            .unwrap()
            .spool_id()
            .unwrap();
        assert_eq!(id.len(), 16);
        let again = ClickSpool::open(dir.path().join("a.db"))
            .unwrap()
            .spool_id()
            .unwrap();
        assert_eq!(id, again);
        let other = ClickSpool::open(dir.path().join("b.db"))
            .unwrap()
            .spool_id()
            .unwrap();
        assert_ne!(id, other);
    }

    #[test]
    fn salts_are_stable_per_day_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(dir.path().join("spool.db")).unwrap();
        let a = spool.visitor_salt(100).unwrap();
        assert_eq!(spool.visitor_salt(100).unwrap(), a);
        let b = spool.visitor_salt(101).unwrap();
        assert_ne!(a, b);
        spool.visitor_salt(103).unwrap();
        let n: i64 = spool
            .conn
            .query_row("SELECT COUNT(*) FROM visitor_salts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "only the current day's salt survives");
    }
}
