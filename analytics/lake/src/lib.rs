//! The click lake: plain Parquet in hive-style folders, readable by any
//! Parquet tool.
//!
//! ```text
//! LAKE/
//!   clicks/date=YYYY-MM-DD/clicks-<first>-<last>.parquet   raw events
//!   daily/date=YYYY-MM-DD/daily.parquet                     code, clicks, unique_visitors
//!   dims/date=YYYY-MM-DD/dims.parquet                       code, dimension, value, clicks, unique_visitors
//!   _staging/                                               files being written; never read
//!   .lock                                                   one writer at a time
//! ```
//!
//! * `<first>-<last>` is the source range the file holds (spool sequence
//!   numbers, zero-padded to 20 digits), so the same input always yields the
//!   same file name and a rerun overwrites instead of adding a duplicate.
//! * Every file is written in `_staging/`, fsynced, renamed into place, and
//!   the folder fsynced: readers see a whole file or none.
//! * Within a file rows are sorted by `(code, ts)`, zstd-compressed,
//!   dictionary-encoded, with page statistics and a bloom filter on `code`,
//!   so a query for one link skips most of the data.
//! * The `date` column lives only in the folder names; hive-aware readers
//!   (DataFusion, DuckDB `hive_partitioning`, pyarrow `partitioning="hive"`)
//!   add it back.
//!
//! This crate is the only Parquet writer of the project: the spool and Kafka
//! paths both call [`write_clicks`].

mod compact;
mod layout;
mod rollup;
mod write;

pub use compact::{compact, CompactStats};
pub use layout::{parse_range, range_file_name, Lake, LakeLock};
pub use rollup::{daily_schema, dims_schema, rebuild_daily, visitor_key, RollupStats, DIMENSIONS};
pub use write::{sorted_batches, write_clicks, write_sorted_clicks, WrittenFile};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("another process holds the lake lock {0}")]
    Locked(std::path::PathBuf),
}

pub type LakeResult<T> = Result<T, LakeError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}
