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

use futures::StreamExt;
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
    /// Stats questions answered at once, and CSV exports streamed at once; more wait their turn.
    #[arg(
        long,
        env = "SNOWLINK_STATS_CONCURRENCY",
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub stats_concurrency: u32,
    /// Requests per minute per client address to the public stats of links made with "public_stats": true
    /// (their page's data, CSV and QR code), e.g. 60/min or 1/s. Counted in this instance's memory; the
    /// address is never stored.
    #[arg(
        long,
        env = "SNOWLINK_PUBLIC_STATS_RATE",
        value_name = "N/min",
        default_value = "60/min",
        value_parser = crate::ratelimit::parse_rate
    )]
    pub public_stats_rate: u32,
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
    /// CSV exports hold theirs while the client reads, so they have their
    /// own: a slow download never keeps a stats question waiting.
    export_slots: Arc<Semaphore>,
    /// Requests per minute per client to public stats.
    pub public_rate: u32,
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
            export_slots: Arc::new(Semaphore::new(settings.stats_concurrency as usize)),
            public_rate: settings.public_stats_rate,
        })))
    }

    /// The statistics document of one link, as the CLI prints it.
    pub async fn link_stats(&self, q: &StatsQuestion) -> Result<Vec<u8>, StatsError> {
        let mut args = vec![
            "stats".to_owned(),
            q.code.clone(),
            "--by".to_owned(),
            if q.by_hour { "hour" } else { "day" }.to_owned(),
        ];
        push_bounds(&mut args, q.since.as_deref(), q.until.as_deref());
        if q.include_bots {
            args.push("--include-bots".to_owned());
        }
        self.run(&args, None).await
    }

    /// The most clicked of `codes` in the bounds, as the CLI's JSON array
    /// of `{code, clicks, unique_visitors}`.
    pub async fn top(
        &self,
        codes: &[String],
        since: Option<&str>,
        until: Option<&str>,
        limit: u32,
    ) -> Result<Vec<u8>, StatsError> {
        let mut args = vec![
            "--format".to_owned(),
            "json".to_owned(),
            "top".to_owned(),
            "--limit".to_owned(),
            limit.to_string(),
            "--codes-from".to_owned(),
            "-".to_owned(),
        ];
        push_bounds(&mut args, since, until);
        let mut list = String::with_capacity(codes.len() * 12);
        for code in codes {
            list.push_str(code);
            list.push('\n');
        }
        self.run(&args, Some(list.into_bytes())).await
    }

    /// One link's clicks as CSV, streamed from the CLI as it writes them.
    /// The first bytes (at least the header) are read before this returns,
    /// so a query that fails at once is an error here, not a cut answer.
    /// A failure later ends the stream with an error, which cuts the
    /// response short: a client sees an incomplete transfer, never a
    /// shorter file that looks whole.
    pub async fn clicks_csv(
        self: &Arc<Self>,
        code: &str,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<CsvStream, StatsError> {
        let slot = self
            .export_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StatsError::Failed("shutting down".into()))?;
        let mut args = vec!["clicks".to_owned(), code.to_owned()];
        push_bounds(&mut args, since, until);
        let mut child = self
            .command(&args)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut stream = Box::pin(csv_chunks(child, stdout, stderr, slot));
        let first = tokio::time::timeout(STATS_TIMEOUT, stream.next())
            .await
            .map_err(|_| StatsError::Timeout(STATS_TIMEOUT))?;
        match first {
            Some(Ok(bytes)) => Ok(Box::pin(futures::stream::iter([Ok(bytes)]).chain(stream))),
            Some(Err(e)) => Err(StatsError::Failed(e.to_string())),
            None => Err(StatsError::Failed("the export printed nothing".into())),
        }
    }

    fn command(&self, args: &[String]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--lake")
            .arg(&self.lake)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> StatsError {
        StatsError::Spawn(self.bin.display().to_string(), e)
    }

    /// Runs the CLI with `args` (and `input` on its standard input) and
    /// returns what it printed.
    async fn run(&self, args: &[String], input: Option<Vec<u8>>) -> Result<Vec<u8>, StatsError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StatsError::Failed("shutting down".into()))?;
        let mut cmd = self.command(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            // Written while the child runs; it reads all of it before it answers.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
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

/// A CSV answer: chunks of the CLI's output as they come.
pub type CsvStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<actix_web::web::Bytes, std::io::Error>>>>;

/// Chunks of the child's standard output; at its end, an error unless the
/// child exited successfully. The child (killed if the stream is dropped)
/// and the export slot live as long as the stream.
fn csv_chunks(
    child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl futures::Stream<Item = Result<actix_web::web::Bytes, std::io::Error>> {
    use tokio::io::AsyncReadExt;
    struct State {
        child: Option<tokio::process::Child>,
        stdout: tokio::process::ChildStdout,
        stderr: tokio::process::ChildStderr,
        _slot: tokio::sync::OwnedSemaphorePermit,
    }
    let state = State {
        child: Some(child),
        stdout,
        stderr,
        _slot: slot,
    };
    futures::stream::unfold(state, |mut st| async move {
        let mut child = st.child.take()?;
        let mut buf = actix_web::web::BytesMut::with_capacity(64 * 1024);
        match st.stdout.read_buf(&mut buf).await {
            Ok(0) => {}
            Ok(_) => {
                st.child = Some(child);
                return Some((Ok(buf.freeze()), st));
            }
            Err(e) => return Some((Err(e), st)),
        }
        // End of output: the export is whole only if the CLI says so.
        let mut why = String::new();
        let _ = st.stderr.read_to_string(&mut why).await;
        match child.wait().await {
            Ok(status) if status.success() => None,
            Ok(status) => Some((
                Err(std::io::Error::other(format!(
                    "the export failed ({status}): {}",
                    why.trim()
                ))),
                st,
            )),
            Err(e) => Some((Err(e), st)),
        }
    })
}

/// `--since`/`--until` arguments for the bounds given.
fn push_bounds(args: &mut Vec<String>, since: Option<&str>, until: Option<&str>) {
    if let Some(since) = since {
        args.extend(["--since".to_owned(), since.to_owned()]);
    }
    if let Some(until) = until {
        args.extend(["--until".to_owned(), until.to_owned()]);
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
