//! The click event: one type shared by the service that emits it, the spool
//! and Kafka that carry it (as one JSON object each), and the batch job that
//! writes it to Parquet.
//!
//! The serde form and the Arrow schema sit side by side in this crate, so a
//! field added to one without the other fails to compile or fails the tests
//! below. `schema_version` lets readers of the spool and of Kafka tell apart
//! events written by older producers.
//!
//! Privacy: an event never holds an IP address. `visitor_id` is a keyed hash
//! of (IP, user agent) under a key that changes every UTC day.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arrow")]
pub mod arrow;

/// How click events travel through Kafka: one JSON [`ClickEvent`] per
/// message, keyed by `code` (so one link's clicks stay in order on one
/// partition), with two headers naming the spool the event was forwarded
/// from and its sequence number there. A consumer drops a message whose
/// sequence it has already seen from that spool on that partition: that is
/// a resend after a failure, not a new click.
pub mod kafka {
    pub const DEFAULT_TOPIC: &str = "clicks";
    /// The forwarding spool's random identity.
    pub const HEADER_SPOOL: &str = "snowlink-spool";
    /// The event's sequence number in that spool, in decimal.
    pub const HEADER_SEQ: &str = "snowlink-seq";
}

/// Version of the event layout written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// One redirect served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    pub schema_version: u16,
    /// A Snowflake id: unique, and ordered by time.
    pub event_id: i64,
    /// The short code that was followed.
    pub code: String,
    /// When the redirect was served, in milliseconds since the Unix epoch, UTC.
    pub ts: i64,
    /// The `Referer` header as sent.
    pub referrer: Option<String>,
    /// Lower-cased host of the referrer, for grouping.
    pub referrer_host: Option<String>,
    pub user_agent: Option<String>,
    /// Browser family, e.g. "Chrome".
    pub browser: Option<String>,
    /// Operating system family, e.g. "Windows 10".
    pub os: Option<String>,
    /// "desktop", "mobile", "tablet", "bot" or "other".
    pub device: Option<String>,
    /// Known crawler or automated client. Bots are flagged, never dropped.
    pub is_bot: bool,
    /// ISO 3166-1 alpha-2 country, upper case, when known.
    pub country: Option<String>,
    /// Keyed hash of (IP, user agent) with a key that rotates daily.
    pub visitor_id: String,
}

impl ClickEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a click event always serialises")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The UTC date of the click, `YYYY-MM-DD`: the lake partition it goes to.
    pub fn date(&self) -> String {
        date_of_ms(self.ts)
    }
}

/// `YYYY-MM-DD` of a millisecond timestamp, UTC (proleptic Gregorian).
pub fn date_of_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ClickEvent {
        ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: 42,
            code: "abc".into(),
            ts: 1_763_856_000_123,
            referrer: Some("https://news.example.com/x".into()),
            referrer_host: Some("news.example.com".into()),
            user_agent: Some("Mozilla/5.0".into()),
            browser: Some("Chrome".into()),
            os: Some("Linux".into()),
            device: Some("desktop".into()),
            is_bot: false,
            country: Some("FR".into()),
            visitor_id: "00ff".into(),
        }
    }

    #[test]
    fn json_round_trips() {
        let e = sample();
        assert_eq!(ClickEvent::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn dates() {
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(date_of_ms(1_763_856_000_123), "2025-11-23");
        assert_eq!(date_of_ms(951_782_400_000), "2000-02-29");
        assert_eq!(date_of_ms(-1), "1969-12-31");
    }
}
