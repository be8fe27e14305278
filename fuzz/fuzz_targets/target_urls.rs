//! Target-URL validation and normalisation: never panics; what it accepts
//! is an http(s) URL without userinfo, safe in a Location header, that
//! validates again to itself (the stored form is a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_rules::UrlPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let policy = UrlPolicy::new(2048, &url::Url::parse("https://sho.rt").unwrap());
    if let Ok(stored) = policy.check(raw) {
        assert!(stored.starts_with("http://") || stored.starts_with("https://"), "{stored}");
        assert!(stored.bytes().all(|b| b.is_ascii_graphic()), "{stored:?}");
        assert!(stored.len() <= 2048);
        let parsed = url::Url::parse(&stored).expect("the stored form parses");
        assert!(parsed.username().is_empty() && parsed.password().is_none());
        assert_eq!(policy.check(&stored).as_deref(), Ok(stored.as_str()));
    }
});
