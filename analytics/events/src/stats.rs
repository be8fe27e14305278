//! What the analytics CLI answers the service: the statistics document of
//! one link, and how a question fails. Declared once, here, for the CLI
//! that writes them and the service that reads them and documents them in
//! its OpenAPI document (the `openapi` feature).

use serde::{Deserialize, Serialize};

/// The exit status of `snowlink-analytics` for a question that cannot be
/// answered as asked (a bad bound, too many buckets, an unknown code): the
/// asker's to fix. Any other failure exits with 1.
pub const BAD_QUESTION_EXIT: u8 = 2;

/// The first line of every answer of `snowlink-analytics serve`; the
/// output follows when `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeHeader {
    pub ok: bool,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The question cannot be answered as asked (as [`BAD_QUESTION_EXIT`]).
    #[serde(default)]
    pub bad_question: bool,
}

/// Clicks in one bucket of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatsPoint {
    /// Start of the bucket, RFC 3339, UTC.
    pub bucket: String,
    pub clicks: u64,
}

/// One value of a breakdown: the top 10 by clicks, then `(other)` for the
/// rest; `(none)` counts clicks without a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatsShare {
    pub value: String,
    pub clicks: u64,
    pub unique_visitors: u64,
}

/// A link's statistics. Every breakdown adds up to `clicks`; the series is
/// gap-filled with zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkStats {
    pub code: String,
    /// The lower bound, RFC 3339; null for all time.
    pub since: Option<String>,
    /// The upper bound, RFC 3339; null for open.
    pub until: Option<String>,
    /// Clicks counted (bots left out unless `include_bots`).
    pub clicks: u64,
    pub unique_visitors: u64,
    /// Clicks of known bots in the range, counted or not.
    pub bot_clicks: u64,
    pub series: Vec<StatsPoint>,
    pub referrers: Vec<StatsShare>,
    pub countries: Vec<StatsShare>,
    pub browsers: Vec<StatsShare>,
    pub os: Vec<StatsShare>,
    pub devices: Vec<StatsShare>,
}
