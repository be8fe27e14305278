//! The click event parser, over both forms (spool rows and JSON): never
//! panics; an accepted event has a sane time and round-trips through both
//! of its forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_events::{ClickEvent, MIN_TS_MS};

const NOW: i64 = 1_795_132_800_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ClickEvent::parse_bytes(data, NOW) {
        assert!(event.ts >= MIN_TS_MS && event.ts <= NOW + 86_400_000);
        let again = ClickEvent::parse(&event.to_json(), NOW).expect("its own JSON parses");
        assert_eq!(again, event);
        let again = ClickEvent::parse_bytes(&event.to_row(), NOW).expect("its own row parses");
        assert_eq!(again, event);
        assert_eq!(event.date().len(), 10);
    }
});
