//! The click event parsers, over both forms (spool rows and Kafka
//! messages): never panic; an accepted event has a sane time and
//! round-trips through both of its forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_events::{kafka, ClickEvent, MIN_TS_MS};

const NOW: i64 = 1_795_132_800_000;

fn round_trips(event: &ClickEvent) {
    assert!(event.ts >= MIN_TS_MS && event.ts <= NOW + 86_400_000);
    let message = kafka::message(event.as_ref(), None);
    let (again, origin) = kafka::parse(&message, NOW).expect("its own message parses");
    assert_eq!(&again.into_owned(), event);
    assert_eq!(origin, None);
    let again = ClickEvent::parse_row(&event.to_row(), NOW).expect("its own row parses");
    assert_eq!(&again, event);
    assert_eq!(event.date().len(), 10);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ClickEvent::parse_row(data, NOW) {
        round_trips(&event);
    }
    if let Ok((event, origin)) = kafka::parse(data, NOW) {
        let event = event.into_owned();
        round_trips(&event);
        let message = kafka::message(event.as_ref(), origin.as_ref());
        let (again, again_origin) = kafka::parse(&message, NOW).expect("with its origin");
        assert_eq!((again.into_owned(), again_origin), (event, origin));
    }
});
