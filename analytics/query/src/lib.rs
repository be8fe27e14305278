//! `snowlink-analytics`: questions about the click lake, answered by DataFusion.
//!
//! * [`cli`]: arguments and `--help`.
//! * [`lake`]: the session with the `clicks` and `daily` listing tables over
//!   the hive partitions, so a `date` filter prunes whole days.
//! * [`model`]: what is asked and what comes back, shared by the others.
//! * [`commands`]: `top`, `timeseries`, `breakdown`, `sql`.
//! * [`stats`]: one link's statistics as one JSON document (the service's
//!   `GET /api/v1/links/{code}/stats`).
//! * [`export`]: one link's raw clicks as CSV, streamed in time order.
//! * [`print`]: table, CSV and JSON output, and the sparkline.
//!
//! `--since` / `--until` are parsed by `snowlink-time`. Dependencies run one
//! way: `cli` uses `commands`, `stats`, `lake`, `print` and `model`;
//! `stats` and `export` use `commands`; `commands` and `print` use `model`; nothing uses
//! `cli`.
//!
//! This crate reads the lake only; it never writes.

pub mod cli;
pub mod commands;
pub mod export;
pub mod lake;
pub mod model;
pub mod print;
pub mod stats;

pub use cli::{run, Cli};
