//! The Snowlink service: the HTTP API, the redirects, API keys, and the
//! commands of the `snowlink` binary.
//!
//! A tour, from the outside in:
//!
//! * [`cli`]: the `snowlink` command line (`serve`, `keys`, `migrate`,
//!   `import`, `settings`, `decode`); `main.rs` only parses it and
//!   dispatches.
//! * [`configuration`]: typed [`configuration::Settings`], layered from
//!   defaults, an optional TOML file, `SNOWLINK_*` environment variables and
//!   flags, and the smaller sets of sections the other commands take.
//! * [`startup`]: [`startup::Application`] builds the whole service on a
//!   listener it binds itself (port 0 works), so tests run the real thing;
//!   `components` is the lifecycle of its background parts.
//! * `routes`: the route table and one module of handlers per resource;
//!   `state` is what the handlers share.
//! * `manage`: the link service. Creating, finding, changing and deleting a
//!   link, for the API, bulk create and `import` alike.
//! * `auth` (the caller of a route) and [`keys`] (minting and verifying API
//!   keys); `ratelimit`, the per-key token buckets.
//! * `cache`: the in-process read-through cache in front of the store;
//!   [`shared_cache`]: the optional Redis tier shared by every instance, and
//!   the invalidation channel between instances.
//! * `ids`: every id the instance issues, under a worker id ([`lease`]:
//!   given, leased from Redis, or held on the data directory) and a
//!   persisted reservation, so a restart never reissues an id.
//! * `stats`: statistics from the lake, asked of `snowlink-analytics`.
//! * `import`: `snowlink import`, through the link service.
//! * [`error`]: the one JSON error body and the table of its codes.
//! * `metrics`, `qr`, [`telemetry`].
//!
//! The link rules come from `snowlink-rules` ([`links`], [`targets`]), the
//! click pipeline from `snowlink-clicks`, the stores from `snowlink-store`
//! and `snowlink-store-scylla`, ids from `snowlink-id`.
//!
//! Invariant: only this crate knows about HTTP.

pub(crate) mod auth;
pub(crate) mod cache;
pub mod cli;
pub(crate) mod components;
pub mod configuration;
pub mod error;
pub(crate) mod ids;
pub(crate) mod import;
pub mod keys;
pub mod lease;
pub(crate) mod manage;
pub(crate) mod metrics;
pub(crate) mod qr;
pub(crate) mod ratelimit;
pub(crate) mod routes;
pub mod shared_cache;
pub mod startup;
pub(crate) mod state;
pub(crate) mod stats;
pub mod telemetry;
/// The link rules, from their own crate.
pub use snowlink_rules::{links, targets};

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
