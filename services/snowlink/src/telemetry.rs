//! Logging set-up. Logs go to stderr so stdout stays clean for command output
//! (`snowlink keys create` prints only the key).

use tracing_subscriber::{fmt, EnvFilter};

use crate::configuration::LogFormat;

/// Installs the global subscriber. The filter comes from `SNOWLINK_LOG`, then
/// `RUST_LOG`, then `default_filter`. Calling it twice is harmless.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("SNOWLINK_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
