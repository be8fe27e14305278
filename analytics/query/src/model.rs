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

/// Which clicks a question counts: its time bounds, and whether the clicks
/// of known bots count. Every command and stats route leaves bots out
/// unless asked, so their numbers agree.
#[derive(Debug, Default, clap::Args)]
pub struct Range {
    /// Only clicks at or after this time (7d, 2026-11-01, 2026-11-01T12:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only clicks before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Count the clicks of known bots too. By default they are left out
    /// (`stats` still reports them apart, as bot_clicks).
    #[arg(long)]
    pub include_bots: bool,
}

impl Range {
    /// A condition on the `clicks` table, starting with `AND`: nothing, or
    /// leave the clicks of known bots out.
    pub(crate) fn bots_sql(&self) -> &'static str {
        if self.include_bots {
            ""
        } else {
            " AND NOT is_bot"
        }
    }

    /// The clicks of a rollup row (`daily` or `dims`) that count, as an
    /// SQL expression named `clicks`.
    pub(crate) fn rollup_clicks(&self) -> &'static str {
        if self.include_bots {
            "clicks"
        } else {
            "nonbot_clicks AS clicks"
        }
    }

    /// The clicks and unique visitors of a rollup row that count.
    pub(crate) fn rollup_counts(&self) -> String {
        let visitors = if self.include_bots {
            "unique_visitors"
        } else {
            "nonbot_visitors AS unique_visitors"
        };
        format!("{}, {visitors}", self.rollup_clicks())
    }

    /// What the counts hold, for people reading a table.
    pub fn bots_note(&self) -> &'static str {
        if self.include_bots {
            "Clicks of known bots included."
        } else {
            "Clicks of known bots left out (--include-bots counts them)."
        }
    }
}

/// A result to print: its schema (so empty results still have a header),
/// its rows, and for time series the values of the sparkline.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub sparkline: Option<Vec<i64>>,
}

/// A question that cannot be answered as asked: a bad bound, too many
/// buckets, a code that cannot exist or that the lake has never seen. The
/// asker's to fix, so `snowlink-analytics` exits with
/// [`snowlink_events::stats::BAD_QUESTION_EXIT`] and `serve` says
/// `bad_question`; every other failure is the lake's.
#[derive(Debug)]
pub struct BadQuestion(pub String);

impl std::fmt::Display for BadQuestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadQuestion {}

/// Whether `e`, or one of its causes, is a [`BadQuestion`].
pub fn is_bad_question(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<BadQuestion>())
}

/// Fails the question as a [`BadQuestion`].
macro_rules! bad_question {
    ($($arg:tt)*) => {
        return Err($crate::model::BadQuestion(format!($($arg)*)).into())
    };
}
pub(crate) use bad_question;
