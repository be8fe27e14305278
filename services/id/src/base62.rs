//! Base62 with the alphabet `0-9A-Za-z`.
//!
//! The alphabet is in ASCII order, so fixed-width encodings sort the same way
//! as the numbers they hold.

use thiserror::Error;

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters needed for any `u64`: 62^10 < 2^64 <= 62^11.
pub const MAX_LEN: usize = 11;

/// Maps an ASCII byte to its digit value, or 255 when it is not in the alphabet.
const DECODE: [u8; 256] = {
    let mut table = [255u8; 256];
    let mut i = 0;
    while i < 62 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("character {ch:?} at position {pos} is not in the Base62 alphabet")]
    InvalidChar { ch: char, pos: usize },
    #[error("value does not fit in 64 bits")]
    Overflow,
}

/// Encodes `value` with no padding (zero is `"0"`).
pub fn encode(value: u64) -> String {
    let mut buf = [0u8; MAX_LEN];
    let start = encode_into(value, &mut buf);
    ascii(&buf[start..])
}

/// Encodes `value` left-padded with `'0'` to exactly [`MAX_LEN`] characters.
pub fn encode_fixed(value: u64) -> String {
    let mut buf = [b'0'; MAX_LEN];
    encode_into(value, &mut buf);
    ascii(&buf)
}

/// The buffer holds only alphabet bytes, which are ASCII.
fn ascii(bytes: &[u8]) -> String {
    std::str::from_utf8(bytes)
        .expect("the alphabet is ASCII")
        .to_owned()
}

/// Writes the digits right-aligned into `buf`, returning the first index used.
fn encode_into(mut value: u64, buf: &mut [u8; MAX_LEN]) -> usize {
    let mut i = MAX_LEN;
    loop {
        i -= 1;
        buf[i] = ALPHABET[(value % 62) as usize];
        value /= 62;
        if value == 0 {
            return i;
        }
    }
}

/// Decodes a Base62 string. Leading zeros are accepted; characters outside the
/// alphabet and values above `u64::MAX` are errors.
pub fn decode(input: &str) -> Result<u64, DecodeError> {
    if input.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut value: u64 = 0;
    for (pos, byte) in input.bytes().enumerate() {
        let digit = DECODE[byte as usize];
        if digit == 255 {
            let ch = input[pos..].chars().next().unwrap_or('\u{FFFD}');
            return Err(DecodeError::InvalidChar { ch, pos });
        }
        value = value
            .checked_mul(62)
            .and_then(|v| v.checked_add(digit as u64))
            .ok_or(DecodeError::Overflow)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(0), "0");
        assert_eq!(encode(61), "z");
        assert_eq!(encode(62), "10");
        assert_eq!(encode(u64::MAX), "LygHa16AHYF");
        assert_eq!(encode_fixed(62), "00000000010");
        assert_eq!(decode("LygHa16AHYF"), Ok(u64::MAX));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("LygHa16AHYG"), Err(DecodeError::Overflow));
        assert_eq!(decode("zzzzzzzzzzzz"), Err(DecodeError::Overflow));
        assert_eq!(
            decode("ab-c"),
            Err(DecodeError::InvalidChar { ch: '-', pos: 2 })
        );
        assert_eq!(
            decode("abé"),
            Err(DecodeError::InvalidChar { ch: 'é', pos: 2 })
        );
    }

    proptest! {
        #[test]
        fn round_trips(v in any::<u64>()) {
            prop_assert_eq!(decode(&encode(v)), Ok(v));
            prop_assert_eq!(decode(&encode_fixed(v)), Ok(v));
            prop_assert_eq!(encode_fixed(v).len(), MAX_LEN);
        }

        #[test]
        fn fixed_width_preserves_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), encode_fixed(a).cmp(&encode_fixed(b)));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,20}") {
            let _ = decode(&s);
        }
    }
}
