//! Base62 decoding and the code permutation: decoding never panics, and
//! whatever decodes re-encodes to an equivalent code; the permutation is a
//! bijection on ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowlink_id::{base62, CodeCodec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = base62::decode(text) {
        assert_eq!(base62::decode(&base62::encode(value)), Ok(value));
    }
    let keyed = CodeCodec::keyed(data);
    for codec in [CodeCodec::sequential(), keyed] {
        if let Ok(id) = codec.decode(text) {
            // A code that decodes is the code of that id.
            assert_eq!(codec.decode(&codec.encode(id)), Ok(id));
        }
    }
    if data.len() >= 8 {
        let id = u64::from_le_bytes(data[..8].try_into().unwrap());
        let codec = CodeCodec::keyed(&data[8..]);
        assert_eq!(codec.unpermute(codec.permute(id)), id);
        assert_eq!(codec.decode(&codec.encode(id)), Ok(id));
    }
});
