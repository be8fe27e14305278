//! The click event parser: never panics; an accepted event has a sane time
//! and round-trips through its JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_events::{ClickEvent, MIN_TS_MS};

const NOW: i64 = 1_795_132_800_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = ClickEvent::parse(text, NOW) {
        assert!(event.ts >= MIN_TS_MS && event.ts <= NOW + 86_400_000);
        let again = ClickEvent::parse(&event.to_json(), NOW).expect("its own JSON parses");
        assert_eq!(again, event);
        assert_eq!(event.date().len(), 10);
    }
});
