//! The time bounds of the analytics CLI (`7d`, `2026-11-01`, RFC 3339):
//! never panic; a parsed time's partition date names its own day.
#![no_main]

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = Utc.timestamp_millis_opt(1_795_132_800_000).unwrap();
    if let Ok(t) = snowlink_time::parse_time(text, now) {
        if (0..=9999).contains(&t.year()) {
            let day = NaiveDate::parse_from_str(&snowlink_time::date_of(t), "%Y-%m-%d")
                .expect("a date of four-digit years parses");
            assert_eq!(day, t.date_naive());
        }
    }
});
