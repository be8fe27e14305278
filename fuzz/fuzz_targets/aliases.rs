//! Alias and tag checks: never panic; an accepted alias is code syntax and
//! never has the shape of a generated code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_rules::{check_alias, check_tags, is_code_syntax};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_alias(text).is_ok() {
        assert!(is_code_syntax(text), "{text:?}");
        assert!(!snowlink_id::codec::is_generated_shape(text));
    }
    let tags: Vec<String> = text.split(',').map(str::to_owned).collect();
    if let Ok(clean) = check_tags(&tags) {
        assert!(clean.len() <= 10);
        assert_eq!(check_tags(&clean), Ok(clean.clone()));
    }
});
