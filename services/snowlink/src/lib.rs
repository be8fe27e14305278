//! The Snowlink service.
//!
//! A tour, from the outside in:
//!
//! * [`cli`]: the `snowlink` command line (`serve`, `keys`, `decode`); `main.rs`
//!   only parses it and dispatches.
//! * [`configuration`]: typed [`configuration::Settings`], layered from
//!   defaults, an optional TOML file, `SNOWLINK_*` environment variables and
//!   flags, in that order of precedence.
//! * [`startup`]: [`startup::Application`] builds the whole service on a
//!   listener it binds itself (port 0 works), so tests run the real thing.
//! * [`routes`]: one module per resource, each with its own `configure`.
//! * [`links`]: the rules of a link (URL, alias, expiry, redirect status),
//!   free of HTTP.
//! * [`cache`]: the in-process read-through cache in front of the store.
//! * [`shared_cache`]: the optional Redis tier shared by every instance, and
//!   the invalidation channel between instances.
//! * [`lease`]: the Snowflake worker id, fixed or leased from Redis.
//! * [`ids`]: every id the instance issues, under the lease and a persisted
//!   reservation, so a restart never reissues an id.
//! * [`clicks`]: click capture: bounded channel, enrichment, durable spool.
//! * [`kafka`]: the optional forwarder from the spool to a Kafka topic.
//! * [`auth`]: API keys: minting, hashing, the bearer extractor and the
//!   failed-attempt rate limit.
//! * [`error`]: the one JSON error body, `{"error":{"code","message"}}`.
//! * [`telemetry`]: `tracing` subscriber set-up.
//!
//! Invariant: only this crate knows about HTTP. Storage lives behind
//! `snowlink_store::LinkStore` (embedded SQLite, or ScyllaDB from
//! `snowlink_store_scylla`), ids in `snowlink_id`.

pub mod auth;
/// The link rules, from their own crate.
pub use snowlink_rules::{links, targets};
pub mod cache;
pub mod cli;
pub mod clicks;
pub mod components;
pub mod configuration;
pub mod error;
pub mod ids;
pub mod import;
pub mod kafka;
pub mod lease;
pub mod metrics;
pub mod qr;
pub mod ratelimit;
pub mod routes;
pub mod shared_cache;
pub mod startup;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod visitor_keys;

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
