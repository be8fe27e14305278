//! The lake's three Delta tables and the one way files become visible: a
//! Delta commit.
//!
//! ```text
//! LAKE/
//!   clicks/_delta_log/...                       the commits
//!   clicks/date=YYYY-MM-DD/clicks-*.parquet     raw events
//!   daily/date=YYYY-MM-DD/daily-*.parquet       code, clicks, unique_visitors, nonbot_clicks, nonbot_visitors
//!   dims/date=YYYY-MM-DD/dims-*.parquet         code, dimension, value, clicks, unique_visitors, nonbot_clicks, nonbot_visitors
//! ```
//!
//! A file that no commit references is invisible to every reader, whoever
//! wrote it; vacuum deletes such files once they are older than the
//! retention period. Commits are put-if-absent writes of the next log
//! entry (`If-None-Match: *` on S3), so several writers may commit at once:
//! the loser re-checks the winner's commit and retries, or is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once};

use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake_core::kernel::{Action, Add, DataType, Remove, StructField, Transaction};
use deltalake_core::logstore::{default_logstore, logstore_factories, LogStoreFactory};
use deltalake_core::logstore::{ObjectStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::location::Location;
use crate::{LakeError, LakeResult};

/// One of the lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Clicks,
    Daily,
    Dims,
}

impl TableKind {
    pub const ALL: [TableKind; 3] = [TableKind::Clicks, TableKind::Daily, TableKind::Dims];

    /// Its folder under the lake root, and its name in queries.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Clicks => "clicks",
            TableKind::Daily => "daily",
            TableKind::Dims => "dims",
        }
    }

    /// Its Arrow schema, without the partition column `date`.
    pub fn schema(self) -> arrow_schema::SchemaRef {
        match self {
            TableKind::Clicks => snowlink_events::arrow::click_schema(),
            TableKind::Daily => crate::daily_schema(),
            TableKind::Dims => crate::dims_schema(),
        }
    }

    /// Its Delta columns: the file columns, then `date`.
    fn columns(self) -> Vec<StructField> {
        use arrow_schema::{DataType as A, TimeUnit};
        let mut cols: Vec<StructField> = self
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    A::Utf8 => DataType::STRING,
                    A::Int64 => DataType::LONG,
                    A::Int16 => DataType::SHORT,
                    A::Boolean => DataType::BOOLEAN,
                    A::Timestamp(TimeUnit::Millisecond, Some(_)) => DataType::TIMESTAMP,
                    other => unreachable!("no lake column is of type {other}"),
                };
                StructField::new(f.name(), t, f.is_nullable())
            })
            .collect();
        cols.push(StructField::new("date", DataType::STRING, false));
        cols
    }
}

/// A lake: where it is and the store that reaches it.
#[derive(Clone)]
pub struct Lake {
    location: Location,
    url: Url,
    /// The store at the root of the file system or bucket.
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("location", &self.location.display())
            .finish()
    }
}

/// Delta commits through S3 use the same log store as local files: the next
/// log entry is written with `PutMode::Create` (`If-None-Match: *`).
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn deltalake_core::logstore::LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_log_store() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            logstore_factories().insert(
                Url::parse(scheme).expect("a scheme URL"),
                Arc::new(ConditionalPutLogStores),
            );
        }
    });
}

/// A file written to a table's folder and not yet committed.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub date: String,
    /// Relative to the table's root: `date=D/name.parquet`.
    pub path: String,
    pub size: i64,
    pub rows: i64,
    /// Delta statistics (JSON), when known.
    pub stats: Option<String>,
}

impl StagedFile {
    fn add(&self, data_change: bool) -> Action {
        Action::Add(Add {
            path: self.path.clone(),
            partition_values: HashMap::from([("date".to_owned(), Some(self.date.clone()))]),
            size: self.size,
            modification_time: snowlink_events::now_ms(),
            data_change,
            stats: self.stats.clone(),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        })
    }
}

/// A committed file of a table, as its snapshot lists it.
#[derive(Debug, Clone)]
pub struct LiveFile {
    pub path: String,
    pub size: i64,
    pub rows: Option<i64>,
}

/// A stream's advance in one commit: its recorded position must still be
/// `expected` (`None`: never recorded), and becomes `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub app_id: String,
    pub expected: Option<i64>,
    pub next: i64,
}

impl Lake {
    /// A lake at a path, `file://` or `s3://` URL. Nothing is read or
    /// written yet.
    pub fn open(spec: &str) -> LakeResult<Lake> {
        Self::open_with(spec, &[])
    }

    /// [`Lake::open`] with S3 settings (`AWS_*` names) given here, over
    /// those of the environment.
    pub fn open_with(spec: &str, settings: &[(String, String)]) -> LakeResult<Lake> {
        let location = Location::parse(spec)?;
        register_s3_log_store();
        let store = location.root_store_with(settings)?;
        Ok(Lake {
            url: location.url(),
            location,
            store,
        })
    }

    pub fn at(location: Location) -> LakeResult<Lake> {
        register_s3_log_store();
        let store = location.root_store()?;
        Ok(Lake {
            url: location.url(),
            location,
            store,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The path or URL, for messages.
    pub fn display(&self) -> String {
        self.location.display()
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The store at the root of the file system or bucket.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn table_url(&self, kind: TableKind) -> Url {
        self.url
            .join(&format!("{}/", kind.name()))
            .expect("a table folder URL")
    }

    /// A path under the lake root, in the root store.
    pub fn path(&self, rel: &str) -> StorePath {
        let url = self.url.join(rel).expect("a lake path");
        StorePath::from_url_path(url.path()).expect("a valid object path")
    }

    /// A file of a table, in the root store.
    fn table_path(&self, kind: TableKind, rel: &str) -> StorePath {
        self.path(&format!("{}/{rel}", kind.name()))
    }

    /// A table's folder, when the lake is on this machine.
    fn local_dir(&self, kind: TableKind) -> Option<std::path::PathBuf> {
        match &self.location {
            Location::Local(root) => Some(root.join(kind.name())),
            Location::S3 { .. } => None,
        }
    }

    fn builder(&self, kind: TableKind) -> LakeResult<DeltaTableBuilder> {
        let url = self.table_url(kind);
        Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(self.store.clone(), url))
    }

    /// The table, loaded at its latest version, or `None` when it has no
    /// commit yet.
    pub async fn load(&self, kind: TableKind) -> LakeResult<Option<DeltaTable>> {
        if let Some(dir) = self.local_dir(kind) {
            if !dir.join("_delta_log").is_dir() {
                return Ok(None);
            }
        }
        let mut table = self.builder(kind)?.build()?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The table, created (empty, partitioned by `date`) if it has no
    /// commit yet. Writers racing to create it all end with the same table.
    pub async fn table(&self, kind: TableKind) -> LakeResult<DeltaTable> {
        if let Some(t) = self.load(kind).await? {
            return Ok(t);
        }
        if let Some(dir) = self.local_dir(kind) {
            std::fs::create_dir_all(&dir)
                .map_err(|e| LakeError::Location(format!("creating {}: {e}", dir.display())))?;
        }
        let table = self.builder(kind)?.build()?;
        let created = deltalake_core::operations::create::CreateBuilder::new()
            .with_log_store(table.log_store())
            .with_table_name(kind.name())
            .with_columns(kind.columns())
            .with_partition_columns(["date"])
            .with_configuration_property(
                deltalake_core::TableProperty::CheckpointInterval,
                Some(CHECKPOINT_INTERVAL.to_string()),
            )
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => Ok(t),
            // Another writer created it first.
            Err(e) => match self.load(kind).await? {
                Some(t) => Ok(t),
                None => Err(e.into()),
            },
        }
    }

    /// Refuses a lake in any layout but this one, naming the command that
    /// converts the layout before this one.
    pub async fn check_layout(&self) -> LakeResult<()> {
        let root = self.path("");
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| self.store_error(e))?;
        let names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        let old = names.iter().any(|n| n == "_ledger" || n == "_staging");
        let mut foreign = Vec::new();
        for kind in TableKind::ALL {
            if !names.iter().any(|n| n == kind.name()) {
                continue;
            }
            let log = self.table_path(kind, "_delta_log");
            let has_log = self
                .store
                .list_with_delimiter(Some(&log))
                .await
                .map_err(|e| self.store_error(e))?
                .objects
                .iter()
                .any(|o| o.location.as_ref().ends_with(".json"));
            if !has_log {
                foreign.push(kind.name());
            }
        }
        if old || !foreign.is_empty() {
            let what = if old {
                "is in the layout before Delta tables (a _ledger folder and plain Parquet folders)"
                    .to_owned()
            } else {
                format!(
                    "has folders that are not Delta tables ({})",
                    foreign.join(", ")
                )
            };
            return Err(LakeError::Layout(format!(
                "the lake {} {what}: convert it once with `snowlink-aggregate convert --lake {}`",
                self.display(),
                self.url
            )));
        }
        Ok(())
    }

    /// Checks that the store takes writes and refuses to overwrite an
    /// object written with `If-None-Match: *`: Delta commits rely on it.
    /// Fails with the store's own complaint (no such bucket, credentials
    /// refused) or with the server's failure to honour the condition.
    pub async fn check_conditional_writes(&self) -> LakeResult<()> {
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        // A new random name cannot exist already: when the store says it
        // does, another process's probe was being cleaned up beside it (an
        // S3 server on a file system removes a folder left empty), and a
        // new name is tried.
        let mut attempt = 0;
        let probe = loop {
            let probe = self.path(&format!("_snowlink_probe/{}", uuid::Uuid::new_v4()));
            match self
                .store
                .put_opts(&probe, PutPayload::from_static(b"1"), create.clone())
                .await
            {
                Ok(_) => break probe,
                Err(object_store::Error::AlreadyExists { .. }) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => return Err(self.store_error(e)),
            }
        };
        let second = self
            .store
            .put_opts(&probe, PutPayload::from_static(b"2"), create)
            .await;
        let _ = self.store.delete(&probe).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(()),
            Ok(_) => Err(LakeError::ConditionalWrites(format!(
                "{} overwrote an object written with If-None-Match: *; Delta commits need a store \
                 that refuses such overwrites (S3, or an S3-compatible server that honours \
                 conditional writes)",
                self.display()
            ))),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// An object store error, said in words a person can act on.
    pub fn store_error(&self, e: object_store::Error) -> LakeError {
        let hint = explain(&e.to_string()).unwrap_or("the store failed");
        LakeError::Store {
            lake: self.display(),
            hint,
            source: e,
        }
    }

    /// Writes `bytes` to a table's folder as `date=<date>/<name>`; the file
    /// is invisible until a commit adds it.
    pub async fn upload(
        &self,
        kind: TableKind,
        date: &str,
        name: &str,
        bytes: Vec<u8>,
        rows: i64,
        stats: Option<String>,
    ) -> LakeResult<StagedFile> {
        let rel = format!("date={date}/{name}");
        let size = bytes.len() as i64;
        self.store
            .put(&self.table_path(kind, &rel), PutPayload::from(bytes))
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(StagedFile {
            date: date.to_owned(),
            path: rel,
            size,
            rows,
            stats,
        })
    }

    /// Reads a committed file of a table whole.
    pub async fn read(&self, kind: TableKind, rel: &str) -> LakeResult<bytes::Bytes> {
        let p = self.table_path(kind, rel);
        let got = self.store.get(&p).await.map_err(|e| self.store_error(e))?;
        got.bytes().await.map_err(|e| self.store_error(e))
    }
}

/// What a store's error text means, in words a person can act on.
pub(crate) fn explain(text: &str) -> Option<&'static str> {
    if text.contains("NoSuchBucket") {
        Some("the bucket does not exist")
    } else if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("AccessDenied")
        || text.contains("403")
    {
        Some("the credentials were refused (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    } else if text.contains("error sending request") || text.contains("Connection refused") {
        Some("the storage server cannot be reached")
    } else {
        None
    }
}

/// Per date, the committed files of a table.
pub fn files_by_date(table: &DeltaTable) -> LakeResult<BTreeMap<String, Vec<LiveFile>>> {
    let mut out: BTreeMap<String, Vec<LiveFile>> = BTreeMap::new();
    let snapshot = table.snapshot()?;
    for f in snapshot.log_data().iter() {
        let date = f
            .partition_values_map()
            .get("date")
            .cloned()
            .flatten()
            .unwrap_or_default();
        out.entry(date).or_default().push(LiveFile {
            path: f.object_store_path().to_string(),
            size: f.size(),
            rows: f.num_records().map(|n| n as i64),
        });
    }
    for files in out.values_mut() {
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(out)
}

/// The recorded position of each app id (a stream, a rollup), `None` where
/// none is recorded.
pub async fn recorded(
    table: &DeltaTable,
    app_ids: impl IntoIterator<Item = &str>,
) -> LakeResult<BTreeMap<String, Option<i64>>> {
    let snapshot = table.snapshot()?;
    let log_store = table.log_store();
    let mut out = BTreeMap::new();
    for id in app_ids {
        let v = snapshot.transaction_version(log_store.as_ref(), id).await?;
        out.insert(id.to_owned(), v);
    }
    Ok(out)
}

/// What a commit does to a table.
pub enum Change<'a> {
    /// New data files (a batch of clicks).
    Append(&'a [StagedFile]),
    /// One date's files replaced by others holding other rows (a rollup).
    ReplaceDate {
        date: &'a str,
        remove: &'a [LiveFile],
        add: &'a [StagedFile],
    },
    /// One date's files replaced by others holding the same rows
    /// (compaction: `dataChange` false, so it never conflicts with appends).
    Rewrite {
        date: &'a str,
        remove: &'a [LiveFile],
        add: &'a [StagedFile],
    },
}

/// Commits `change` with `advances`, one Delta commit. The table is brought
/// to its latest version first, and every advance's recorded position must
/// be what it expects there; a writer that commits the same app id between
/// that check and the commit makes Delta's conflict check refuse it.
/// Either way the result is [`LakeError::Conflict`] and nothing is visible.
/// Returns the new table version.
///
/// `marks` are further app ids recorded in the same commit without a check
/// of their own (what only the holder of an advanced stream writes).
pub async fn commit(
    table: &mut DeltaTable,
    change: Change<'_>,
    advances: &[Advance],
    marks: &[(String, i64)],
) -> LakeResult<i64> {
    table.update_incremental(None).await?;
    let now = recorded(table, advances.iter().map(|a| a.app_id.as_str())).await?;
    for a in advances {
        let at = now.get(&a.app_id).copied().flatten();
        if at != a.expected {
            return Err(LakeError::Conflict(format!(
                "{} is recorded at {} in the table, not {}: another writer moved it",
                a.app_id,
                show(at),
                show(a.expected)
            )));
        }
    }
    let remove = |files: &[LiveFile], date: &str, data_change: bool| -> Vec<Action> {
        files
            .iter()
            .map(|f| {
                Action::Remove(Remove {
                    path: f.path.clone(),
                    data_change,
                    deletion_timestamp: Some(snowlink_events::now_ms()),
                    extended_file_metadata: Some(true),
                    partition_values: Some(HashMap::from([(
                        "date".to_owned(),
                        Some(date.to_owned()),
                    )])),
                    size: Some(f.size),
                    tags: None,
                    deletion_vector: None,
                    base_row_id: None,
                    default_row_commit_version: None,
                })
            })
            .collect()
    };
    let (actions, operation): (Vec<Action>, DeltaOperation) = match change {
        Change::Append(files) => (
            files.iter().map(|f| f.add(true)).collect(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(vec!["date".into()]),
                predicate: None,
            },
        ),
        Change::ReplaceDate {
            date,
            remove: r,
            add,
        } => {
            let mut a = remove(r, date, true);
            a.extend(add.iter().map(|f| f.add(true)));
            (
                a,
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: Some(vec!["date".into()]),
                    predicate: Some(format!("date = '{date}'")),
                },
            )
        }
        Change::Rewrite {
            date,
            remove: r,
            add,
        } => {
            let mut a = remove(r, date, false);
            a.extend(add.iter().map(|f| f.add(false)));
            (
                a,
                DeltaOperation::Optimize {
                    predicate: Some(format!("date = '{date}'")),
                    target_size: add.iter().map(|f| f.size).sum(),
                },
            )
        }
    };
    let txns = advances
        .iter()
        .map(|a| (&a.app_id, a.next))
        .chain(marks.iter().map(|(id, v)| (id, *v)))
        .map(|(id, v)| Transaction::new_with_last_update(id, v, Some(snowlink_events::now_ms())))
        .collect();
    // Checkpoints and log cleanup are done below, where a failure cannot
    // make a commit that happened look like one that did not.
    let finalized = CommitBuilder::from(
        CommitProperties::default()
            .with_application_transactions(txns)
            .with_max_retries(100)
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false)),
    )
    .with_actions(actions)
    .build(Some(table.snapshot()?), table.log_store(), operation)
    .await;
    match finalized {
        Ok(done) => {
            let version = done.version();
            table.update_incremental(Some(version)).await?;
            checkpoint_if_due(table, version).await;
            Ok(version as i64)
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(c),
        }) => Err(LakeError::Conflict(match c {
            CommitConflictError::ConcurrentTransaction => {
                "another writer committed the same stream first".to_owned()
            }
            other => other.to_string(),
        })),
        Err(e) => Err(e.into()),
    }
}

/// Commits between checkpoints of a table this lake creates (Delta's
/// `delta.checkpointInterval`; Spark's default). A reader loads the latest
/// checkpoint and at most this many commits after it, so opening a table
/// and looking up a stream's position cost the same after a year of
/// commits as after a day.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// Writes a checkpoint of `version` when the table's interval says so,
/// then removes log entries older than the table's log retention. The
/// commit is done either way: a failure here is logged, and the next
/// checkpoint covers it.
async fn checkpoint_if_due(table: &DeltaTable, version: u64) {
    use deltalake_core::table::config::TablePropertiesExt as _;
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    let config = snapshot.table_config();
    if !(version + 1).is_multiple_of(config.checkpoint_interval().get()) {
        return;
    }
    let cleanup = config.enable_expired_log_cleanup();
    if let Err(e) = deltalake_core::checkpoints::create_checkpoint(table, None).await {
        tracing::warn!(version, error = %e, "writing a checkpoint failed; the commit stands, and the next checkpoint covers it");
        return;
    }
    if cleanup {
        if let Err(e) = deltalake_core::checkpoints::cleanup_metadata(table, None).await {
            tracing::warn!(version, error = %e, "removing expired log entries failed");
        }
    }
}

fn show(v: Option<i64>) -> String {
    v.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
}
