//! The click lake: three Delta Lake tables (`clicks`, `daily`, `dims`),
//! each partitioned by `date`, on a local folder or an S3 bucket, readable
//! by any Delta reader (Python's `deltalake`, DuckDB, Spark) and, through
//! the files the Delta log lists, by any Parquet reader.
//!
//! * Click files are sorted by `(code, ts)`, zstd-compressed,
//!   dictionary-encoded, with page statistics and a bloom filter on `code`,
//!   so a query for one link skips most of the data. The `date` column is
//!   the partition value (in the Delta log and the folder name), not a
//!   column of the files.
//! * A file becomes visible only through a Delta commit ([`commit`]), which
//!   also records, as Delta transaction identifiers (`txn` actions), the
//!   position each source stream has reached: files and positions move
//!   together or not at all.
//! * `daily` and `dims` hold the rollups of complete days, each file named
//!   by the clicks it was counted from, so a reader can tell a stale one.
//!
//! This crate is the only Parquet and Delta writer of the project: the
//! spool and Kafka paths of the aggregate both go through it.

mod location;
mod maintain;
mod rollup;
mod table;
pub mod tail_cache;
mod write;

pub use location::{s3_endpoint, Location};
pub use maintain::{
    compact, day_states, read_all_clicks, rebuild_day, refresh_rollups, vacuum, CompactStats,
    DayState,
};
pub use rollup::{
    count_day, daily_schema, dims_schema, encode_rollup, rollup_clicks, rollup_file_name,
    visitor_key, RollupStats, DIMENSIONS,
};
pub use table::{
    commit, files_by_date, recorded, Advance, Change, Lake, LiveFile, StagedFile, TableKind,
    CHECKPOINT_INTERVAL,
};
pub use write::{click_file_name, encode_clicks, sorted_batches, EncodedClicks};

/// The Delta crate, for callers that load tables themselves.
pub use deltalake_core;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{0}")]
    Location(String),
    #[error("{0}")]
    Layout(String),
    #[error("{0}")]
    ConditionalWrites(String),
    #[error("the lake {lake}: {hint}: {source}")]
    Store {
        lake: String,
        hint: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// Another writer committed first what this commit expected to change:
    /// nothing of this commit is visible.
    #[error("commit refused: {0}")]
    Conflict(String),
    #[error("{}delta: {source}", with_colon(.hint))]
    Delta {
        /// What the failure means, when it can be told ("the storage
        /// server cannot be reached"), else empty.
        hint: &'static str,
        #[source]
        source: deltalake_core::DeltaTableError,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("a background task failed: {0}")]
    Task(String),
}

pub type LakeResult<T> = Result<T, LakeError>;

fn with_colon(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("{hint}: ")
    }
}

impl From<deltalake_core::DeltaTableError> for LakeError {
    fn from(source: deltalake_core::DeltaTableError) -> Self {
        let hint = table::explain(&source.to_string()).unwrap_or_default();
        LakeError::Delta { hint, source }
    }
}
