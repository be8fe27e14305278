//! The click event: one type shared by the service that emits it, the spool
//! and the rescue file (one binary row each) and Kafka (one JSON object
//! each, [`kafka`]) that carry it, and the batch job that writes it to
//! Parquet.
//!
//! The serde form and the Arrow schema sit side by side in this crate, so a
//! field added to one without the other fails to compile or fails the tests
//! below. `schema_version` lets readers of the spool and of Kafka tell apart
//! events written by older producers.
//!
//! Privacy: an event never holds an IP address. `visitor_id` is a keyed hash
//! of (IP, user agent) under a key that changes every UTC day.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arrow")]
pub mod arrow;
pub mod stats;

/// How click events travel through Kafka: one JSON object per message,
/// keyed by `code` (so one link's clicks stay in order on one partition).
/// The object is the [`ClickEvent`]'s fields, plus `origin` when the
/// service's forwarder sent it: the spool it was forwarded from and its
/// sequence number there. A consumer drops a message whose sequence it has
/// already seen from that spool on that partition: that is a resend after a
/// failure, not a new click. The origin travels in the payload, not in
/// headers, so that a consumer reads each message in one parse.
pub mod kafka {
    use serde::{Deserialize, Serialize};

    use crate::{ClickEventIn, ClickEventRef, EventView, InvalidEvent, Text};

    pub const DEFAULT_TOPIC: &str = "clicks";

    /// Who forwarded an event, and its place there.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Origin {
        /// The forwarding spool's random identity.
        pub spool: String,
        /// The event's sequence number in that spool.
        pub seq: i64,
    }

    /// The message of an event: its JSON, with its origin when it has one.
    pub fn message(event: ClickEventRef<'_>, origin: Option<&Origin>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Message<'a> {
            #[serde(flatten)]
            event: ClickEventRef<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            origin: Option<&'a Origin>,
        }
        serde_json::to_vec(&Message { event, origin }).expect("a click event always serialises")
    }

    /// A message as the consumer reads it: the event and its origin. The
    /// same fields as [`ClickEvent`], built into a [`ClickEventIn`] by a
    /// struct literal, so a field added there and not here fails to compile.
    /// Not `#[serde(flatten)]` of a `ClickEventIn`: flattening buffers every
    /// field before reading it, on the consumer's hottest path.
    #[derive(Deserialize)]
    struct Wire<'a> {
        schema_version: u16,
        event_id: i64,
        #[serde(borrow)]
        code: Text<'a>,
        ts: i64,
        #[serde(borrow)]
        referrer: Option<Text<'a>>,
        #[serde(borrow)]
        referrer_host: Option<Text<'a>>,
        #[serde(borrow)]
        user_agent: Option<Text<'a>>,
        #[serde(borrow)]
        browser: Option<Text<'a>>,
        #[serde(borrow)]
        os: Option<Text<'a>>,
        #[serde(borrow)]
        device: Option<Text<'a>>,
        is_bot: bool,
        #[serde(borrow)]
        country: Option<Text<'a>>,
        #[serde(borrow)]
        visitor_id: Text<'a>,
        origin: Option<Origin>,
    }

    /// Parses and validates a message read from the topic (see
    /// [`ClickEventRef::validate`]); its text is borrowed from `bytes`
    /// where it can be.
    pub fn parse(
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<(ClickEventIn<'_>, Option<Origin>), InvalidEvent> {
        let w: Wire = serde_json::from_slice(bytes)
            .map_err(|e| InvalidEvent(format!("not a click event: {e}")))?;
        let event = ClickEventIn {
            schema_version: w.schema_version,
            event_id: w.event_id,
            code: w.code,
            ts: w.ts,
            referrer: w.referrer,
            referrer_host: w.referrer_host,
            user_agent: w.user_agent,
            browser: w.browser,
            os: w.os,
            device: w.device,
            is_bot: w.is_bot,
            country: w.country,
            visitor_id: w.visitor_id,
        };
        event.view().validate(now_ms)?;
        Ok((event, w.origin))
    }
}

/// Version of the event layout written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// First byte of a binary spool row: the layout of the bytes after it. The
/// layout has no field names, so a field added to [`ClickEvent`] needs a new
/// row version (and the old one kept readable).
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

/// Text of an event read from bytes: borrowed from them, or owned where
/// JSON escapes had to be undone. (A newtype, so that serde borrows it
/// inside an `Option` too.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A click event as read from a spool row or a Kafka message: the same
/// fields as [`ClickEvent`], its text borrowed from the bytes it was read
/// from where it can be, so that reading a batch allocates little.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClickEventIn<'a> {
    pub schema_version: u16,
    pub event_id: i64,
    #[serde(borrow)]
    pub code: Text<'a>,
    pub ts: i64,
    #[serde(borrow)]
    pub referrer: Option<Text<'a>>,
    #[serde(borrow)]
    pub referrer_host: Option<Text<'a>>,
    #[serde(borrow)]
    pub user_agent: Option<Text<'a>>,
    #[serde(borrow)]
    pub browser: Option<Text<'a>>,
    #[serde(borrow)]
    pub os: Option<Text<'a>>,
    #[serde(borrow)]
    pub device: Option<Text<'a>>,
    pub is_bot: bool,
    #[serde(borrow)]
    pub country: Option<Text<'a>>,
    #[serde(borrow)]
    pub visitor_id: Text<'a>,
}

impl<'a> ClickEventIn<'a> {
    /// Parses and validates a spool row read from outside the process.
    pub fn parse_row(bytes: &'a [u8], now_ms: i64) -> Result<Self, InvalidEvent> {
        let e = Self::from_row(bytes)?;
        e.view().validate(now_ms)?;
        Ok(e)
    }

    /// The event of a spool row, not validated: the byte [`ROW_V1`], then
    /// [`ClickEvent`]'s fields in declaration order (postcard).
    pub fn from_row(bytes: &'a [u8]) -> Result<Self, InvalidEvent> {
        match bytes.first() {
            Some(&ROW_V1) => {
                let (e, rest) = postcard::take_from_bytes::<Self>(&bytes[1..])
                    .map_err(|e| InvalidEvent(format!("not a click event row: {e}")))?;
                if !rest.is_empty() {
                    return invalid(format!("{} bytes after the click event row", rest.len()));
                }
                Ok(e)
            }
            Some(b) => invalid(format!(
                "unknown click event row format {b} (this build reads {ROW_V1})"
            )),
            None => invalid("an empty click event"),
        }
    }

    /// This event, owning its text.
    pub fn into_owned(self) -> ClickEvent {
        let text = |t: Option<Text<'_>>| t.map(|t| t.0.into_owned());
        ClickEvent {
            schema_version: self.schema_version,
            event_id: self.event_id,
            code: self.code.0.into_owned(),
            ts: self.ts,
            referrer: text(self.referrer),
            referrer_host: text(self.referrer_host),
            user_agent: text(self.user_agent),
            browser: text(self.browser),
            os: text(self.os),
            device: text(self.device),
            is_bot: self.is_bot,
            country: text(self.country),
            visitor_id: self.visitor_id.0.into_owned(),
        }
    }
}

/// Any form of a click event, seen as a [`ClickEventRef`]: what the Arrow
/// conversion and the lake's sort take, whichever form the events are in.
pub trait EventView {
    fn view(&self) -> ClickEventRef<'_>;
}

impl<T: EventView + ?Sized> EventView for &T {
    fn view(&self) -> ClickEventRef<'_> {
        (**self).view()
    }
}

impl EventView for ClickEvent {
    fn view(&self) -> ClickEventRef<'_> {
        self.as_ref()
    }
}

impl EventView for ClickEventRef<'_> {
    fn view(&self) -> ClickEventRef<'_> {
        *self
    }
}

impl EventView for ClickEventIn<'_> {
    fn view(&self) -> ClickEventRef<'_> {
        ClickEventRef {
            schema_version: self.schema_version,
            event_id: self.event_id,
            code: self.code.as_str(),
            ts: self.ts,
            referrer: self.referrer.as_ref().map(Text::as_str),
            referrer_host: self.referrer_host.as_ref().map(Text::as_str),
            user_agent: self.user_agent.as_ref().map(Text::as_str),
            browser: self.browser.as_ref().map(Text::as_str),
            os: self.os.as_ref().map(Text::as_str),
            device: self.device.as_ref().map(Text::as_str),
            is_bot: self.is_bot,
            country: self.country.as_ref().map(Text::as_str),
            visitor_id: self.visitor_id.as_str(),
        }
    }
}

/// Earliest click time accepted: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// Milliseconds in a day.
pub const MS_PER_DAY: i64 = 86_400_000;
/// How far ahead of the reader's clock a click time may be.
pub const MAX_CLOCK_AHEAD_MS: i64 = MS_PER_DAY;
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

impl ClickEventRef<'_> {
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
        let too_long = |v: Option<&str>, max: usize| v.is_some_and(|v| v.len() > max);
        if too_long(self.referrer, MAX_REFERRER_BYTES)
            || too_long(self.user_agent, MAX_USER_AGENT_BYTES)
            || too_long(self.referrer_host, MAX_LABEL_BYTES)
            || too_long(self.browser, MAX_LABEL_BYTES)
            || too_long(self.os, MAX_LABEL_BYTES)
        {
            return invalid("a text field is longer than the service writes");
        }
        if let Some(d) = self.device {
            if !DEVICES.contains(&d) {
                return invalid("device is not a known class");
            }
        }
        if let Some(c) = self.country {
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
}

impl ClickEvent {
    /// See [`ClickEventRef::validate`].
    pub fn validate(&self, now_ms: i64) -> Result<(), InvalidEvent> {
        self.as_ref().validate(now_ms)
    }

    /// Parses and validates a spool row read from outside the process.
    pub fn parse_row(bytes: &[u8], now_ms: i64) -> Result<Self, InvalidEvent> {
        ClickEventIn::parse_row(bytes, now_ms).map(ClickEventIn::into_owned)
    }

    /// The event of a spool row, not validated.
    pub fn from_row(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        ClickEventIn::from_row(bytes).map(ClickEventIn::into_owned)
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

    /// The UTC date of the click, `YYYY-MM-DD`: the lake partition it goes to.
    pub fn date(&self) -> String {
        date_of_ms(self.ts)
    }
}

/// Now, in milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DD` of a millisecond timestamp, UTC (proleptic Gregorian).
pub fn date_of_ms(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
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

    fn json(e: &ClickEvent) -> Vec<u8> {
        kafka::message(e.as_ref(), None)
    }

    /// A message read back as an owned event.
    fn read(m: &[u8], now: i64) -> Result<(ClickEvent, Option<kafka::Origin>), InvalidEvent> {
        kafka::parse(m, now).map(|(e, o)| (e.into_owned(), o))
    }

    #[test]
    fn messages_round_trip_with_and_without_an_origin() {
        let now = 1_763_856_000_123;
        let e = sample();
        assert_eq!(read(&json(&e), now).unwrap(), (e.clone(), None));
        let origin = kafka::Origin {
            spool: "0123456789abcdef".into(),
            seq: 77,
        };
        let m = kafka::message(e.as_ref(), Some(&origin));
        // The event's own fields, readable by anyone, plus the origin.
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["code"], "abc");
        assert_eq!(v["origin"]["spool"], "0123456789abcdef");
        assert_eq!(v["origin"]["seq"], 77);
        assert_eq!(read(&m, now).unwrap(), (e, Some(origin)));
    }

    #[test]
    fn text_is_borrowed_unless_escapes_were_undone() {
        let now = 1_763_856_000_123;
        let mut e = sample();
        e.user_agent = Some("Mozilla/5.0 \"quoted\" \\ tab\t".into());
        let m = json(&e);
        let (read_in, _) = kafka::parse(&m, now).unwrap();
        assert!(matches!(read_in.code.0, Cow::Borrowed(_)));
        assert!(matches!(read_in.user_agent, Some(Text(Cow::Owned(_)))));
        assert_eq!(read_in.view(), e.as_ref());
        let row = e.to_row();
        let from_row = ClickEventIn::from_row(&row).unwrap();
        assert!(matches!(from_row.user_agent, Some(Text(Cow::Borrowed(_)))));
        assert_eq!(from_row.into_owned(), e);
    }

    #[test]
    fn rows_round_trip_and_are_smaller_than_json() {
        let e = sample();
        let row = e.to_row();
        assert_eq!(row[0], ROW_V1);
        assert_eq!(ClickEvent::from_row(&row).unwrap(), e);
        assert!(row.len() * 2 < json(&e).len(), "{} bytes", row.len());
        let mut none = sample();
        none.referrer = None;
        none.user_agent = None;
        none.country = None;
        assert_eq!(ClickEvent::from_row(&none.to_row()).unwrap(), none);
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
            assert_eq!(ClickEvent::from_row(&row).unwrap(), e);
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
    fn rows_are_read_and_anything_else_is_refused() {
        let now = 1_763_856_000_123;
        let e = sample();
        assert_eq!(ClickEvent::parse_row(&e.to_row(), now).unwrap(), e);
        let why = |b: &[u8]| ClickEvent::parse_row(b, now).unwrap_err().0;
        assert!(why(&[]).contains("empty"));
        // JSON is Kafka's form only.
        assert!(why(&json(&e)).contains("unknown click event row format 123"));
        let mut future = e.to_row();
        future[0] = 2;
        assert!(why(&future).contains("unknown click event row format 2"));
        let mut trailing = e.to_row();
        trailing.push(0);
        assert!(why(&trailing).contains("1 bytes after"));
        let row = e.to_row();
        for cut in 1..row.len() {
            assert!(ClickEvent::from_row(&row[..cut]).is_err(), "cut at {cut}");
        }
        // A row is validated like a message.
        let mut bad = sample();
        bad.code = "a/b".into();
        assert!(why(&bad.to_row()).contains("code"));
        let kafka_why = |b: &[u8]| read(b, now).unwrap_err().0;
        assert!(kafka_why(&json(&bad)).contains("code"));
        assert!(kafka_why(b"{\"code\": 1}").contains("not a click event"));
        assert!(kafka_why(b"not json").contains("not a click event"));
        assert!(kafka_why(&e.to_row()).contains("not a click event"));
        // Bytes that are not UTF-8, inside a string or out of one.
        assert!(kafka_why(&[b'{', 0xff]).contains("not a click event"));
        assert!(kafka_why(b"{\"code\": \"\xff\"}").contains("not a click event"));
    }

    #[test]
    fn events_are_validated() {
        let now = 1_763_856_000_123;
        let e = sample();
        assert!(e.validate(now).is_ok());
        let bad = |f: &dyn Fn(&mut ClickEvent)| {
            let mut e = sample();
            f(&mut e);
            let why = e.validate(now).unwrap_err();
            // Both forms refuse it the same way.
            assert_eq!(ClickEvent::parse_row(&e.to_row(), now).unwrap_err(), why);
            assert_eq!(read(&json(&e), now).unwrap_err(), why);
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
