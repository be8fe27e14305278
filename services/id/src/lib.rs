//! Identifiers for Snowlink.
//!
//! A tour of the crate:
//!
//! * [`snowflake`]: the 64-bit id generator. 41 bits of milliseconds since a
//!   configurable epoch, 10 bits of worker id, 12 bits of sequence. It never
//!   issues the same id twice, whatever the wall clock does.
//! * [`base62`]: the `0-9A-Za-z` text encoding of 64-bit values, with a
//!   decoder that rejects anything it did not produce instead of panicking.
//! * [`codec`]: turns ids into public short codes. By default the id passes
//!   through a keyed Feistel permutation first, so codes look random, cannot be
//!   enumerated, and still decode back to their id for whoever holds the key.
//! * [`clock`]: the wall-clock abstraction, injectable so tests can step time
//!   backwards.
//!
//! Nothing here knows about HTTP or storage.

pub mod base62;
pub mod clock;
pub mod codec;
pub mod snowflake;

pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{CodeCodec, CodeError, CODE_LEN};
pub use snowflake::{
    Generator, GeneratorConfig, IdError, IdParts, DEFAULT_EPOCH_MS, MAX_WORKER_ID,
};
