//! `snowlink-analytics`: questions about the click lake, answered by DataFusion.
//!
//! * [`cli`]: arguments and `--help`.
//! * [`lake`]: the session with the `clicks` and `daily` listing tables over
//!   the hive partitions, so a `date` filter prunes whole days.
//! * [`model`]: what is asked and what comes back, shared by the others.
//! * [`commands`]: `top`, `timeseries`, `breakdown`, `sql`.
//! * [`print`]: table, CSV and JSON output, and the sparkline.
//! * [`time`]: `--since` / `--until` parsing.
//!
//! Dependencies run one way: `cli` uses `commands`, `lake`, `print` and
//! `model`; `commands` and `print` use `model`; nothing uses `cli`.
//!
//! This crate reads the lake only; it never writes.

pub mod cli;
pub mod commands;
pub mod lake;
pub mod model;
pub mod print;

pub use cli::{run, Cli};
