//! The click event: one type shared by the service that emits it, the spool
//! (one binary row each) and Kafka (one JSON object each) that carry it, and
//! the batch job that writes it to Parquet.
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

/// First byte of a binary spool row: the layout of the bytes after it. The
/// layout has no field names, so a field added to [`ClickEvent`] needs a new
/// row version (and the old one kept readable); JSON, which starts with `{`,
/// needs none. Never `{` or white space.
pub const ROW_V1: u8 = 1;

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

/// A click event whose text is borrowed: the same fields in the same order
/// as [`ClickEvent`], so its spool row is byte for byte the row of the equal
/// `ClickEvent`. The service's spooler writes rows from it without
/// allocating the event's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClickEventRef<'a> {
    pub schema_version: u16,
    pub event_id: i64,
    pub code: &'a str,
    pub ts: i64,
    pub referrer: Option<&'a str>,
    pub referrer_host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub browser: Option<&'a str>,
    pub os: Option<&'a str>,
    pub device: Option<&'a str>,
    pub is_bot: bool,
    pub country: Option<&'a str>,
    pub visitor_id: &'a str,
}

impl ClickEventRef<'_> {
    /// Appends this event's spool row to `out` (see [`ClickEvent::encode_row`]).
    pub fn encode_row(&self, out: &mut Vec<u8>) {
        out.push(ROW_V1);
        postcard::to_io(self, &mut *out).expect("a click event always serialises");
    }
}

/// Earliest click time accepted: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// How far ahead of the reader's clock a click time may be.
pub const MAX_CLOCK_AHEAD_MS: i64 = 86_400_000;
/// Longest text fields, in bytes (the service cuts referrers at 2,048
/// characters and user agents at 512, which UTF-8 may make up to 4x longer).
pub const MAX_REFERRER_BYTES: usize = 4 * 2048;
pub const MAX_USER_AGENT_BYTES: usize = 4 * 512;
pub const MAX_LABEL_BYTES: usize = 256;
/// The device classes an event may name.
pub const DEVICES: &[&str] = &["desktop", "mobile", "tablet", "bot", "other"];

/// Why an event read from the spool or Kafka is not a click this service
/// could have produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent(pub String);

impl std::fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidEvent {}

fn invalid<T>(why: impl Into<String>) -> Result<T, InvalidEvent> {
    Err(InvalidEvent(why.into()))
}

impl ClickEvent {
    /// Parses and validates an event read from outside the process.
    pub fn parse(s: &str, now_ms: i64) -> Result<Self, InvalidEvent> {
        let e = Self::json_event(s.as_bytes())?;
        e.validate(now_ms)?;
        Ok(e)
    }

    /// Checks every field against what the service writes: a known schema
    /// version, a positive id, a code's syntax, a time between 2000 and a
    /// day past `now_ms`, bounded texts, a known device, a two-letter
    /// country and a hex visitor id.
    pub fn validate(&self, now_ms: i64) -> Result<(), InvalidEvent> {
        if !(1..=SCHEMA_VERSION).contains(&self.schema_version) {
            return invalid(format!("unknown schema_version {}", self.schema_version));
        }
        if self.event_id <= 0 {
            return invalid(format!("event_id {} is not positive", self.event_id));
        }
        let code_ok = (1..=64).contains(&self.code.len())
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !code_ok {
            return invalid("code is not 1 to 64 of [A-Za-z0-9_-]");
        }
        if self.ts < MIN_TS_MS || self.ts > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return invalid(format!(
                "ts {} is before 2000 or more than a day ahead",
                self.ts
            ));
        }
        let too_long = |v: &Option<String>, max: usize| v.as_ref().is_some_and(|v| v.len() > max);
        if too_long(&self.referrer, MAX_REFERRER_BYTES)
            || too_long(&self.user_agent, MAX_USER_AGENT_BYTES)
            || too_long(&self.referrer_host, MAX_LABEL_BYTES)
            || too_long(&self.browser, MAX_LABEL_BYTES)
            || too_long(&self.os, MAX_LABEL_BYTES)
        {
            return invalid("a text field is longer than the service writes");
        }
        if let Some(d) = &self.device {
            if !DEVICES.contains(&d.as_str()) {
                return invalid("device is not a known class");
            }
        }
        if let Some(c) = &self.country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return invalid("country is not two upper-case letters");
            }
        }
        let visitor_ok = (1..=64).contains(&self.visitor_id.len())
            && self.visitor_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !visitor_ok {
            return invalid("visitor_id is not 1 to 64 hex digits");
        }
        Ok(())
    }

    /// Parses and validates an event read from outside the process, in
    /// either form: a spool row ([`ROW_V1`] and the binary layout) or a JSON
    /// object (Kafka messages, rescue files, and spools written before rows
    /// were binary).
    pub fn parse_bytes(bytes: &[u8], now_ms: i64) -> Result<Self, InvalidEvent> {
        let e = Self::from_bytes(bytes)?;
        e.validate(now_ms)?;
        Ok(e)
    }

    /// The event of a spool row or a JSON object, not validated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        match bytes.first() {
            Some(&ROW_V1) => {
                let (e, rest) = postcard::take_from_bytes::<Self>(&bytes[1..])
                    .map_err(|e| InvalidEvent(format!("not a click event row: {e}")))?;
                if !rest.is_empty() {
                    return invalid(format!("{} bytes after the click event row", rest.len()));
                }
                Ok(e)
            }
            Some(b) if b.is_ascii_whitespace() || *b == b'{' => Self::json_event(bytes),
            Some(b) => invalid(format!(
                "unknown click event row format {b} (this build reads {ROW_V1} and JSON)"
            )),
            None => invalid("an empty click event"),
        }
    }

    /// Appends this event's spool row to `out`: the byte [`ROW_V1`], then
    /// the fields in declaration order (postcard: varint integers,
    /// length-prefixed UTF-8, a presence byte per optional field).
    pub fn encode_row(&self, out: &mut Vec<u8>) {
        self.as_ref().encode_row(out);
    }

    /// This event with its text borrowed.
    pub fn as_ref(&self) -> ClickEventRef<'_> {
        ClickEventRef {
            schema_version: self.schema_version,
            event_id: self.event_id,
            code: &self.code,
            ts: self.ts,
            referrer: self.referrer.as_deref(),
            referrer_host: self.referrer_host.as_deref(),
            user_agent: self.user_agent.as_deref(),
            browser: self.browser.as_deref(),
            os: self.os.as_deref(),
            device: self.device.as_deref(),
            is_bot: self.is_bot,
            country: self.country.as_deref(),
            visitor_id: &self.visitor_id,
        }
    }

    /// This event's spool row (see [`ClickEvent::encode_row`]).
    pub fn to_row(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.encode_row(&mut out);
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a click event always serialises")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// A JSON event, not validated, its error said the one way. serde_json
    /// checks UTF-8 inside the strings it reads, in the same pass.
    fn json_event(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        serde_json::from_slice(bytes).map_err(|e| InvalidEvent(format!("not a click event: {e}")))
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
    fn rows_round_trip_and_are_smaller_than_json() {
        let e = sample();
        let row = e.to_row();
        assert_eq!(row[0], ROW_V1);
        assert_eq!(ClickEvent::from_bytes(&row).unwrap(), e);
        assert!(row.len() * 2 < e.to_json().len(), "{} bytes", row.len());
        let mut none = sample();
        none.referrer = None;
        none.user_agent = None;
        none.country = None;
        assert_eq!(ClickEvent::from_bytes(&none.to_row()).unwrap(), none);
    }

    #[test]
    fn a_borrowed_event_writes_the_same_row() {
        let mut e = sample();
        for _ in 0..2 {
            let mut row = Vec::new();
            e.as_ref().encode_row(&mut row);
            // The row is the owned event's own serde layout.
            let mut owned = vec![ROW_V1];
            owned.extend(postcard::to_allocvec(&e).unwrap());
            assert_eq!(row, owned);
            assert_eq!(ClickEvent::from_bytes(&row).unwrap(), e);
            // And with every optional field absent.
            e.referrer = None;
            e.referrer_host = None;
            e.user_agent = None;
            e.browser = None;
            e.os = None;
            e.device = None;
            e.country = None;
            e.is_bot = true;
        }
    }

    #[test]
    fn both_forms_are_read_and_anything_else_is_refused() {
        let now = 1_763_856_000_123;
        let e = sample();
        assert_eq!(ClickEvent::parse_bytes(&e.to_row(), now).unwrap(), e);
        assert_eq!(
            ClickEvent::parse_bytes(e.to_json().as_bytes(), now).unwrap(),
            e
        );
        let spaced = format!("  {}", e.to_json());
        assert_eq!(ClickEvent::parse_bytes(spaced.as_bytes(), now).unwrap(), e);
        let why = |b: &[u8]| ClickEvent::parse_bytes(b, now).unwrap_err().0;
        assert!(why(&[]).contains("empty"));
        let mut future = e.to_row();
        future[0] = 2;
        assert!(why(&future).contains("unknown click event row format 2"));
        let mut trailing = e.to_row();
        trailing.push(0);
        assert!(why(&trailing).contains("1 bytes after"));
        let row = e.to_row();
        for cut in 1..row.len() {
            assert!(ClickEvent::from_bytes(&row[..cut]).is_err(), "cut at {cut}");
        }
        // A row is validated like JSON.
        let mut bad = sample();
        bad.code = "a/b".into();
        assert!(why(&bad.to_row()).contains("code"));
        assert!(why(b"{\"code\": 1}").contains("not a click event"));
        // Bytes that are not UTF-8, inside a string or out of one.
        assert!(why(&[b'{', 0xff]).contains("not a click event"));
        assert!(why(b"{\"code\": \"\xff\"}").contains("not a click event"));
    }

    #[test]
    fn events_are_validated() {
        let now = 1_763_856_000_123;
        let e = sample();
        assert_eq!(ClickEvent::parse(&e.to_json(), now).unwrap(), e);
        let bad = |f: &dyn Fn(&mut ClickEvent)| {
            let mut e = sample();
            f(&mut e);
            ClickEvent::parse(&e.to_json(), now).unwrap_err()
        };
        bad(&|e| e.schema_version = 99);
        bad(&|e| e.event_id = 0);
        bad(&|e| e.code = "a/b".into());
        bad(&|e| e.code = String::new());
        bad(&|e| e.ts = i64::MAX);
        bad(&|e| e.ts = 253_402_300_799_000); // 9999-12-31
        bad(&|e| e.ts = -1);
        bad(&|e| e.referrer = Some("x".repeat(MAX_REFERRER_BYTES + 1)));
        bad(&|e| e.device = Some("toaster".into()));
        bad(&|e| e.country = Some("\u{1b}[".into()));
        bad(&|e| e.visitor_id = "not hex".into());
        assert!(ClickEvent::parse("{\"code\": 1}", now).is_err());
        assert!(ClickEvent::parse("not json", now).is_err());
        // A day ahead of the reader's clock is still a click (clock skew).
        let mut e = sample();
        e.ts = now + MAX_CLOCK_AHEAD_MS;
        assert!(e.validate(now).is_ok());
    }

    #[test]
    fn dates() {
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(date_of_ms(1_763_856_000_123), "2025-11-23");
        assert_eq!(date_of_ms(951_782_400_000), "2000-02-29");
        assert_eq!(date_of_ms(-1), "1969-12-31");
    }
}
