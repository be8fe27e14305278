//! Short codes: ids made public.
//!
//! A code is always exactly [`CODE_LEN`] (11) Base62 characters: the id,
//! optionally permuted, written with fixed width. Fixed width is what keeps
//! custom aliases out of the generated namespace for good: an alias may be any
//! `[A-Za-z0-9_-]{3,64}` *except* an 11-character string of Base62 digits, so
//! no alias can equal a code generated now or in the future.
//!
//! # Why permute
//!
//! Sequential ids leak how many links a service makes and let anyone walk
//! every link by counting. In keyed mode (the default), the id goes through a
//! 4-round Feistel network over its two 32-bit halves, with SipHash-1-3 keyed
//! from a secret as the round function. A Feistel network is a bijection on
//! `u64` whatever its round function, so codes stay unique; with a keyed PRF
//! as the round function the output is a pseudo-random permutation, so
//! neighbouring ids give unrelated codes. Holding the key, [`CodeCodec::decode`]
//! inverts it back to the id and so to its timestamp and worker.
//!
//! Sequential mode skips the permutation: codes are the id itself, in
//! fixed-width Base62, and sort in creation order.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;
use thiserror::Error;

use crate::base62;

/// Length of every generated code.
pub const CODE_LEN: usize = base62::MAX_LEN;

const ROUNDS: u64 = 4;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodeError {
    #[error("a code is {CODE_LEN} characters, got {0}")]
    Length(usize),
    #[error(transparent)]
    Base62(#[from] base62::DecodeError),
}

#[derive(Clone)]
enum Mode {
    Sequential,
    Keyed { k0: u64, k1: u64 },
}

/// Turns ids into codes and back.
#[derive(Clone)]
pub struct CodeCodec {
    mode: Mode,
}

impl std::fmt::Debug for CodeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        let mode = match self.mode {
            Mode::Sequential => "sequential",
            Mode::Keyed { .. } => "keyed",
        };
        f.debug_struct("CodeCodec").field("mode", &mode).finish()
    }
}

impl CodeCodec {
    /// Codes are the ids themselves; enumerable, ordered by creation.
    pub fn sequential() -> Self {
        Self {
            mode: Mode::Sequential,
        }
    }

    /// Codes are a keyed permutation of the ids. Keep the secret for as long
    /// as codes are to be decoded back to ids. Changing it does not break
    /// existing links (they are stored by code), and a collision between an
    /// old and a new code is refused by the store, never overwritten.
    pub fn keyed(secret: &[u8]) -> Self {
        let derive = |label: u8| {
            let mut h = SipHasher13::new_with_keys(0x736e_6f77_6c69_6e6b, label as u64);
            h.write(secret);
            h.finish()
        };
        Self {
            mode: Mode::Keyed {
                k0: derive(1),
                k1: derive(2),
            },
        }
    }

    pub fn is_keyed(&self) -> bool {
        matches!(self.mode, Mode::Keyed { .. })
    }

    /// The permutation applied to ids before Base62.
    pub fn permute(&self, id: u64) -> u64 {
        match self.mode {
            Mode::Sequential => id,
            Mode::Keyed { k0, k1 } => {
                let (mut l, mut r) = ((id >> 32) as u32, id as u32);
                for round in 0..ROUNDS {
                    let f = round_fn(k0, k1, round, r);
                    (l, r) = (r, l ^ f);
                }
                ((l as u64) << 32) | r as u64
            }
        }
    }

    /// Inverse of [`CodeCodec::permute`].
    pub fn unpermute(&self, value: u64) -> u64 {
        match self.mode {
            Mode::Sequential => value,
            Mode::Keyed { k0, k1 } => {
                let (mut l, mut r) = ((value >> 32) as u32, value as u32);
                for round in (0..ROUNDS).rev() {
                    let f = round_fn(k0, k1, round, l);
                    (l, r) = (r ^ f, l);
                }
                ((l as u64) << 32) | r as u64
            }
        }
    }

    pub fn encode(&self, id: u64) -> String {
        base62::encode_fixed(self.permute(id))
    }

    /// Names the permutation without revealing its key: the codes of two
    /// fixed ids. Codecs that differ give different fingerprints (but for a
    /// chance of 1 in 2^128). It says no more than any two issued codes do.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}{}",
            self.encode(FINGERPRINT_IDS[0]),
            self.encode(FINGERPRINT_IDS[1])
        )
    }

    pub fn decode(&self, code: &str) -> Result<u64, CodeError> {
        if code.len() != CODE_LEN {
            return Err(CodeError::Length(code.len()));
        }
        Ok(self.unpermute(base62::decode(code)?))
    }
}

/// The ids whose codes make a codec's fingerprint.
const FINGERPRINT_IDS: [u64; 2] = [0x0123_4567_89ab_cdef, 0x7edc_ba98_7654_3210];

#[inline]
fn round_fn(k0: u64, k1: u64, round: u64, half: u32) -> u32 {
    let mut h = SipHasher13::new_with_keys(k0, k1);
    h.write_u64((round << 32) | half as u64);
    h.finish() as u32
}

/// True when `s` has the shape of a generated code: exactly [`CODE_LEN`]
/// ASCII letters and digits. Aliases must not have this shape.
pub fn is_generated_shape(s: &str) -> bool {
    s.len() == CODE_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn neighbouring_ids_give_unrelated_codes() {
        let codec = CodeCodec::keyed(b"test secret");
        let a = codec.encode(1 << 22);
        let b = codec.encode((1 << 22) + 1);
        let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!(common < 4, "{a} and {b} share a prefix of {common}");
        assert_ne!(
            CodeCodec::keyed(b"other").encode(1 << 22),
            a,
            "the key must matter"
        );
    }

    #[test]
    fn sequential_codes_sort_by_id() {
        let codec = CodeCodec::sequential();
        assert_eq!(codec.encode(61), "0000000000z");
        assert!(codec.encode(1000) < codec.encode(1001));
    }

    #[test]
    fn fingerprints_tell_codecs_apart() {
        let a = CodeCodec::keyed(b"secret a");
        assert_eq!(a.fingerprint(), CodeCodec::keyed(b"secret a").fingerprint());
        assert_ne!(a.fingerprint(), CodeCodec::keyed(b"secret b").fingerprint());
        assert_ne!(a.fingerprint(), CodeCodec::sequential().fingerprint());
        assert_eq!(a.fingerprint().len(), 2 * CODE_LEN);
    }

    #[test]
    fn decode_rejects_wrong_length_and_alphabet() {
        let codec = CodeCodec::keyed(b"k");
        assert_eq!(codec.decode("abc"), Err(CodeError::Length(3)));
        assert!(matches!(
            codec.decode("abc_defghij"),
            Err(CodeError::Base62(_))
        ));
        assert!(matches!(
            codec.decode("zzzzzzzzzzz"),
            Err(CodeError::Base62(base62::DecodeError::Overflow))
        ));
    }

    proptest! {
        #[test]
        fn bijection_round_trips(id in any::<u64>(), secret in prop::collection::vec(any::<u8>(), 0..40)) {
            let codec = CodeCodec::keyed(&secret);
            prop_assert_eq!(codec.unpermute(codec.permute(id)), id);
            let code = codec.encode(id);
            prop_assert_eq!(code.len(), CODE_LEN);
            prop_assert!(is_generated_shape(&code));
            prop_assert_eq!(codec.decode(&code), Ok(id));
        }

        #[test]
        fn distinct_ids_give_distinct_codes(a in any::<u64>(), b in any::<u64>()) {
            prop_assume!(a != b);
            let codec = CodeCodec::keyed(b"distinct");
            prop_assert_ne!(codec.encode(a), codec.encode(b));
        }

        #[test]
        fn sequential_round_trips(id in any::<u64>()) {
            let codec = CodeCodec::sequential();
            prop_assert_eq!(codec.decode(&codec.encode(id)), Ok(id));
        }
    }
}
