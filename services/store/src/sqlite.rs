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
//!
//! Layout: links are rows keyed by their id, so creates append to the end of
//! the table (ids grow with time) instead of landing on a random page each.
//! A generated code is a permutation of its link's id: with a [`CodeScheme`]
//! the store decodes it and reads the row by id. Every other code (aliases,
//! links stored without a scheme or under an earlier one) is in a unique
//! index on codes, `links_by_code`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::{
    tags_from_column, tags_to_column, ApiKey, CodeKind, DeleteOutcome, Link, LinkQuery, LinkStore,
    LinkUpdate, Scope, StateFilter, StoreError, StoreResult, UpdateOutcome, KEY_COLUMNS,
    LINK_COLUMNS,
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
    // SAFETY: statvfs is a plain C struct, for which all zeroes is a value.
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
    // 5: links keyed by id, so creates append; codes indexed only where a
    // code does not decode to its id (`decodes = 0`); the store's settings.
    "CREATE TABLE links_by_id (
        id           INTEGER PRIMARY KEY,
        code         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        url          TEXT NOT NULL,
        redirect     INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        deleted_at   INTEGER,
        owner        TEXT,
        tags         TEXT,
        public_stats INTEGER,
        decodes      INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO links_by_id (id, code, kind, url, redirect, created_at, expires_at, deleted_at, owner, tags, public_stats)
        SELECT id, code, kind, url, redirect, created_at, expires_at, deleted_at, owner, tags, public_stats FROM links;
    DROP TABLE links;
    ALTER TABLE links_by_id RENAME TO links;
    CREATE INDEX links_by_owner ON links (owner, id DESC);
    CREATE UNIQUE INDEX links_by_code ON links (code) WHERE decodes = 0;
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
];

/// How generated codes map back to ids, so the store can find a generated
/// link by its id instead of keeping every code in an index.
///
/// The fingerprint names the scheme (two schemes with the same fingerprint
/// must decode alike). When a store is opened under a fingerprint other than
/// the one it last saw, every link it marked as found by id moves back into
/// the code index, so links made under an earlier code secret are still
/// found. Every process that writes to one database must use one scheme.
#[derive(Clone)]
pub struct CodeScheme(Arc<SchemeInner>);

/// A generated code to the id it encodes, if it is one.
type Decode = dyn Fn(&str) -> Option<i64> + Send + Sync;

struct SchemeInner {
    fingerprint: String,
    decode: Box<Decode>,
}

impl CodeScheme {
    pub fn new(
        fingerprint: impl Into<String>,
        decode: impl Fn(&str) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(SchemeInner {
            fingerprint: fingerprint.into(),
            decode: Box::new(decode),
        }))
    }

    fn decode(&self, code: &str) -> Option<i64> {
        (self.0.decode)(code)
    }
}

impl std::fmt::Debug for CodeScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CodeScheme")
            .field(&self.0.fingerprint)
            .finish()
    }
}

/// Makes `scheme` the store's: if the store last ran under another one, the
/// links found by id move back into the code index first.
fn adopt_scheme(conn: &mut Connection, scheme: &CodeScheme) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: Option<String> = tx
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'code_scheme'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if current.as_deref() != Some(scheme.0.fingerprint.as_str()) {
        let moved = tx.execute("UPDATE links SET decodes = 0 WHERE decodes = 1", [])?;
        if moved > 0 {
            tracing::warn!(
                links = moved,
                "the code scheme changed: links made under the earlier one are found through the code index"
            );
        }
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('code_scheme', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [&scheme.0.fingerprint],
        )?;
    }
    tx.commit()
}

/// The link whose code is `code`: by id when the scheme decodes it, else
/// through the code index.
fn find_link(
    conn: &Connection,
    scheme: Option<&CodeScheme>,
    code: &str,
) -> rusqlite::Result<Option<Link>> {
    // The statements' text is built once: this is every cold lookup.
    static BY_ID: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {LINK_COLUMNS} FROM links WHERE id = ?1 AND code = ?2"));
    static BY_CODE: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {LINK_COLUMNS} FROM links WHERE code = ?1 AND decodes = 0")
    });
    if let Some(id) = scheme.and_then(|s| s.decode(code)) {
        let by_id = conn
            .prepare_cached(&BY_ID)?
            .query_row(params![id, code], link_from_row)
            .optional()?;
        if by_id.is_some() {
            return Ok(by_id);
        }
    }
    conn.prepare_cached(&BY_CODE)?
        .query_row([code], link_from_row)
        .optional()
}

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
    scheme: Option<CodeScheme>,
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
    /// up to date. Must be called inside a Tokio runtime. Without a
    /// [`CodeScheme`], every code goes into the code index (see
    /// [`SqliteStore::open_with_scheme`]); links stored under a scheme are
    /// not found by a store opened without it.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_inner(path.as_ref(), None)
    }

    /// Opens the database as [`SqliteStore::open`] does, finding generated
    /// links by the id their code decodes to: creates append to the table
    /// and leave the code index alone.
    pub fn open_with_scheme(path: impl AsRef<Path>, scheme: CodeScheme) -> StoreResult<Self> {
        Self::open_inner(path.as_ref(), Some(scheme))
    }

    fn open_inner(path: &Path, scheme: Option<CodeScheme>) -> StoreResult<Self> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let mut conn = Connection::open(&path).map_err(db_err)?;
        configure(&conn).map_err(db_err)?;
        migrate(&mut conn).map_err(db_err)?;
        if let Some(scheme) = &scheme {
            adopt_scheme(&mut conn, scheme).map_err(db_err)?;
        }

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
            scheme,
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
        let scheme = self.scheme.clone();
        self.write(move |conn| {
            let decoded = scheme.as_ref().and_then(|s| s.decode(&link.code));
            let decodes = decoded == Some(link.id);
            // A code belongs to one link, whether it is found by id or
            // through the index: look on the side the new row is not on.
            let taken = if decodes {
                conn.prepare_cached("SELECT 1 FROM links WHERE code = ?1 AND decodes = 0")
                    .and_then(|mut stmt| stmt.exists([&link.code]))
            } else if let Some(id) = decoded {
                conn.prepare_cached("SELECT 1 FROM links WHERE id = ?1 AND code = ?2")
                    .and_then(|mut stmt| stmt.exists(params![id, link.code]))
            } else {
                Ok(false)
            }
            .map_err(db_err)?;
            if taken {
                return Err(StoreError::Conflict(link.code));
            }
            // The id and, for indexed codes, the code are unique: a clash
            // with either inserts nothing.
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO links ({LINK_COLUMNS}, decodes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT DO NOTHING"
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
                        decodes,
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
        let scheme = self.scheme.clone();
        self.read(move |conn| find_link(conn, scheme.as_ref(), &code))
            .await
    }

    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
        let code = code.to_owned();
        let scheme = self.scheme.clone();
        self.write(move |conn| {
            let found = find_link(conn, scheme.as_ref(), &code).map_err(db_err)?;
            match found {
                None => Ok(DeleteOutcome::NotFound),
                Some(Link {
                    deleted_at: Some(_),
                    ..
                }) => Ok(DeleteOutcome::AlreadyDeleted),
                Some(link) => {
                    conn.execute(
                        "UPDATE links SET deleted_at = ?2 WHERE id = ?1",
                        params![link.id, at_ms],
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
        let scheme = self.scheme.clone();
        self.write(move |conn| {
            let found = find_link(conn, scheme.as_ref(), &code).map_err(db_err)?;
            let Some(mut link) = found else {
                return Ok(UpdateOutcome::NotFound);
            };
            if link.deleted_at.is_some() {
                return Ok(UpdateOutcome::Deleted);
            }
            update.apply(&mut link);
            conn.prepare_cached(
                "UPDATE links SET url = ?2, expires_at = ?3, redirect = ?4, tags = ?5, public_stats = ?6 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    link.id,
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
                 INSERT INTO links VALUES ('old-link', 7, 'alias', 'https://example.com', 302, 1, NULL, NULL, 'old');
                 INSERT INTO links VALUES ('g8', 8, 'generated', 'https://example.com/g', 302, 1, NULL, NULL, NULL);",
            )
            .unwrap();
        }
        let store = SqliteStore::open_with_scheme(&path, scheme("g")).unwrap();
        let key = store.find_api_key("h1").await.unwrap().unwrap();
        assert_eq!(key.owner, "old");
        assert_eq!(key.scopes, Scope::DEFAULT.to_vec());
        assert_eq!(key.rate_limit, None);
        let link = store.get_link("old-link").await.unwrap().unwrap();
        assert!(link.tags.is_empty());
        let generated = store.get_link("g8").await.unwrap().unwrap();
        assert_eq!((generated.id, generated.kind), (8, CodeKind::Generated));
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

    /// A toy scheme: generated code `g<id>` (or `h<id>` for the other
    /// fingerprint) decodes to `<id>`.
    fn scheme(prefix: &'static str) -> CodeScheme {
        CodeScheme::new(prefix, move |code| {
            code.strip_prefix(prefix).and_then(|n| n.parse().ok())
        })
    }

    fn link(code: &str, id: i64, kind: CodeKind) -> Link {
        let mut link = crate::conformance::sample_link(code, kind);
        link.id = id;
        link
    }

    /// Whether the row of `code` is found by id (1) or by the index (0).
    fn decodes(path: &Path, code: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT decodes FROM links WHERE code = ?1", [code], |r| {
                r.get(0)
            })
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_with_a_code_scheme_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_scheme(dir.path().join("links.db"), scheme("g"));
        crate::conformance::run_all(Arc::new(store.unwrap())).await;
    }

    /// Generated links are kept out of the code index and found by id, for
    /// reads, updates and deletes alike; aliases are found by the index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generated_links_are_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let store = SqliteStore::open_with_scheme(&path, scheme("g")).unwrap();
        let generated = link("g42", 42, CodeKind::Generated);
        let alias = link("launch", 43, CodeKind::Alias);
        store.create_link(&generated).await.unwrap();
        store.create_link(&alias).await.unwrap();
        assert_eq!(decodes(&path, "g42"), 1);
        assert_eq!(decodes(&path, "launch"), 0);
        assert_eq!(store.get_link("g42").await.unwrap(), Some(generated));
        assert_eq!(store.get_link("launch").await.unwrap(), Some(alias));
        // A code that decodes to a stored id but is not that link's code.
        assert_eq!(store.get_link("g43").await.unwrap(), None);
        assert_eq!(store.get_link("g042").await.unwrap(), None);
        let update = LinkUpdate {
            url: Some("https://example.org/new".into()),
            ..LinkUpdate::default()
        };
        let UpdateOutcome::Updated(updated) = store.update_link("g42", &update).await.unwrap()
        else {
            panic!("the generated link is updated");
        };
        assert_eq!(updated.url, "https://example.org/new");
        assert_eq!(store.get_link("g42").await.unwrap(), Some(updated));
        assert_eq!(
            store.delete_link("g42", 5).await.unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            store.get_link("g42").await.unwrap().unwrap().deleted_at,
            Some(5)
        );
        assert_eq!(
            store.delete_link("g43", 5).await.unwrap(),
            DeleteOutcome::NotFound
        );
    }

    /// A code is one link's whichever way it is found: an alias spelled as
    /// a generated code is refused, and so is a generated code an alias
    /// already holds; a second link with a taken id is refused too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn codes_stay_unique_across_id_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open_with_scheme(dir.path().join("links.db"), scheme("g")).unwrap();
        store
            .create_link(&link("g7", 7, CodeKind::Generated))
            .await
            .unwrap();
        // An alias `g7` (its own id 8) clashes with the generated link.
        assert!(matches!(
            store.create_link(&link("g7", 8, CodeKind::Alias)).await,
            Err(StoreError::Conflict(c)) if c == "g7"
        ));
        // An alias holding `g9` before id 9 is issued: the generated link
        // with that code is refused, the alias stays.
        let alias = link("g9", 20, CodeKind::Alias);
        store.create_link(&alias).await.unwrap();
        assert!(matches!(
            store.create_link(&link("g9", 9, CodeKind::Generated)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.get_link("g9").await.unwrap(), Some(alias));
        // The same id again, under another code.
        assert!(matches!(
            store.create_link(&link("other", 7, CodeKind::Alias)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.get_link("other").await.unwrap(), None);
    }

    /// Opened under another scheme (a new code secret), the store still
    /// finds every link made under the earlier one, through the index; links
    /// made under the new scheme are found by id. Opening without a scheme
    /// changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_survive_a_change_of_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let old = link("g1", 1, CodeKind::Generated);
        {
            let store = SqliteStore::open_with_scheme(&path, scheme("g")).unwrap();
            store.create_link(&old).await.unwrap();
        }
        {
            let _keys_only = SqliteStore::open(&path).unwrap();
        }
        assert_eq!(decodes(&path, "g1"), 1);
        {
            // The same scheme again: nothing moves.
            let _same = SqliteStore::open_with_scheme(&path, scheme("g")).unwrap();
        }
        assert_eq!(decodes(&path, "g1"), 1);
        let store = SqliteStore::open_with_scheme(&path, scheme("h")).unwrap();
        assert_eq!(decodes(&path, "g1"), 0);
        assert_eq!(store.get_link("g1").await.unwrap(), Some(old));
        let new = link("h2", 2, CodeKind::Generated);
        store.create_link(&new).await.unwrap();
        assert_eq!(decodes(&path, "h2"), 1);
        assert_eq!(store.get_link("h2").await.unwrap(), Some(new));
        // `h1` decodes to the old link's id but is not its code.
        assert_eq!(store.get_link("h1").await.unwrap(), None);
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
