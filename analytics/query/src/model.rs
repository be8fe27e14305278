//! The vocabulary shared by the command line, the queries and the output:
//! what is asked (time range, bucket, dimension) and what comes back.

use clap::ValueEnum;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

/// Width of a time-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bucket {
    Hour,
    Day,
}

/// What a breakdown groups clicks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dimension {
    Referrer,
    Country,
    Browser,
    Os,
    Device,
}

/// The time bounds of a question.
#[derive(Debug, clap::Args)]
pub struct Range {
    /// Only clicks at or after this time (7d, 2026-11-01, 2026-11-01T12:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only clicks before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
}

/// A result to print: its schema (so empty results still have a header),
/// its rows, and for time series the values of the sparkline.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub sparkline: Option<Vec<i64>>,
}
