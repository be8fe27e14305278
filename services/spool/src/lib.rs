//! The click spool: a durable queue of click events in its own SQLite file
//! (`DATA_DIR/spool.db`), written by the service and drained by exactly one
//! consumer: `snowlink-aggregate --data-dir` (into a lake) or the service's
//! Kafka forwarder.
//!
//! * `clicks(seq, event, n)`: `n` events per row, with the sequence numbers
//!   `seq ..= seq + n - 1`, one for each event. A row of one event holds it
//!   as it was appended: a BLOB in the events crate's binary row layout
//!   (first byte: its version). A row of several (the service writes one per batch) is packed
//!   ([`PACKED_BATCH_ROW`]): a [`BATCH_ROW`] frame (per event its length,
//!   u32 little-endian, and its bytes), LZ4-compressed, which the events'
//!   repeated user agents and referrers shrink about five times, and with
//!   them the pages each commit writes. Readers get each event's bytes with
//!   its own sequence number, whatever the row.
//!   `seq` is AUTOINCREMENT, and `sqlite_sequence` is moved to the last
//!   number of each batch row, so a sequence number is never reused, even
//!   after rows are released; file names in the lake and Kafka headers are
//!   built from it and must never repeat.
//! * `progress.checkpoint`: every `seq` at or below it is released (its rows
//!   are deleted). The consumer decides when: after the lake's Delta commit
//!   records the rows, or after Kafka commits the transaction holding them.
//!   Where a consumer stands is the consumer's record, not the spool's: the
//!   spool only keeps rows until they are released.
//! * `meta.spool_id`: a random identity created with the file. It names the
//!   spool's stream in the lake (`spool.<id>`) and its transactions in Kafka,
//!   and forwarded events carry it with their `seq`, so a consumer can tell a
//!   resent event from a new one.
//! * `meta.consumer`: who drains the spool, `lake` or `kafka`. Two consumers
//!   would split the events between them: the first to
//!   [`ClickSpool::claim`] it owns it, and the other is refused until the
//!   spool is drained and [`ClickSpool::release`]d.
//! * The keys of visitor hashes are not here: the service keeps them apart
//!   from everything a spool reader can open.
//! * The file's format is its SQLite `user_version` ([`FORMAT`]): a new
//!   file gets it, and a file with another one (or a database that is not a
//!   spool) is refused with an error that says so, never read as if it were
//!   this format.
//!
//! All methods block: call them from a dedicated thread or a blocking task.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub type SpoolResult<T> = Result<T, SpoolError>;

/// Why a spool operation failed. The database underneath stays private: a
/// caller sees what kind of failure it was, and the message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another connection held the lock past the busy timeout.
    #[error("the click spool is locked by another process: {0}")]
    Busy(#[source] DbError),
    /// The disk or file system refused the write.
    #[error("the click spool could not be written (disk full or read-only?): {0}")]
    Storage(#[source] DbError),
    /// The file is not a spool, or is damaged.
    #[error("the click spool file is damaged or not a spool: {0}")]
    Corrupt(#[source] DbError),
    #[error("click spool: {0}")]
    Database(#[source] DbError),
    /// A row's framing does not hold the events its count says.
    #[error("the click spool row {seq} is damaged: it does not hold the {n} events it counts")]
    Damaged { seq: i64, n: i64 },
    /// The file is a database of another format (an unreleased build's
    /// spool, or another program's file).
    #[error(
        "{path} is not a click spool of format {FORMAT} (its format is {found}); \
         move it away, or drain it with the build that wrote it"
    )]
    Format { path: String, found: i64 },
    /// The rescue file could not be read, written or removed.
    #[error("click spool rescue file: {0}")]
    Rescue(#[source] std::io::Error),
    /// The rescue file is not one this build writes.
    #[error(
        "{path} is not a rescue file of this build (it does not start with {:?}); \
         move it away, or start the build that wrote it once",
        String::from_utf8_lossy(RESCUE_HEADER).trim_end()
    )]
    RescueFormat { path: String },
}

/// What the database said, kept as the source of a [`SpoolError`]; the
/// database's own error type stays inside this crate.
#[derive(Debug)]
pub struct DbError(rusqlite::Error);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The spool's file in a data directory.
pub const FILE_NAME: &str = "spool.db";

/// The spool of the data directory `data_dir`.
pub fn path_in(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(FILE_NAME)
}

/// Where a writer that cannot reach the spool at shutdown keeps its events
/// (`spool.db` → `spool.rescue`) until the next start moves them into the
/// spool ([`ClickSpool::take_rescued`]): [`RESCUE_HEADER`], then per event
/// its spool row, framed (its length, u32 little-endian, then its bytes).
pub fn rescue_path(spool_path: &Path) -> std::path::PathBuf {
    spool_path.with_extension("rescue")
}

/// The first bytes of a rescue file: what it is, and its format.
pub const RESCUE_HEADER: &[u8] = b"snowlink rescue 1\n";

/// Appends `rows` to the rescue file of the spool at `spool_path` and syncs
/// it: the last resort for events the spool cannot take. A frame a crash
/// cut short at the end of the file is cut off first.
pub fn rescue<S: AsRef<[u8]>>(spool_path: &Path, rows: &[S]) -> SpoolResult<()> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = rescue_path(spool_path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(SpoolError::Rescue)?;
    let mut held = Vec::new();
    file.read_to_end(&mut held).map_err(SpoolError::Rescue)?;
    let mut out = Vec::new();
    let end = if held.is_empty() {
        out.extend_from_slice(RESCUE_HEADER);
        0
    } else {
        RESCUE_HEADER.len() + rescued_rows(&held, &path)?.1
    };
    for row in rows {
        write_frame(row.as_ref(), &mut out);
    }
    file.set_len(end as u64).map_err(SpoolError::Rescue)?;
    file.seek(std::io::SeekFrom::Start(end as u64))
        .map_err(SpoolError::Rescue)?;
    file.write_all(&out).map_err(SpoolError::Rescue)?;
    file.sync_all().map_err(SpoolError::Rescue)
}

/// The rows of a rescue file's bytes, and the length of the whole frames
/// after the header.
fn rescued_rows<'a>(bytes: &'a [u8], path: &Path) -> SpoolResult<(Vec<&'a [u8]>, usize)> {
    let frames = bytes
        .strip_prefix(RESCUE_HEADER)
        .ok_or_else(|| SpoolError::RescueFormat {
            path: path.display().to_string(),
        })?;
    Ok(read_frames(frames))
}

/// Appends `bytes` to `out` as a frame: its length (u32, little-endian),
/// then the bytes.
fn write_frame(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The frames at the start of `bytes`, and how many bytes they take: fewer
/// than all when the last frame is cut short.
fn read_frames(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            break;
        }
        let (frame, tail) = tail.split_at(len);
        frames.push(frame);
        rest = tail;
    }
    (frames, bytes.len() - rest.len())
}

impl From<rusqlite::Error> for SpoolError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Self::Busy(DbError(e)),
            Some(C::DiskFull | C::ReadOnly | C::SystemIoFailure | C::CannotOpen) => {
                Self::Storage(DbError(e))
            }
            Some(C::DatabaseCorrupt | C::NotADatabase) => Self::Corrupt(DbError(e)),
            _ => Self::Database(DbError(e)),
        }
    }
}

/// The spool file's format (its SQLite `user_version`).
pub const FORMAT: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clicks (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    n     INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS progress (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checkpoint INTEGER NOT NULL
);
INSERT OR IGNORE INTO progress (id, checkpoint) VALUES (1, 0);
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
    Spool(#[from] SpoolError),
}

impl From<rusqlite::Error> for ClaimError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Spool(e.into())
    }
}

/// Events in the spool, whatever rows hold them.
const BACKLOG: &str = "SELECT COALESCE(SUM(n), 0) FROM clicks";

/// Packs a [`BATCH_ROW`] frame into `out` as a [`PACKED_BATCH_ROW`]:
/// the marker, the frame's length (u32, little-endian), the LZ4 block.
fn pack(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(PACKED_BATCH_ROW);
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    let header = out.len();
    out.resize(
        header + lz4_flex::block::get_maximum_output_size(frame.len()),
        0,
    );
    let n = lz4_flex::block::compress_into(frame, &mut out[header..])
        .expect("the buffer has the block's largest size");
    out.truncate(header + n);
}

/// The [`BATCH_ROW`] frame a [`PACKED_BATCH_ROW`] holds, unpacked into
/// `buf`; `None` when the bytes are not one, or are damaged.
fn unpack<'a>(row: &[u8], buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let rest = row.strip_prefix(&[PACKED_BATCH_ROW])?;
    let (len, block) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    // LZ4 expands a block at most about 255 times: a larger length is a
    // damaged header, not a reason to allocate it.
    if len > block.len().saturating_mul(255) {
        return None;
    }
    buf.clear();
    buf.resize(len, 0);
    match lz4_flex::block::decompress_into(block, buf) {
        Ok(n) if n == len => Some(buf),
        _ => None,
    }
}

/// Frames `events` into `out` as a [`BATCH_ROW`]: the marker, then per
/// event its frame.
fn frame_batch<S: AsRef<[u8]>>(events: &[S], out: &mut Vec<u8>) {
    out.clear();
    out.push(BATCH_ROW);
    for e in events {
        write_frame(e.as_ref(), out);
    }
}

/// The events of a packed batch row (`buf` holds what it unpacks to), or
/// `None` when the bytes are not one, or are damaged.
fn batch_events<'a>(row: &'a [u8], buf: &'a mut Vec<u8>) -> Option<Vec<&'a [u8]>> {
    split_batch(unpack(row, buf)?)
}

/// The events a batch row frames, or `None` when the bytes are not one.
fn split_batch(row: &[u8]) -> Option<Vec<&[u8]>> {
    let frames = row.strip_prefix(&[BATCH_ROW])?;
    let (events, len) = read_frames(frames);
    (len == frames.len()).then_some(events)
}

/// `meta.consumer`, read on `conn` (a transaction, or the connection).
fn consumer_of(conn: &Connection) -> SpoolResult<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'consumer'", [], |r| {
        r.get(0)
    })
    .optional()
    .map_err(Into::into)
}

/// First byte of a row that holds several events (never the first byte of
/// an event: a binary row starts with its version).
pub const BATCH_ROW: u8 = 0xB1;

/// First byte of a packed batch row: then the length of the [`BATCH_ROW`]
/// frame it holds (u32, little-endian), then that frame as an LZ4 block.
/// Builds from before packed rows do not read them.
pub const PACKED_BATCH_ROW: u8 = 0xB2;

/// The most events one row holds; longer batches take several rows.
pub const MAX_ROW_EVENTS: usize = 8192;

/// Creates the spool's tables in a new file, or checks that an existing
/// one is a spool of this [`FORMAT`]. Several processes may open the same
/// new file at once: the creation is one immediate transaction.
fn create_or_check(conn: &Connection, path: &Path) -> SpoolResult<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = tx.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    match (version, tables) {
        (0, 0) => {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", FORMAT)?;
        }
        (FORMAT, _) => {}
        (found, _) => {
            return Err(SpoolError::Format {
                path: path.display().to_string(),
                found,
            })
        }
    }
    Ok(tx.commit()?)
}

pub struct ClickSpool {
    conn: Connection,
    /// The row being framed, kept for the next batch.
    frame: Vec<u8>,
    /// The framed row packed, kept for the next batch.
    packed: Vec<u8>,
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
        create_or_check(&conn, path)?;
        Ok(Self {
            conn,
            frame: Vec::new(),
            packed: Vec::new(),
        })
    }

    /// How long a write waits for another process's lock before it fails
    /// with [`SpoolError::Busy`] (30 s by default).
    pub fn set_busy_timeout(&self, timeout: Duration) -> SpoolResult<()> {
        Ok(self.conn.busy_timeout(timeout)?)
    }

    /// Appends the events of a rescue file (see [`rescue_path`]) in one
    /// transaction, then deletes the file. Returns how many were appended;
    /// a missing file is zero. A frame a crash cut short is not an event.
    pub fn take_rescued(&mut self, path: &Path) -> SpoolResult<usize> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(SpoolError::Rescue(e)),
        };
        let events = if bytes.is_empty() {
            Vec::new()
        } else {
            rescued_rows(&bytes, path)?.0
        };
        self.append(&events)?;
        std::fs::remove_file(path).map_err(SpoolError::Rescue)?;
        Ok(events.len())
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
    /// it. Returns the former owner.
    pub fn release(&mut self) -> Result<Option<String>, ClaimError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let owner = consumer_of(&tx)?;
        let backlog: i64 = tx.query_row(BACKLOG, [], |r| r.get(0))?;
        if backlog > 0 {
            return Err(ClaimError::NotDrained {
                owner: owner.unwrap_or_else(|| "none".into()),
                backlog,
            });
        }
        tx.execute("DELETE FROM meta WHERE key = 'consumer'", [])?;
        tx.commit()?;
        Ok(owner)
    }

    /// Appends events (spool rows, stored as given) in one transaction
    /// (one fsync for the lot).
    pub fn append<S: AsRef<[u8]>>(&mut self, events: &[S]) -> SpoolResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO clicks (event) VALUES (?1)")?;
            for e in events {
                stmt.execute([e.as_ref()])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Appends `events` as one row per [`MAX_ROW_EVENTS`], in one
    /// transaction: each event still gets its own sequence number, but the
    /// database stores, and its consumer later deletes, one row per batch.
    pub fn append_batch<S: AsRef<[u8]>>(&mut self, events: &[S]) -> SpoolResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            // Cached statements: the spooler commits hundreds of times a
            // second, and parsing SQL each time showed in its profile.
            let mut last: i64 = tx
                .prepare_cached(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'clicks'), 0),
                                COALESCE((SELECT MAX(seq) FROM clicks), 0))",
                )?
                .query_row([], |r| r.get(0))?;
            let mut insert =
                tx.prepare_cached("INSERT INTO clicks (seq, event, n) VALUES (?1, ?2, ?3)")?;
            for chunk in events.chunks(MAX_ROW_EVENTS) {
                let row: &[u8] = if let [one] = chunk {
                    one.as_ref()
                } else {
                    frame_batch(chunk, &mut self.frame);
                    pack(&self.frame, &mut self.packed);
                    &self.packed
                };
                insert.execute(params![last + 1, row, chunk.len() as i64])?;
                last += chunk.len() as i64;
            }
            // The next row's numbers start after this batch's last event.
            tx.prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'clicks'")?
                .execute([last])?;
        }
        Ok(tx.commit()?)
    }

    /// Every `seq` at or below this has been released.
    pub fn released(&self) -> SpoolResult<i64> {
        self.conn
            .query_row("SELECT checkpoint FROM progress WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(Into::into)
    }

    /// The random identity of this spool file (16 hex digits).
    pub fn spool_id(&self) -> SpoolResult<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'spool_id'", [], |r| {
                r.get(0)
            })
            .map_err(Into::into)
    }

    /// Events still waiting to reach the lake.
    pub fn backlog(&self) -> SpoolResult<i64> {
        self.conn
            .query_row(BACKLOG, [], |r| r.get(0))
            .map_err(Into::into)
    }

    /// Events appended and not yet released: the highest `seq` ever issued
    /// less the released checkpoint (two single-row reads, whatever the
    /// size of the spool).
    pub fn depth(&self) -> SpoolResult<i64> {
        self.conn.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'clicks'), 0) - checkpoint
             FROM progress WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .map_err(Into::into)
    }

    /// The events with `seq > after`, in `seq` order, each as the bytes it
    /// was appended with (a binary row or JSON): whole rows, until at least
    /// `limit` events are read (a batch row may take it past `limit`).
    pub fn read_after(&self, after: i64, limit: usize) -> SpoolResult<Vec<(i64, Vec<u8>)>> {
        // A row that begins at or before `after` may still hold later
        // events; none begins more than a row's length before.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, n, event FROM clicks WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = stmt.query([after.saturating_sub(MAX_ROW_EVENTS as i64)])?;
        let mut out = Vec::new();
        let mut unpacked = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let seq: i64 = row.get(0)?;
            let n: i64 = row.get(1)?;
            if seq + n - 1 <= after {
                continue;
            }
            let bytes = row.get_ref(2)?.as_bytes().map_err(rusqlite::Error::from)?;
            if n == 1 {
                out.push((seq, bytes.to_vec()));
                continue;
            }
            let events = batch_events(bytes, &mut unpacked).filter(|e| e.len() == n as usize);
            let Some(events) = events else {
                return Err(SpoolError::Damaged { seq, n });
            };
            out.extend(
                (seq..)
                    .zip(events)
                    .filter(|(s, _)| *s > after)
                    .map(|(s, e)| (s, e.to_vec())),
            );
        }
        Ok(out)
    }

    /// Releases every event with `seq <= last`, once its consumer has made
    /// them durable elsewhere. Releasing again, or less, changes nothing.
    pub fn release_through(&mut self, last: i64) -> SpoolResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Only whole rows: a row that reaches past `last` keeps its events.
        tx.execute(
            "DELETE FROM clicks WHERE seq <= ?1 AND seq + n - 1 <= ?1",
            [last],
        )?;
        tx.execute(
            "UPDATE progress SET checkpoint = MAX(checkpoint, ?1) WHERE id = 1",
            [last],
        )?;
        Ok(tx.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_spool_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        match ClickSpool::open(&path) {
            Err(e @ SpoolError::Corrupt(_)) => {
                assert!(e.to_string().contains("not a spool"), "{e}")
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("opened a file that is not a database"),
        }
    }

    #[test]
    fn rows_stay_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        assert_eq!(spool.depth().unwrap(), 0);
        spool.append(&["a", "b", "c"]).unwrap();
        assert_eq!(spool.released().unwrap(), 0);
        assert_eq!(spool.depth().unwrap(), 3);
        let rows = spool.read_after(0, 2).unwrap();
        assert_eq!(rows, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        spool.release_through(2).unwrap();
        assert_eq!(spool.released().unwrap(), 2);
        assert_eq!(spool.backlog().unwrap(), 1);
        assert_eq!(spool.depth().unwrap(), 1);
        assert_eq!(spool.read_after(0, 10).unwrap(), vec![(3, b"c".to_vec())]);
        // Releasing less changes nothing.
        spool.release_through(1).unwrap();
        assert_eq!(spool.released().unwrap(), 2);
        // Released sequence numbers are never reused.
        spool.release_through(3).unwrap();
        spool.append(&["d"]).unwrap();
        assert_eq!(spool.read_after(0, 10).unwrap(), vec![(4, b"d".to_vec())]);
    }

    #[test]
    fn a_batch_row_gives_each_event_its_own_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        spool.append(&["a"]).unwrap();
        spool.append_batch(&["b", "cc", ""]).unwrap();
        spool.append_batch(&["d"]).unwrap();
        spool.append(&["e"]).unwrap();
        let rows: i64 = spool
            .conn
            .query_row("SELECT COUNT(*) FROM clicks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4, "one row per batch");
        let all = spool.read_after(0, 100).unwrap();
        let expected: Vec<(i64, Vec<u8>)> = vec![
            (1, b"a".to_vec()),
            (2, b"b".to_vec()),
            (3, b"cc".to_vec()),
            (4, b"".to_vec()),
            (5, b"d".to_vec()),
            (6, b"e".to_vec()),
        ];
        assert_eq!(all, expected);
        assert_eq!(spool.backlog().unwrap(), 6);
        assert_eq!(spool.depth().unwrap(), 6);
        // Reads stop at a row's end, past `limit` if the row is longer.
        assert_eq!(spool.read_after(0, 2).unwrap(), expected[..4]);
        // A read from the middle of a row starts at the next event.
        assert_eq!(spool.read_after(2, 2).unwrap(), expected[2..4]);
        // Releasing part of a row keeps the row.
        spool.release_through(3).unwrap();
        assert_eq!(spool.read_after(3, 100).unwrap(), expected[3..]);
        spool.release_through(4).unwrap();
        assert_eq!(spool.backlog().unwrap(), 2);
        assert_eq!(spool.read_after(0, 100).unwrap(), expected[4..]);
        // Numbers are never reused, even once every row is released.
        spool.release_through(6).unwrap();
        spool.append_batch(&["f", "g"]).unwrap();
        spool.append(&["h"]).unwrap();
        let after: Vec<i64> = spool
            .read_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(after, [7, 8, 9]);
        assert_eq!(spool.depth().unwrap(), 3);
    }

    #[test]
    fn long_batches_take_several_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        let events: Vec<Vec<u8>> = (0..MAX_ROW_EVENTS + 3)
            .map(|i| i.to_string().into_bytes())
            .collect();
        spool.append_batch(&events).unwrap();
        let rows: i64 = spool
            .conn
            .query_row("SELECT COUNT(*) FROM clicks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
        let read = spool.read_after(0, usize::MAX).unwrap();
        assert_eq!(read.len(), events.len());
        for (i, (seq, bytes)) in read.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1);
            assert_eq!(bytes, &events[i]);
        }
    }

    #[test]
    fn a_damaged_batch_row_is_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        spool.append_batch(&["a", "b"]).unwrap();
        spool.conn.execute("UPDATE clicks SET n = 3", []).unwrap();
        assert!(matches!(
            spool.read_after(0, 10),
            Err(SpoolError::Damaged { seq: 1, n: 3 })
        ));
    }

    /// Events as the service writes them: mostly the same few user agents.
    fn similar_events(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"code\":\"c{}\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0 Safari/537.36\"}}",
                    i % 97,
                    120 + i % 3
                )
                .into_bytes()
            })
            .collect()
    }

    const STORED: &str = "SELECT event FROM clicks ORDER BY seq";

    /// One value per row of the single-column query `sql`.
    fn column<T: rusqlite::types::FromSql>(spool: &ClickSpool, sql: &str) -> Vec<T> {
        spool
            .conn
            .prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn batch_rows_are_stored_packed_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        let events = similar_events(300);
        spool.append_batch(&events).unwrap();
        let rows = column::<Vec<u8>>(&spool, STORED);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0], PACKED_BATCH_ROW);
        let plain: usize = events.iter().map(|e| e.len() + 4).sum();
        assert!(
            rows[0].len() * 4 < plain,
            "packed {} bytes against {plain} framed",
            rows[0].len()
        );
        let read = spool.read_after(0, usize::MAX).unwrap();
        let expected: Vec<(i64, Vec<u8>)> = (1..).zip(events).collect();
        assert_eq!(read, expected);
        // From the middle of the row too.
        assert_eq!(spool.read_after(250, 10).unwrap(), expected[250..]);
    }

    #[test]
    fn an_unpacked_batch_row_is_damaged_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let spool = ClickSpool::open(path_in(dir.path())).unwrap();
        let mut frame = Vec::new();
        frame_batch(&["p", "qq"], &mut frame);
        spool
            .conn
            .execute("INSERT INTO clicks (event, n) VALUES (?1, 2)", [&frame])
            .unwrap();
        assert!(matches!(
            spool.read_after(0, 10),
            Err(SpoolError::Damaged { seq: 1, n: 2 })
        ));
    }

    #[test]
    fn a_damaged_packed_row_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        spool.append_batch(&similar_events(50)).unwrap();
        let row = column::<Vec<u8>>(&spool, STORED).remove(0);
        let mut damaged = Vec::new();
        // Cut short.
        damaged.push(row[..row.len() / 2].to_vec());
        // A length far beyond what the block could hold.
        let mut huge = row.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        damaged.push(huge);
        // A length shorter than the block unpacks to.
        let mut short = row.clone();
        let len = u32::from_le_bytes(row[1..5].try_into().unwrap());
        short[1..5].copy_from_slice(&(len - 1).to_le_bytes());
        damaged.push(short);
        // The marker alone.
        damaged.push(vec![PACKED_BATCH_ROW]);
        for bytes in damaged {
            spool
                .conn
                .execute("UPDATE clicks SET event = ?1", [&bytes])
                .unwrap();
            assert!(
                matches!(
                    spool.read_after(0, 100),
                    Err(SpoolError::Damaged { seq: 1, n: 50 })
                ),
                "{} damaged bytes read",
                bytes.len()
            );
        }
    }

    #[test]
    fn text_rows_read_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        spool
            .conn
            .execute("INSERT INTO clicks (event) VALUES ('{\"a\":1}')", [])
            .unwrap();
        spool.append(&[[1u8, 0, 255]]).unwrap();
        let rows = spool.read_after(0, 10).unwrap();
        assert_eq!(rows, vec![(1, b"{\"a\":1}".to_vec()), (2, vec![1, 0, 255])]);
        let kinds: Vec<String> = column(&spool, "SELECT typeof(event) FROM clicks ORDER BY seq");
        assert_eq!(kinds, ["text", "blob"]);
    }

    #[test]
    fn claims_exclude_a_second_consumer_until_drained() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = ClickSpool::open(path_in(dir.path())).unwrap();
        spool.claim(CONSUMER_LAKE).unwrap();
        spool.claim(CONSUMER_LAKE).unwrap();
        assert!(matches!(
            spool.claim(CONSUMER_KAFKA),
            Err(ClaimError::Owned { .. })
        ));
        spool.append(&["a"]).unwrap();
        assert!(matches!(
            spool.release(),
            Err(ClaimError::NotDrained { backlog: 1, .. })
        ));
        spool.release_through(1).unwrap();
        assert_eq!(spool.release().unwrap().as_deref(), Some(CONSUMER_LAKE));
        spool.claim(CONSUMER_KAFKA).unwrap();
        assert_eq!(spool.consumer().unwrap().as_deref(), Some(CONSUMER_KAFKA));
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
    fn a_database_of_another_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for (name, setup) in [
            // A spool of a build from before formats.
            (
                "old.db",
                "CREATE TABLE clicks (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
                 INSERT INTO clicks (event) VALUES ('{}');",
            ),
            // A later format.
            ("later.db", "PRAGMA user_version = 2;"),
            // Another program's database.
            ("other.db", "CREATE TABLE notes (body TEXT);"),
        ] {
            let path = dir.path().join(name);
            Connection::open(&path)
                .unwrap()
                .execute_batch(setup)
                .unwrap();
            match ClickSpool::open(&path) {
                Err(e @ SpoolError::Format { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(name) && msg.contains("format 1"), "{msg}")
                }
                Err(other) => panic!("{name}: expected Format, got {other:?}"),
                Ok(_) => panic!("{name}: opened as a spool"),
            }
            let added: i64 = Connection::open(&path)
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('meta', 'progress')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(added, 0, "{name}: no spool table added");
        }
        // A new file is created at this format, and opens again.
        let path = path_in(dir.path());
        drop(ClickSpool::open(&path).unwrap());
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, FORMAT);
        ClickSpool::open(&path).unwrap();
    }

    #[test]
    fn rescued_events_are_taken_once_and_a_torn_frame_is_not() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let mut spool = ClickSpool::open(&path).unwrap();
        assert_eq!(spool.take_rescued(&rescue_path(&path)).unwrap(), 0);
        rescue(&path, &[b"\x01one".as_slice(), b"\x01two"]).unwrap();
        // A crash mid-write leaves a frame cut short; the next rescue
        // writes after the last whole frame.
        let torn = |path: &Path| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(rescue_path(path))
                .unwrap()
                .write_all(&[9, 0, 0, 0, 1, b't'])
                .unwrap()
        };
        torn(&path);
        rescue(&path, &[b"\x01three"]).unwrap();
        torn(&path);
        let bytes = std::fs::read(rescue_path(&path)).unwrap();
        assert!(bytes.starts_with(RESCUE_HEADER));
        assert_eq!(spool.take_rescued(&rescue_path(&path)).unwrap(), 3);
        assert!(!rescue_path(&path).exists());
        assert_eq!(spool.take_rescued(&rescue_path(&path)).unwrap(), 0);
        let rows = spool.read_after(0, 10).unwrap();
        let rows: Vec<&[u8]> = rows.iter().map(|(_, r)| r.as_slice()).collect();
        assert_eq!(rows, [b"\x01one".as_slice(), b"\x01two", b"\x01three"]);
    }

    #[test]
    fn a_file_that_is_not_a_rescue_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let mut spool = ClickSpool::open(&path).unwrap();
        std::fs::write(rescue_path(&path), "{\"code\":\"abc\"}\n").unwrap();
        let err = spool.take_rescued(&rescue_path(&path)).unwrap_err();
        assert!(matches!(err, SpoolError::RescueFormat { .. }), "{err}");
        assert!(err.to_string().contains("snowlink rescue 1"), "{err}");
        assert!(matches!(
            rescue(&path, &[b"\x01x"]).unwrap_err(),
            SpoolError::RescueFormat { .. }
        ));
        assert!(rescue_path(&path).exists());
        assert_eq!(spool.backlog().unwrap(), 0);
    }
}
