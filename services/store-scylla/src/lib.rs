//! The ScyllaDB backend of [`LinkStore`].
//!
//! * Every statement is prepared once at connect time; the driver's default
//!   load balancing is token-aware and shard-aware, so each request goes
//!   straight to a replica's owning shard.
//! * Every link is written with `INSERT ... IF NOT EXISTS` (a lightweight
//!   transaction), generated codes included: an id reissued after a clock
//!   step or a lost lease is refused, never written over a live link. The
//!   other conditional writes are deletes, key names and revocations.
//! * Expiring links carry a CQL TTL of their remaining life plus
//!   [`EXPIRED_GRACE_SECS`], so they answer 410 Gone for a while and are then
//!   dropped by the database itself; `expires_at` stays the source of truth
//!   for redirects. A TTL is only used when it ends before
//!   [`TTL_HORIZON_SECS`] (2038-01-19, the limit of Cassandra's default
//!   storage mode) and within CQL's 20-year maximum; links expiring later,
//!   or never, are written without one and kept (see [`ttl_secs`]).
//! * Reads and writes use the configured consistency (default
//!   `LOCAL_QUORUM`), lightweight transactions `LOCAL_SERIAL`.
//!
//! Modules: [`config`] (settings, the session), `error` ([`ScyllaError`]),
//! `rows` (row layout, TTLs), `statements` (the prepared CQL), `store`
//! ([`ScyllaStore`]) and [`migrate`].

pub mod config;
mod error;
pub mod migrate;
mod rows;
mod statements;
mod store;

pub use config::{
    connect, parse_consistency, parse_serial_consistency, secret, ConfigError, ScyllaConfig,
};
pub use error::ScyllaError;
pub use migrate::{migrate, MigrateReport, MIGRATIONS};
pub use rows::{ttl_secs, EXPIRED_GRACE_SECS, MAX_TTL_SECS, TTL_HORIZON_SECS};
pub use store::ScyllaStore;
