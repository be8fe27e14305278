//! The Snowflake id generator.
//!
//! Layout of an id, most significant bit first:
//!
//! ```text
//! 0 | 41 bits: ms since epoch | 10 bits: worker | 12 bits: sequence
//! ```
//!
//! The sign bit is always 0, so ids are positive as `i64` too (CQL `bigint`,
//! Parquet `INT64`).
//!
//! # Uniqueness
//!
//! The generator keeps the last issued `(timestamp, sequence)` pair in a single
//! `AtomicU64` and advances it with compare-and-swap, so it is lock-free and
//! every caller on every core sees one total order. Invariants:
//!
//! * ids from one generator strictly increase;
//! * a timestamp is never reused once a later one has been issued: if the wall
//!   clock steps back, the generator waits for it to catch up (bounded by
//!   [`GeneratorConfig::max_clock_wait`]) and then fails with
//!   [`IdError::ClockMovedBackwards`] instead of reusing a millisecond;
//! * when the 4,096 sequence numbers of a millisecond are spent, callers spin
//!   until the next millisecond. That spin is the only wait shorter than the
//!   clock bound, and it never exceeds one millisecond on a healthy clock.
//!
//! # Restarts
//!
//! The generator itself keeps no state across restarts. A process that may
//! restart (or whose clock may step back past a restart) fences it: it
//! persists a reservation `R` ahead of the clock and calls
//! [`Generator::set_ceiling`] with it (no id at or after `R` until a later
//! reservation is persisted); on start, it calls [`Generator::set_floor`]
//! with the last persisted reservation, and no id at or before it is ever
//! issued again. A restart with the clock behind the floor waits (or fails
//! with [`IdError::ClockMovedBackwards`]) exactly as a clock step does.
//!
//! The state is loaded *before* the clock is read, and reloaded on every
//! failed compare-and-swap, so "clock reading lower than the last issued
//! timestamp" can only mean the clock really went backwards, never a race
//! between two threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};

/// Bits of milliseconds since the epoch: about 69.7 years of ids.
pub const TIMESTAMP_BITS: u32 = 41;
/// Bits of worker id: 1,024 concurrent generators.
pub const WORKER_BITS: u32 = 10;
/// Bits of per-millisecond sequence: 4,096 ids per millisecond per worker.
pub const SEQUENCE_BITS: u32 = 12;

pub const MAX_WORKER_ID: u16 = (1 << WORKER_BITS) - 1;
pub const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
pub const MAX_TIMESTAMP: u64 = (1 << TIMESTAMP_BITS) - 1;

/// 2025-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const DEFAULT_EPOCH_MS: u64 = 1_735_689_600_000;

/// Default bound on how long the generator waits for a clock that stepped
/// back. NTP slews normally; a step back is rare and usually small. Waiting
/// longer would only hold requests hostage to a broken clock.
pub const DEFAULT_MAX_CLOCK_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("worker id {0} is out of range (0..={MAX_WORKER_ID})")]
    InvalidWorker(u64),
    #[error(
        "the clock moved backwards by {behind_ms} ms and did not recover within {waited_ms} ms; \
         refusing to reuse a timestamp"
    )]
    ClockMovedBackwards { behind_ms: u64, waited_ms: u64 },
    #[error("the clock reads {now_ms} ms, before the id epoch {epoch_ms} ms")]
    ClockBeforeEpoch { now_ms: u64, epoch_ms: u64 },
    #[error("the clock is past the last millisecond the 41-bit timestamp can hold")]
    TimestampOverflow,
    #[error(
        "no id time is reserved yet (the reservation could not be persisted within {waited_ms} ms)"
    )]
    Unreserved { waited_ms: u64 },
}

/// Why a single non-blocking attempt did not produce an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryNextError {
    /// All 4,096 ids of the current millisecond are issued; retry in the next.
    SequenceExhausted,
    /// The clock reads `behind_ms` milliseconds before the last issued id
    /// (or at or before the floor).
    ClockBehind { behind_ms: u64 },
    /// The clock reached the ceiling: the next reservation is not yet
    /// persisted.
    Unreserved,
    /// A condition that waiting cannot fix.
    Fatal(IdError),
}

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Custom epoch in milliseconds since the Unix epoch.
    pub epoch_ms: u64,
    /// This generator's worker id; two live generators must never share one.
    pub worker_id: u16,
    /// How long to wait for a clock that stepped back before failing.
    pub max_clock_wait: Duration,
}

impl GeneratorConfig {
    pub fn new(worker_id: u64) -> Result<Self, IdError> {
        if worker_id > MAX_WORKER_ID as u64 {
            return Err(IdError::InvalidWorker(worker_id));
        }
        Ok(Self {
            epoch_ms: DEFAULT_EPOCH_MS,
            worker_id: worker_id as u16,
            max_clock_wait: DEFAULT_MAX_CLOCK_WAIT,
        })
    }

    pub fn with_epoch_ms(mut self, epoch_ms: u64) -> Self {
        self.epoch_ms = epoch_ms;
        self
    }

    pub fn with_max_clock_wait(mut self, wait: Duration) -> Self {
        self.max_clock_wait = wait;
        self
    }
}

/// The decoded fields of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdParts {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub worker_id: u16,
    pub sequence: u16,
}

impl IdParts {
    /// Splits `id` into its fields, given the epoch it was generated with.
    pub fn from_id(id: u64, epoch_ms: u64) -> Self {
        Self {
            unix_ms: (id >> (WORKER_BITS + SEQUENCE_BITS)) + epoch_ms,
            worker_id: ((id >> SEQUENCE_BITS) & MAX_WORKER_ID as u64) as u16,
            sequence: (id & MAX_SEQUENCE) as u16,
        }
    }
}

/// A lock-free Snowflake generator; share it behind an `Arc`.
pub struct Generator<C: Clock = SystemClock> {
    clock: C,
    epoch_ms: u64,
    /// The worker id already shifted into place.
    worker_bits: u64,
    max_clock_wait: Duration,
    /// `(timestamp << SEQUENCE_BITS) | sequence` of the last issued id.
    state: AtomicU64,
    /// No id with a timestamp at or below this (ms since the custom epoch).
    floor: AtomicU64,
    /// No id with a timestamp at or above this (ms since the custom epoch).
    ceiling: AtomicU64,
}

impl Generator<SystemClock> {
    pub fn new(config: GeneratorConfig) -> Self {
        Self::with_clock(config, SystemClock)
    }
}

impl<C: Clock> Generator<C> {
    pub fn with_clock(config: GeneratorConfig, clock: C) -> Self {
        Self {
            clock,
            epoch_ms: config.epoch_ms,
            worker_bits: (config.worker_id as u64) << SEQUENCE_BITS,
            max_clock_wait: config.max_clock_wait,
            state: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            ceiling: AtomicU64::new(u64::MAX),
        }
    }

    /// Never issue an id whose time is at or before `unix_ms` (the last
    /// reservation persisted before a restart). Only ever raises the floor.
    pub fn set_floor(&self, unix_ms: u64) {
        let ts = unix_ms.saturating_sub(self.epoch_ms);
        self.floor.fetch_max(ts, Ordering::AcqRel);
    }

    /// Issue no id whose time is at or after `unix_ms` (the end of the
    /// reservation persisted so far). Only ever raises the ceiling, once set.
    pub fn set_ceiling(&self, unix_ms: u64) {
        let ts = unix_ms.saturating_sub(self.epoch_ms);
        let _ = self
            .ceiling
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c == u64::MAX || ts > c).then_some(ts)
            });
    }

    /// The floor, in ms since the Unix epoch (the epoch itself if none).
    pub fn floor_unix_ms(&self) -> u64 {
        self.floor.load(Ordering::Acquire) + self.epoch_ms
    }

    pub fn epoch_ms(&self) -> u64 {
        self.epoch_ms
    }

    pub fn worker_id(&self) -> u16 {
        (self.worker_bits >> SEQUENCE_BITS) as u16
    }

    fn elapsed_ms(&self) -> Result<u64, IdError> {
        let now = self.clock.now_ms();
        let elapsed = now
            .checked_sub(self.epoch_ms)
            .ok_or(IdError::ClockBeforeEpoch {
                now_ms: now,
                epoch_ms: self.epoch_ms,
            })?;
        if elapsed > MAX_TIMESTAMP {
            return Err(IdError::TimestampOverflow);
        }
        Ok(elapsed)
    }

    #[inline]
    fn compose(&self, state: u64) -> u64 {
        let ts = state >> SEQUENCE_BITS;
        let seq = state & MAX_SEQUENCE;
        (ts << (WORKER_BITS + SEQUENCE_BITS)) | self.worker_bits | seq
    }

    /// One attempt, never waits.
    pub fn try_next(&self) -> Result<u64, TryNextError> {
        let mut last = self.state.load(Ordering::Acquire);
        loop {
            // Read the clock only after loading the state (see module docs).
            let now = self.elapsed_ms().map_err(TryNextError::Fatal)?;
            let floor = self.floor.load(Ordering::Acquire);
            if now <= floor {
                return Err(TryNextError::ClockBehind {
                    behind_ms: floor - now + 1,
                });
            }
            if now >= self.ceiling.load(Ordering::Acquire) {
                return Err(TryNextError::Unreserved);
            }
            let last_ts = last >> SEQUENCE_BITS;
            let next = if now > last_ts {
                now << SEQUENCE_BITS
            } else if now == last_ts {
                if last & MAX_SEQUENCE == MAX_SEQUENCE {
                    return Err(TryNextError::SequenceExhausted);
                }
                last + 1
            } else {
                return Err(TryNextError::ClockBehind {
                    behind_ms: last_ts - now,
                });
            };
            match self
                .state
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(self.compose(next)),
                Err(actual) => last = actual,
            }
        }
    }

    /// Next id, waiting on the calling thread when it must: a spin of at most
    /// one millisecond when the sequence is exhausted, and a sleep bounded by
    /// the configured clock wait when the clock stepped back.
    pub fn next_id(&self) -> Result<u64, IdError> {
        let mut waiter = Waiter::new(self.max_clock_wait);
        loop {
            match self.try_next() {
                Ok(id) => return Ok(id),
                Err(e) => match waiter.on_error(e)? {
                    Wait::Spin => std::hint::spin_loop(),
                    Wait::Sleep(d) => std::thread::sleep(d),
                },
            }
        }
    }

    /// Like [`Generator::next_id`], but a clock that stepped back is awaited
    /// with a timer instead of blocking the thread, so an async executor's
    /// worker never sleeps for longer than the spin to the next millisecond.
    #[cfg(feature = "tokio")]
    pub async fn next_id_async(&self) -> Result<u64, IdError> {
        let mut waiter = Waiter::new(self.max_clock_wait);
        loop {
            match self.try_next() {
                Ok(id) => return Ok(id),
                Err(e) => match waiter.on_error(e)? {
                    Wait::Spin => std::hint::spin_loop(),
                    Wait::Sleep(d) => tokio::time::sleep(d).await,
                },
            }
        }
    }
}

enum Wait {
    Spin,
    Sleep(Duration),
}

/// Shared retry policy of the blocking and async paths.
struct Waiter {
    started: Option<Instant>,
    bound: Duration,
}

impl Waiter {
    fn new(bound: Duration) -> Self {
        Self {
            started: None,
            bound,
        }
    }

    fn on_error(&mut self, e: TryNextError) -> Result<Wait, IdError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let waited = started.elapsed();
        match e {
            TryNextError::Fatal(e) => Err(e),
            TryNextError::SequenceExhausted => {
                // A clock that does not advance for longer than the bound is as
                // broken as one that went back: fail rather than spin forever.
                if waited > self.bound.max(Duration::from_millis(2)) {
                    return Err(IdError::ClockMovedBackwards {
                        behind_ms: 0,
                        waited_ms: waited.as_millis() as u64,
                    });
                }
                Ok(Wait::Spin)
            }
            TryNextError::Unreserved => {
                if waited >= self.bound {
                    return Err(IdError::Unreserved {
                        waited_ms: waited.as_millis() as u64,
                    });
                }
                Ok(Wait::Sleep(Duration::from_millis(1)))
            }
            TryNextError::ClockBehind { behind_ms } => {
                if waited >= self.bound {
                    return Err(IdError::ClockMovedBackwards {
                        behind_ms,
                        waited_ms: waited.as_millis() as u64,
                    });
                }
                let remaining = self.bound - waited;
                Ok(Wait::Sleep(Duration::from_millis(behind_ms).min(remaining)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    const T0: u64 = DEFAULT_EPOCH_MS + 1_000_000;

    fn manual(worker: u64) -> (Arc<ManualClock>, Generator<Arc<ManualClock>>) {
        let clock = Arc::new(ManualClock::new(T0));
        let config = GeneratorConfig::new(worker)
            .unwrap()
            .with_max_clock_wait(Duration::from_millis(20));
        (clock.clone(), Generator::with_clock(config, clock))
    }

    #[test]
    fn a_restart_behind_its_floor_never_reissues_an_id() {
        let clock = Arc::new(ManualClock::new(T0));
        let config = GeneratorConfig::new(4)
            .unwrap()
            .with_max_clock_wait(Duration::from_millis(5));
        let before = Generator::with_clock(config.clone(), clock.clone());
        // The process persisted a reservation up to T0 + 1000 and issued ids.
        before.set_ceiling(T0 + 1_000);
        let issued: HashSet<u64> = (0..100).map(|_| before.next_id().unwrap()).collect();
        // Restart with the clock frozen (or stepped back) at T0.
        let after = Generator::with_clock(config, clock.clone());
        after.set_floor(T0 + 1_000);
        assert!(matches!(
            after.try_next(),
            Err(TryNextError::ClockBehind { behind_ms: 1001 })
        ));
        assert!(matches!(
            after.next_id(),
            Err(IdError::ClockMovedBackwards { .. })
        ));
        // Once the clock passes the floor, ids flow, none seen before.
        clock.set(T0 + 1_001);
        let id = after.next_id().unwrap();
        assert!(!issued.contains(&id));
        assert!(IdParts::from_id(id, DEFAULT_EPOCH_MS).unix_ms > T0 + 1_000);
    }

    #[test]
    fn no_id_at_or_past_the_ceiling() {
        let (clock, g) = manual(2);
        g.set_ceiling(T0 + 10);
        assert!(g.next_id().is_ok());
        clock.set(T0 + 10);
        assert_eq!(g.try_next(), Err(TryNextError::Unreserved));
        assert!(matches!(g.next_id(), Err(IdError::Unreserved { .. })));
        // A lower ceiling never replaces a higher one.
        g.set_ceiling(T0 + 5);
        g.set_ceiling(T0 + 20);
        assert!(g.next_id().is_ok());
        // A lower floor never replaces a higher one either.
        g.set_floor(T0 + 15);
        g.set_floor(T0 + 1);
        assert_eq!(g.floor_unix_ms(), T0 + 15);
    }

    #[test]
    fn worker_id_is_validated() {
        assert!(GeneratorConfig::new(1023).is_ok());
        assert_eq!(
            GeneratorConfig::new(1024).unwrap_err(),
            IdError::InvalidWorker(1024)
        );
    }

    #[test]
    fn fields_round_trip_and_sign_bit_is_clear() {
        let (_, g) = manual(777);
        let id = g.next_id().unwrap();
        assert_eq!(id >> 63, 0);
        let parts = IdParts::from_id(id, g.epoch_ms());
        assert_eq!(parts.unix_ms, T0);
        assert_eq!(parts.worker_id, 777);
        assert_eq!(parts.sequence, 0);
    }

    #[test]
    fn exhausted_sequence_moves_to_next_millisecond() {
        let (clock, g) = manual(1);
        for seq in 0..=MAX_SEQUENCE {
            let id = g.try_next().unwrap();
            assert_eq!(id & MAX_SEQUENCE, seq);
        }
        assert_eq!(g.try_next(), Err(TryNextError::SequenceExhausted));
        clock.advance(1);
        let id = g.try_next().unwrap();
        let parts = IdParts::from_id(id, g.epoch_ms());
        assert_eq!((parts.unix_ms, parts.sequence), (T0 + 1, 0));
    }

    #[test]
    fn clock_step_back_fails_after_bounded_wait_without_reuse() {
        let (clock, g) = manual(1);
        let before = g.next_id().unwrap();
        clock.set(T0 - 500);
        let started = Instant::now();
        let err = g.next_id().unwrap_err();
        assert!(matches!(
            err,
            IdError::ClockMovedBackwards { behind_ms: 500, .. }
        ));
        // It waited, but only for about the configured bound.
        assert!(started.elapsed() >= Duration::from_millis(20));
        // Once the clock is past the last issued ms again, ids resume, higher.
        clock.set(T0 + 1);
        assert!(g.next_id().unwrap() > before);
    }

    #[test]
    fn clock_step_back_recovers_within_the_bound() {
        // A generous bound: the test checks recovery, not timing, so a slow
        // machine must not turn the wait into a failure.
        let clock = Arc::new(ManualClock::new(T0));
        let config = GeneratorConfig::new(1)
            .unwrap()
            .with_max_clock_wait(Duration::from_secs(30));
        let g = Generator::with_clock(config, clock.clone());
        let before = g.next_id().unwrap();
        clock.set(T0 - 5);
        let c = clock.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            c.set(T0 + 1);
        });
        let after = g.next_id().unwrap();
        t.join().unwrap();
        assert!(after > before);
        assert_eq!(IdParts::from_id(after, g.epoch_ms()).unix_ms, T0 + 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_path_fails_the_same_way() {
        let (clock, g) = manual(1);
        g.next_id_async().await.unwrap();
        clock.set(T0 - 1_000);
        assert!(matches!(
            g.next_id_async().await,
            Err(IdError::ClockMovedBackwards { .. })
        ));
    }

    #[test]
    fn clock_before_epoch_is_an_error() {
        let clock = ManualClock::new(DEFAULT_EPOCH_MS - 1);
        let g = Generator::with_clock(GeneratorConfig::new(0).unwrap(), clock);
        assert!(matches!(g.next_id(), Err(IdError::ClockBeforeEpoch { .. })));
    }

    #[test]
    fn ids_from_many_threads_are_distinct() {
        let g = Arc::new(Generator::new(GeneratorConfig::new(3).unwrap()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    (0..20_000)
                        .map(|_| g.next_id().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            let ids = t.join().unwrap();
            // Each thread sees its own ids strictly increasing.
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            for id in ids {
                assert!(all.insert(id), "duplicate id {id}");
            }
        }
        assert_eq!(all.len(), 160_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Under any schedule of clock moves (forwards, stalls, backwards),
        /// the ids a generator hands out strictly increase, and a failure is
        /// reported exactly when the clock sits behind the last issued ms.
        #[test]
        fn ids_strictly_increase_under_any_clock(steps in prop::collection::vec(-3i64..4, 1..200)) {
            let clock = Arc::new(ManualClock::new(T0));
            let config = GeneratorConfig::new(9).unwrap().with_max_clock_wait(Duration::ZERO);
            let g = Generator::with_clock(config, clock.clone());
            let mut last: Option<u64> = None;
            let mut now = T0 as i64;
            for step in steps {
                now += step;
                clock.set(now as u64);
                match g.try_next() {
                    Ok(id) => {
                        if let Some(prev) = last {
                            prop_assert!(id > prev);
                            prop_assert!(IdParts::from_id(id, g.epoch_ms()).unix_ms >= IdParts::from_id(prev, g.epoch_ms()).unix_ms);
                        }
                        prop_assert_eq!(IdParts::from_id(id, g.epoch_ms()).unix_ms, now as u64);
                        last = Some(id);
                    }
                    Err(TryNextError::ClockBehind { behind_ms }) => {
                        let prev = IdParts::from_id(last.unwrap(), g.epoch_ms()).unix_ms;
                        prop_assert_eq!(prev - now as u64, behind_ms);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
    }
}
