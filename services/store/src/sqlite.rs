//! The embedded backend: SQLite through rusqlite.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a commit returns only
//! after the WAL is fsynced. A `kill -9` or a power cut after a write future
//! resolved cannot lose that write.
//!
//! Throughput: one fsync per commit would cap creates at the disk's fsync
//! rate. All writes therefore go through a single writer thread that takes
//! every job waiting in its queue (up to [`MAX_BATCH`]) and commits them in
//! one transaction: one fsync for the whole group. Each job is still answered
//! only after that commit. The queue is bounded; when it is full, callers wait
//! (backpressure), they are never dropped.
//!
//! Reads go to a small pool of read-only connections on Tokio's blocking pool,
//! so they never stall an async worker.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::{
    tags_from_column, tags_to_column, ApiKey, CodeKind, DeleteOutcome, Link, LinkQuery, LinkStore,
    LinkUpdate, Scope, StateFilter, StoreError, StoreResult, UpdateOutcome, LINK_COLUMNS,
};

/// A write refused for want of disk space is a [`StoreError::Full`].
fn db_err(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        StoreError::Full(e.to_string())
    } else {
        StoreError::backend(e)
    }
}

/// Below this much free space on the store's file system, writes are
/// expected to fail and readiness says so.
pub const MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// Free bytes for this user on the file system holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `stat` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Jobs that may wait for the writer before callers are held back.
const QUEUE_CAPACITY: usize = 8192;
const READERS: usize = 4;
/// WAL pages after which a commit checkpoints them into the database
/// (SQLite's default is 1,000). Codes are spread over the key space, so each
/// create dirties its own leaf page; a longer WAL lets a page written by many
/// commits reach the database file once per checkpoint. Measured with 100,000
/// creates, 64 in flight: 11 KB written to disk per create at 1,000 pages,
/// 8 KB at 10,000, and less writer CPU. The WAL holds up to ~40 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;
/// A WAL file larger than this is truncated back to it when it restarts.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema versions, applied in order and recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: links and API keys.
    "CREATE TABLE links (
        code       TEXT PRIMARY KEY,
        id         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        url        TEXT NOT NULL,
        redirect   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        deleted_at INTEGER,
        owner      TEXT
    ) WITHOUT ROWID;
    CREATE TABLE api_keys (
        name       TEXT PRIMARY KEY,
        hash       TEXT NOT NULL UNIQUE,
        prefix     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );",
    // 2: id reservations, the fence that keeps a restarted worker from
    // reissuing ids.
    "CREATE TABLE id_reservations (
        worker   INTEGER PRIMARY KEY,
        until_ms INTEGER NOT NULL
    );",
    // 3: owners, scopes and rate limits of keys; tags; an owner's links
    // newest first.
    "ALTER TABLE links ADD COLUMN tags TEXT;
    CREATE INDEX links_by_owner ON links (owner, id DESC);
    ALTER TABLE api_keys ADD COLUMN owner TEXT;
    ALTER TABLE api_keys ADD COLUMN scopes TEXT;
    ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;",
    // 4: links whose statistics page is public.
    "ALTER TABLE links ADD COLUMN public_stats INTEGER;",
];

const KEY_COLUMNS: &str = "name, hash, prefix, created_at, revoked_at, owner, scopes, rate_limit";

type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// A unit of work for the writer thread. `run` executes inside the group's
/// transaction and returns the answer to send once the commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (JobStatus, Completion) + Send>;

/// How a job's own work went, before the group's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobStatus {
    Ok,
    Failed,
    /// Failed for want of disk space.
    Full,
}
type Completion = Box<dyn FnOnce(Result<(), &JobFailure>) + Send>;

/// Why a job's writes were not committed.
#[derive(Debug)]
enum JobFailure {
    /// The group's commit failed.
    Commit(rusqlite::Error),
    /// SQLite rolled the group's transaction back while a job ran (a full
    /// disk, say), or a savepoint could not be handled: nothing of the group
    /// was written.
    Aborted { why: String, full: bool },
}

impl JobFailure {
    fn to_store_error(&self) -> StoreError {
        match self {
            JobFailure::Commit(e) => match db_err_ref(e) {
                Some(full) => full,
                None => StoreError::Backend(e.to_string().into()),
            },
            JobFailure::Aborted { why, full: true } => StoreError::Full(why.clone()),
            JobFailure::Aborted { why, full: false } => StoreError::Backend(why.clone().into()),
        }
    }
}

fn db_err_ref(e: &rusqlite::Error) -> Option<StoreError> {
    (e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
        .then(|| StoreError::Full(e.to_string()))
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
}

struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = self.conns[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(db_err)
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tracing::info!(version = i + 1, "applying store migration");
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date. Must be called inside a Tokio runtime.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let mut conn = Connection::open(&path).map_err(db_err)?;
        configure(&conn).map_err(db_err)?;
        migrate(&mut conn).map_err(db_err)?;

        let mut conns = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(db_err)?;
            reader.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
            conns.push(Mutex::new(reader));
        }

        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(StoreError::backend)?;

        Ok(Self {
            path,
            writer: tx,
            readers: Arc::new(ReadPool {
                conns,
                next: AtomicUsize::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `op` for the writer and waits until its group is committed.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, rx): (Reply<T>, _) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = op(conn);
            let status = match &result {
                Ok(_) => JobStatus::Ok,
                Err(StoreError::Full(_)) => JobStatus::Full,
                Err(_) => JobStatus::Failed,
            };
            let done: Completion = Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(e.to_store_error()),
                };
                let _ = reply.send(answer);
            });
            (status, done)
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Backend("the write was not committed".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(op))
            .await
            .map_err(StoreError::backend)?
    }
}

/// Takes every job waiting (up to [`MAX_BATCH`]), runs them in one
/// transaction, commits once, then answers each. Ends when every sender is
/// gone, after finishing the jobs already queued.
fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    // Jobs not yet run carry over to the next group.
    let mut batch: VecDeque<Job> = VecDeque::with_capacity(MAX_BATCH);
    loop {
        if batch.is_empty() {
            match rx.blocking_recv() {
                Some(first) => batch.push_back(first),
                None => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push_back(job),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "store could not begin a write transaction");
                // Dropping the jobs drops their reply channels: each caller
                // gets an error and nothing was written.
                batch.clear();
                continue;
            }
        };
        // Each job runs in its own savepoint: a job that fails leaves no
        // half of its writes behind, and the others still commit. If SQLite
        // rolls back the whole transaction (it does on a full disk), the
        // connection is back in autocommit: the jobs that ran are answered as
        // failed (nothing of theirs was written), and the jobs not yet run
        // wait for the next group, never running in autocommit.
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut aborted: Option<(String, bool)> = None;
        while let Some(job) = batch.pop_front() {
            if let Err(e) = tx.execute_batch("SAVEPOINT job") {
                aborted = Some((format!("could not open a savepoint: {e}"), false));
                batch.push_front(job);
                break;
            }
            let (status, done) = job(&tx);
            completions.push(done);
            if tx.is_autocommit() {
                aborted = Some((
                    "the store's transaction was rolled back; nothing of this group was written"
                        .to_owned(),
                    status == JobStatus::Full,
                ));
                break;
            }
            let end = if status == JobStatus::Ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = tx.execute_batch(end) {
                aborted = Some((format!("could not close a savepoint: {e}"), false));
                break;
            }
        }
        let outcome = match aborted {
            Some((why, full)) => {
                tracing::error!(reason = %why, jobs = completions.len(), "store write group failed");
                let _ = tx.rollback();
                Err(JobFailure::Aborted { why, full })
            }
            None => tx.commit().map_err(|e| {
                tracing::error!(error = %e, jobs = completions.len(), "store commit failed");
                JobFailure::Commit(e)
            }),
        };
        for done in completions {
            done(outcome.as_ref().map(|_| ()));
        }
    }
    tracing::debug!("sqlite writer stopped");
}

fn link_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    let kind: String = row.get(2)?;
    Ok(Link {
        code: row.get(0)?,
        id: row.get(1)?,
        kind: CodeKind::parse(&kind).unwrap_or(CodeKind::Generated),
        url: row.get(3)?,
        redirect: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        deleted_at: row.get(7)?,
        owner: row.get(8)?,
        tags: tags_from_column(row.get::<_, Option<String>>(9)?.as_deref()),
        public_stats: row.get::<_, Option<bool>>(10)?.unwrap_or(false),
    })
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let name: String = row.get(0)?;
    Ok(ApiKey {
        hash: row.get(1)?,
        prefix: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
        owner: row
            .get::<_, Option<String>>(5)?
            .unwrap_or_else(|| name.clone()),
        scopes: Scope::from_column(row.get::<_, Option<String>>(6)?.as_deref()),
        rate_limit: row.get(7)?,
        name,
    })
}

/// The condition of a listing's state, at `?6`.
fn state_condition(state: StateFilter) -> &'static str {
    match state {
        StateFilter::Active => "deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?6)",
        StateFilter::Expired => "deleted_at IS NULL AND expires_at <= ?6",
        StateFilter::Deleted => "deleted_at IS NOT NULL AND ?6 IS NOT NULL",
        StateFilter::All => "?6 IS NOT NULL",
    }
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        let link = link.clone();
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO links ({LINK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (code) DO NOTHING"
                ))
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        link.code,
                        link.id,
                        link.kind.as_str(),
                        link.url,
                        link.redirect,
                        link.created_at,
                        link.expires_at,
                        link.deleted_at,
                        link.owner,
                        tags_to_column(&link.tags),
                        link.public_stats,
                    ])
                })
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(link.code));
            }
            Ok(())
        })
        .await
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        let code = code.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM links WHERE code = ?1"))?
                .query_row([code], link_from_row)
                .optional()
        })
        .await
    }

    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
        let code = code.to_owned();
        self.write(move |conn| {
            let deleted_at: Option<Option<i64>> = conn
                .query_row(
                    "SELECT deleted_at FROM links WHERE code = ?1",
                    [&code],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            match deleted_at {
                None => Ok(DeleteOutcome::NotFound),
                Some(Some(_)) => Ok(DeleteOutcome::AlreadyDeleted),
                Some(None) => {
                    conn.execute(
                        "UPDATE links SET deleted_at = ?2 WHERE code = ?1",
                        params![code, at_ms],
                    )
                    .map_err(db_err)?;
                    Ok(DeleteOutcome::Deleted)
                }
            }
        })
        .await
    }

    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>> {
        let query = query.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM links
                 WHERE owner = ?1 AND id < ?2
                   AND (?3 IS NULL OR instr(lower(code), ?3) > 0 OR instr(lower(url), ?3) > 0)
                   AND (?4 IS NULL OR instr(',' || IFNULL(tags, '') || ',', ',' || ?4 || ',') > 0)
                   AND {}
                 ORDER BY id DESC LIMIT ?5",
                state_condition(query.state)
            );
            conn.prepare_cached(&sql)?
                .query_map(
                    params![
                        query.owner,
                        query.before_id.unwrap_or(i64::MAX),
                        query.q.as_deref().map(str::to_ascii_lowercase),
                        query.tag,
                        query.limit as i64,
                        query.now_ms,
                    ],
                    link_from_row,
                )?
                .collect()
        })
        .await
    }

    async fn update_link(&self, code: &str, update: &LinkUpdate) -> StoreResult<UpdateOutcome> {
        let code = code.to_owned();
        let update = update.clone();
        self.write(move |conn| {
            let found = conn
                .prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM links WHERE code = ?1"))
                .and_then(|mut stmt| stmt.query_row([&code], link_from_row).optional())
                .map_err(db_err)?;
            let Some(mut link) = found else {
                return Ok(UpdateOutcome::NotFound);
            };
            if link.deleted_at.is_some() {
                return Ok(UpdateOutcome::Deleted);
            }
            update.apply(&mut link);
            conn.prepare_cached(
                "UPDATE links SET url = ?2, expires_at = ?3, redirect = ?4, tags = ?5, public_stats = ?6 WHERE code = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    code,
                    link.url,
                    link.expires_at,
                    link.redirect,
                    tags_to_column(&link.tags),
                    link.public_stats,
                ])
            })
            .map_err(db_err)?;
            Ok(UpdateOutcome::Updated(link))
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO api_keys ({KEY_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING"
                    ),
                    params![
                        key.name,
                        key.hash,
                        key.prefix,
                        key.created_at,
                        key.revoked_at,
                        key.owner,
                        Scope::to_column(&key.scopes),
                        key.rate_limit,
                    ],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(StoreError::KeyNameTaken(key.name));
            }
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"
            ))?
            .query_row([hash], key_from_row)
            .optional()
        })
        .await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, name"
            ))?
            .query_map([], key_from_row)?
            .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, at_ms],
            )
            .map(|n| n > 0)
            .map_err(db_err)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn writable(&self) -> StoreResult<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let free = tokio::task::spawn_blocking(move || free_bytes(&dir))
            .await
            .map_err(StoreError::backend)?
            .map_err(StoreError::backend)?;
        if free < MIN_FREE_BYTES {
            return Err(StoreError::Full(format!(
                "{} KiB free next to {}; writes need at least {} KiB",
                free / 1024,
                self.path.display(),
                MIN_FREE_BYTES / 1024
            )));
        }
        Ok(())
    }

    async fn id_reservation(&self, worker: u16) -> StoreResult<i64> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT until_ms FROM id_reservations WHERE worker = ?1",
                [worker],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
        .await
    }

    async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO id_reservations (worker, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (worker) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
            )
            .and_then(|mut stmt| stmt.execute(params![worker, until_ms]))
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

    fn op(f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static) -> Op {
        Box::new(f)
    }

    /// Jobs of one write group: queued, in order, while the writer is
    /// held busy, so that they share one transaction.
    async fn one_group(store: &Arc<SqliteStore>, jobs: Vec<Op>) -> Vec<StoreResult<()>> {
        let s = store.clone();
        let hold = tokio::spawn(async move {
            s.write(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
        });
        let mut handles = Vec::new();
        for job in jobs {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let s = store.clone();
            handles.push(tokio::spawn(async move { s.write(job).await }));
        }
        hold.await.unwrap().unwrap();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    fn values(store: &SqliteStore) -> Vec<i64> {
        let conn = Connection::open(store.path()).unwrap();
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A store in `dir` with a table `t (v INTEGER)` for the jobs to write.
    async fn store_with_table(dir: &Path) -> Arc<SqliteStore> {
        let store = Arc::new(SqliteStore::open(dir.join("links.db")).unwrap());
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE t (v INTEGER)")
                    .map_err(db_err)
            })
            .await
            .unwrap();
        store
    }

    fn insert(c: &Connection, v: i64) -> StoreResult<()> {
        c.execute("INSERT INTO t VALUES (?1)", [v])
            .map(drop)
            .map_err(db_err)
    }

    /// A job that fails leaves none of its writes behind, and the others of
    /// its group still commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_fails_alone_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(dir.path()).await;
        let results = one_group(
            &store,
            vec![
                op(|c| insert(c, 1)),
                op(|c| {
                    insert(c, 2)?;
                    Err(StoreError::Conflict("x".into()))
                }),
                op(|c| insert(c, 3)),
            ],
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(StoreError::Conflict(_))));
        assert_eq!(values(&store), [1, 3]);
    }

    /// When SQLite rolls back the whole transaction during a job (it does
    /// when the disk is full), every job that ran is answered as failed and
    /// indeed wrote nothing; the jobs after it run in the next group, never
    /// in autocommit behind the group's back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rolled_back_group_writes_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(dir.path()).await;
        let results = one_group(
            &store,
            vec![
                op(|c| insert(c, 1)),
                op(|c| c.execute_batch("ROLLBACK").map_err(db_err)),
                op(|c| insert(c, 3)),
            ],
        )
        .await;
        assert!(results[0].is_err() && results[1].is_err(), "{results:?}");
        assert!(results[2].is_ok(), "{results:?}");
        assert_eq!(values(&store), [3], "answered as failed, and not written");

        // A full disk: the same, and the answer says why.
        let pages: i64 = store
            .read(|c| c.query_row("PRAGMA page_count", [], |r| r.get(0)))
            .await
            .unwrap();
        let limited = move |f: fn(&Connection) -> StoreResult<()>| {
            op(move |c| {
                c.pragma_update(None, "max_page_count", pages + 4)
                    .map_err(db_err)?;
                f(c)
            })
        };
        let results = one_group(
            &store,
            vec![
                limited(|c| insert(c, 4)),
                limited(|c| {
                    c.execute("INSERT INTO t VALUES (zeroblob(1000000))", [])
                        .map(drop)
                        .map_err(db_err)
                }),
                limited(|c| insert(c, 6)),
            ],
        )
        .await;
        assert!(
            matches!(results[0], Err(StoreError::Full(_))),
            "{results:?}"
        );
        assert!(
            matches!(results[1], Err(StoreError::Full(_))),
            "{results:?}"
        );
        assert!(results[2].is_ok(), "{results:?}");
        assert_eq!(values(&store), [3, 6]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("links.db")).unwrap());
        crate::conformance::run_all(store).await;
    }

    /// A database from before owners, scopes and tags: its keys become their
    /// own owners with the default scopes, its links have no tags, and both
    /// are listed and found as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_from_before_owners_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO api_keys VALUES ('old', 'h1', 'sl_abcdef', 1, NULL);
                 INSERT INTO links VALUES ('old-link', 7, 'alias', 'https://example.com', 302, 1, NULL, NULL, 'old');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let key = store.find_api_key("h1").await.unwrap().unwrap();
        assert_eq!(key.owner, "old");
        assert_eq!(key.scopes, Scope::DEFAULT.to_vec());
        assert_eq!(key.rate_limit, None);
        let link = store.get_link("old-link").await.unwrap().unwrap();
        assert!(link.tags.is_empty());
        let listed = store
            .list_links(&LinkQuery {
                owner: "old".into(),
                before_id: None,
                limit: 10,
                q: None,
                tag: None,
                state: StateFilter::Active,
                now_ms: 2,
            })
            .await
            .unwrap();
        assert_eq!(listed, vec![link]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_and_schema_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let link = crate::conformance::sample_link("reopen1", CodeKind::Alias);
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_link(&link).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get_link("reopen1").await.unwrap(), Some(link));
    }
}
