//! The lake's ledger: what is durable in the lake, per stream.
//!
//! `LAKE/_ledger/ledger.db` (SQLite, WAL, `synchronous=FULL`) holds, for
//! every stream a source reads (`spool.<spool id>`, `<topic>.p<partition>`):
//!
//! * `streams.next`: the position to write next. Every file of the stream
//!   whose range begins below it is whole and counted; a file whose range
//!   begins at or after it was written by a run that died before recording
//!   it, and is deleted before anything else happens.
//! * `seen`: per stream and origin (a forwarding spool), the highest origin
//!   sequence written, so a resent event is dropped.
//! * `dirty_days`: days whose rollup must be rebuilt.
//!
//! Each batch is recorded in one transaction, after its files are durable
//! and before its source is acknowledged. The lake lock keeps one writer.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use snowlink_lake::Lake;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    stream TEXT NOT NULL, origin TEXT NOT NULL, max_seq INTEGER NOT NULL,
    PRIMARY KEY (stream, origin));
CREATE TABLE IF NOT EXISTS dirty_days (day TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Highest origin sequence written, per (stream, origin).
pub type Seen = HashMap<(String, String), i64>;

pub struct Ledger {
    conn: Connection,
}

/// Where the ledger of `lake` lives.
pub fn path(lake: &Lake) -> PathBuf {
    lake.root().join("_ledger").join("ledger.db")
}

impl Ledger {
    /// Opens (or creates) the ledger of `lake`. The Kafka state kept by
    /// earlier versions (`LAKE/_kafka/state.db`) is taken over once.
    pub fn open(lake: &Lake) -> anyhow::Result<Self> {
        let path = path(lake);
        let dir = path.parent().expect("ledger has a folder");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().with_context(|| format!("opening {}", path.display()))?;
        let mut ledger = Self { conn };
        ledger
            .take_over_kafka_state(lake)
            .context("taking over LAKE/_kafka/state.db")?;
        Ok(ledger)
    }

    fn take_over_kafka_state(&mut self, lake: &Lake) -> rusqlite::Result<()> {
        let old = lake.root().join("_kafka").join("state.db");
        if !old.is_file() || self.meta("kafka_state_taken_over")?.is_some() {
            return Ok(());
        }
        self.conn
            .execute("ATTACH DATABASE ?1 AS old", [old.to_string_lossy()])?;
        let copied = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(
                "INSERT OR IGNORE INTO streams (stream, next)
                   SELECT topic || '.p' || partition, next_offset FROM old.offsets;
                 INSERT OR IGNORE INTO seen (stream, origin, max_seq)
                   SELECT topic || '.p' || partition, spool, max_seq FROM old.seen;
                 INSERT OR IGNORE INTO dirty_days (day) SELECT day FROM old.dirty_days;
                 INSERT INTO meta (key, value) VALUES ('kafka_state_taken_over', datetime('now'));",
            )?;
            tx.commit()
        })();
        self.conn.execute("DETACH DATABASE old", [])?;
        copied
    }

    fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// The position to write next, per stream.
    pub fn positions(&self) -> rusqlite::Result<HashMap<String, i64>> {
        let mut stmt = self.conn.prepare("SELECT stream, next FROM streams")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// The position to write next in `stream`, if the ledger knows it.
    pub fn position(&self, stream: &str) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT next FROM streams WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )
            .optional()
    }

    pub fn seen(&self) -> rusqlite::Result<Seen> {
        let mut stmt = self
            .conn
            .prepare("SELECT stream, origin, max_seq FROM seen")?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        rows.collect()
    }

    /// Records that `stream` is written from `first` on, unless the ledger
    /// already knows it: the files of a first batch interrupted before it
    /// was recorded are then recognised as unrecorded on the next run.
    pub fn ensure_stream(&self, stream: &str, first: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO streams (stream, next) VALUES (?1, ?2)",
            params![stream, first],
        )?;
        Ok(())
    }

    /// Records a batch whose files are durable, in one transaction.
    pub fn record(
        &mut self,
        next: &BTreeMap<String, i64>,
        seen: &Seen,
        days: &[String],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO streams (stream, next) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET next = MAX(next, excluded.next)",
            )?;
            for (stream, n) in next {
                stmt.execute(params![stream, n])?;
            }
            let mut stmt = tx.prepare_cached(
                "INSERT INTO seen (stream, origin, max_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream, origin) DO UPDATE SET max_seq = MAX(max_seq, excluded.max_seq)",
            )?;
            for ((stream, origin), seq) in seen {
                stmt.execute(params![stream, origin, seq])?;
            }
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO dirty_days (day) VALUES (?1)")?;
            for day in days {
                stmt.execute([day])?;
            }
        }
        tx.commit()
    }

    /// Marks days for a rollup rebuild.
    pub fn mark_dirty(&mut self, days: &[String]) -> rusqlite::Result<()> {
        self.record(&BTreeMap::new(), &Seen::new(), days)
    }

    pub fn dirty_days(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT day FROM dirty_days ORDER BY day")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    pub fn clear_dirty_day(&self, day: &str) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM dirty_days WHERE day = ?1", [day])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_only_rise_and_first_write_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let mut ledger = Ledger::open(&lake).unwrap();
        ledger.ensure_stream("s", 5).unwrap();
        ledger.ensure_stream("s", 9).unwrap();
        assert_eq!(ledger.position("s").unwrap(), Some(5));
        let mut seen = Seen::new();
        seen.insert(("s".into(), "o".into()), 7);
        ledger
            .record(
                &BTreeMap::from([("s".to_string(), 20)]),
                &seen,
                &["2026-01-01".into()],
            )
            .unwrap();
        ledger
            .record(&BTreeMap::from([("s".to_string(), 10)]), &Seen::new(), &[])
            .unwrap();
        let reopened = Ledger::open(&lake).unwrap();
        assert_eq!(reopened.position("s").unwrap(), Some(20));
        assert_eq!(reopened.seen().unwrap(), seen);
        assert_eq!(reopened.dirty_days().unwrap(), vec!["2026-01-01"]);
    }

    #[test]
    fn takes_over_the_old_kafka_state_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        std::fs::create_dir_all(dir.path().join("_kafka")).unwrap();
        let old = Connection::open(dir.path().join("_kafka/state.db")).unwrap();
        old.execute_batch(
            "CREATE TABLE offsets (topic TEXT, partition INTEGER, next_offset INTEGER);
             CREATE TABLE seen (topic TEXT, partition INTEGER, spool TEXT, max_seq INTEGER);
             CREATE TABLE dirty_days (day TEXT PRIMARY KEY);
             INSERT INTO offsets VALUES ('clicks', 0, 42), ('clicks', 1, 7);
             INSERT INTO seen VALUES ('clicks', 1, 'abc', 99);
             INSERT INTO dirty_days VALUES ('2026-02-03');",
        )
        .unwrap();
        drop(old);
        let mut ledger = Ledger::open(&lake).unwrap();
        assert_eq!(ledger.position("clicks.p0").unwrap(), Some(42));
        assert_eq!(ledger.position("clicks.p1").unwrap(), Some(7));
        assert_eq!(
            ledger.seen().unwrap(),
            Seen::from([(("clicks.p1".into(), "abc".into()), 99)])
        );
        assert_eq!(ledger.dirty_days().unwrap(), vec!["2026-02-03"]);
        // Progress made since is not overwritten by a second take-over.
        ledger
            .record(
                &BTreeMap::from([("clicks.p0".to_string(), 50)]),
                &Seen::new(),
                &[],
            )
            .unwrap();
        drop(ledger);
        let ledger = Ledger::open(&lake).unwrap();
        assert_eq!(ledger.position("clicks.p0").unwrap(), Some(50));
    }
}
