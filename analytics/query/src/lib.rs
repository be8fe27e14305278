//! `snowlink-analytics`: questions about the click lake, answered by DataFusion.
//!
//! * [`cli`]: arguments and `--help`.
//! * [`lake`]: the session over the Delta tables `clicks`, `daily` and
//!   `dims` (a folder or S3), so a `date` filter prunes whole days, and
//!   what each day holds (whether its rollups are fresh).
//! * [`model`]: what is asked and what comes back, shared by the others.
//! * [`commands`]: `top`, `timeseries`, `breakdown`, `sql`.
//! * [`stats`]: one link's statistics as one JSON document (the service's
//!   `GET /api/v1/links/{code}/stats`).
//! * [`export`]: one link's raw clicks as CSV, streamed in time order.
//! * [`print`]: table, CSV and JSON output, and the sparkline.
//! * [`serve`]: the long-lived server the service's stats routes ask.
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
pub mod serve;
pub mod stats;

pub use cli::{run, Cli};
