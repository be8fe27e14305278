//! Points in time as people type them, on the command line or in a query
//! parameter: durations back from now, dates and RFC 3339 times.

use anyhow::{anyhow, Result};
use chrono::{DateTime, NaiveDate, Utc};

/// Parses a time bound: a duration back from `now` (`7d`, `24h`, `90m`,
/// `2w`), a date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let s = raw.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        let d =
            chrono::Duration::from_std(d).map_err(|_| anyhow!("duration {s:?} is too large"))?;
        return now
            .checked_sub_signed(d)
            .ok_or_else(|| anyhow!("duration {s:?} is too large"));
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    Err(anyhow!(
        "invalid time {s:?}: expected a duration back from now (7d, 24h, 30m), \
         a date (2026-11-01) or an RFC 3339 time (2026-11-01T12:00:00Z)"
    ))
}

/// `YYYY-MM-DD` of a time, for partition pruning.
pub fn date_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_time("7d", now).unwrap().to_rfc3339(),
            "2026-11-15T12:00:00+00:00"
        );
        assert_eq!(
            parse_time("24h", now).unwrap().to_rfc3339(),
            "2026-11-21T12:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-01", now).unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-01T10:00:00+02:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
        for bad in ["7x", "", "yesterday", "2026-13-01"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
