//! Link statistics over HTTP, answered by the analytics CLI.
//!
//! The service does not link DataFusion: each question runs
//! `snowlink-analytics --lake LAKE stats ...` as a child process, with at
//! most `--stats-concurrency` at once and a time limit, and passes on the
//! one JSON document it prints. The CLI and the API therefore give the same
//! numbers by construction, the service's build stays free of the query
//! engine, and a query that runs out of memory takes down a child, never
//! the redirect path. ARCHITECTURE.md weighs this against the alternatives.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Longest a stats question may take before it is abandoned.
const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// The `stats` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsSettings {
    /// The click lake written by snowlink-aggregate: serves GET /api/v1/links/{code}/stats from it
    /// [default: none, the stats routes answer 503 stats_unavailable]. Stats lag the redirects by at most
    /// one aggregate interval.
    #[arg(long, env = "SNOWLINK_LAKE", value_name = "DIR")]
    pub lake: Option<PathBuf>,
    /// The snowlink-analytics binary that answers stats questions [default: the one next to this binary,
    /// else snowlink-analytics on PATH].
    #[arg(long, env = "SNOWLINK_ANALYTICS_BIN", value_name = "FILE")]
    pub analytics_bin: Option<PathBuf>,
    /// Stats questions answered at once; more wait their turn.
    #[arg(
        long,
        env = "SNOWLINK_STATS_CONCURRENCY",
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub stats_concurrency: u32,
}

/// Why a stats question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("this service has no click lake (--lake)")]
    NoLake,
    #[error("the analytics binary {0} cannot be run: {1}")]
    Spawn(String, std::io::Error),
    #[error("the stats query took longer than {0:?}")]
    Timeout(Duration),
    #[error("the stats query failed: {0}")]
    Failed(String),
}

/// Runs stats questions against the lake.
#[derive(Debug)]
pub struct StatsEngine {
    lake: PathBuf,
    bin: PathBuf,
    slots: Semaphore,
}

/// One question: the bounds are absolute RFC 3339 times, worked out by the
/// caller, so the child's clock does not matter.
#[derive(Debug, Clone)]
pub struct StatsQuestion {
    pub code: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub by_hour: bool,
    pub include_bots: bool,
}

impl StatsEngine {
    /// `None` without a lake. The lake folder is created when missing, so
    /// a service started before the first aggregate run answers zeros.
    pub fn from_settings(settings: &StatsSettings) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(lake) = &settings.lake else {
            return Ok(None);
        };
        std::fs::create_dir_all(lake)
            .map_err(|e| anyhow::anyhow!("creating the lake {}: {e}", lake.display()))?;
        let bin = match &settings.analytics_bin {
            Some(bin) => bin.clone(),
            None => default_bin(),
        };
        Ok(Some(Arc::new(Self {
            lake: lake.clone(),
            bin,
            slots: Semaphore::new(settings.stats_concurrency as usize),
        })))
    }

    /// The statistics document of one link, as the CLI prints it.
    pub async fn link_stats(&self, q: &StatsQuestion) -> Result<Vec<u8>, StatsError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StatsError::Failed("shutting down".into()))?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--lake").arg(&self.lake).args([
            "stats",
            &q.code,
            "--by",
            if q.by_hour { "hour" } else { "day" },
        ]);
        if let Some(since) = &q.since {
            cmd.args(["--since", since]);
        }
        if let Some(until) = &q.until {
            cmd.args(["--until", until]);
        }
        if q.include_bots {
            cmd.arg("--include-bots");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| StatsError::Spawn(self.bin.display().to_string(), e))?;
        let out = tokio::time::timeout(STATS_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| StatsError::Timeout(STATS_TIMEOUT))?
            .map_err(|e| StatsError::Failed(e.to_string()))?;
        if !out.status.success() {
            return Err(StatsError::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(out.stdout)
    }
}

/// `snowlink-analytics` next to the running binary (release archives and
/// `target/*/` put them side by side), else the name alone, for `PATH`.
fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("snowlink-analytics")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("snowlink-analytics"))
}
