//! Link statistics over HTTP, answered by the analytics CLI's code.
//!
//! The service does not link DataFusion. Stats and top questions go to one
//! long-lived child, `snowlink-analytics --lake LAKE serve`, over a Unix
//! socket in a private folder: it keeps the lake's table snapshots in
//! memory, refreshes them every `--stats-refresh`, and answers each
//! question with the CLI's own code, so a question costs its query, not a
//! process start and a read of the Delta logs. At most
//! `--stats-concurrency` questions run at once, each with a time limit. A
//! child that dies is started again at the next question. CSV exports,
//! which stream for as long as the client reads, still run one child each
//! (`snowlink-analytics clicks`). The CLI and the API give the same
//! numbers by construction, the service's build stays free of the query
//! engine, and a query that runs out of memory takes down a child, never
//! the redirect path. ARCHITECTURE.md weighs this against the alternatives.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use snowlink_events::stats::{ServeHeader, BAD_QUESTION_EXIT};
use tokio::sync::Semaphore;

/// Longest a stats question may take before it is abandoned.
const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// The `stats` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsSettings {
    /// The click lake written by snowlink-aggregate (a folder, a file:// URL or s3://bucket/prefix, with
    /// the AWS_* settings in the environment): serves GET /api/v1/links/{code}/stats from it [default: none,
    /// the stats routes answer 503 stats_unavailable]. Stats lag the redirects by at most one aggregate
    /// interval and one --stats-refresh.
    #[arg(long, env = "SNOWLINK_LAKE", value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// How often the stats server reads the lake's new table versions.
    #[arg(
        long,
        env = "SNOWLINK_STATS_REFRESH",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub stats_refresh: Duration,
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
    /// The question cannot be answered as asked (too many buckets, say):
    /// the asker's to fix.
    #[error("{0}")]
    BadQuestion(String),
}

/// Runs stats questions against the lake.
#[derive(Debug)]
pub struct StatsEngine {
    lake: String,
    bin: PathBuf,
    refresh: Duration,
    /// The private folder of the server's socket (mode 0700).
    socket_dir: PathBuf,
    /// The long-lived query server, once started.
    server: tokio::sync::Mutex<Option<tokio::process::Child>>,
    slots: Semaphore,
    /// CSV exports hold theirs while the client reads, so they have their
    /// own: a slow download never keeps a stats question waiting.
    export_slots: Arc<Semaphore>,
    /// Requests per minute per client to public stats.
    pub public_rate: u32,
}

/// Which clicks a question counts: its bounds, absolute RFC 3339 times
/// worked out by the caller (so the child's clock does not matter), and
/// whether the clicks of known bots count (by default they do not, in
/// every route as in every command).
#[derive(Debug, Clone, Default)]
pub struct Span {
    pub since: Option<String>,
    pub until: Option<String>,
    pub include_bots: bool,
}

impl Span {
    /// The command-line arguments that ask for it.
    fn push_args(&self, args: &mut Vec<String>) {
        if let Some(since) = &self.since {
            args.extend(["--since".to_owned(), since.clone()]);
        }
        if let Some(until) = &self.until {
            args.extend(["--until".to_owned(), until.clone()]);
        }
        if self.include_bots {
            args.push("--include-bots".to_owned());
        }
    }
}

/// One link's statistics over a span, in hours or days.
#[derive(Debug, Clone)]
pub struct StatsQuestion {
    pub code: String,
    pub span: Span,
    pub by_hour: bool,
}

impl StatsEngine {
    /// `None` without a lake. The lake folder is created when missing, so
    /// a service started before the first aggregate run answers zeros.
    pub fn from_settings(settings: &StatsSettings) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(lake) = &settings.lake else {
            return Ok(None);
        };
        if !lake.contains("://") || lake.starts_with("file://") {
            let dir = lake.strip_prefix("file://").unwrap_or(lake);
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating the lake {dir}: {e}"))?;
        }
        let bin = match &settings.analytics_bin {
            Some(bin) => bin.clone(),
            None => default_bin(),
        };
        Ok(Some(Arc::new(Self {
            lake: lake.clone(),
            bin,
            refresh: settings.stats_refresh,
            socket_dir: private_dir()?,
            server: tokio::sync::Mutex::new(None),
            slots: Semaphore::new(settings.stats_concurrency as usize),
            export_slots: Arc::new(Semaphore::new(settings.stats_concurrency as usize)),
            public_rate: settings.public_stats_rate,
        })))
    }

    /// The statistics document of one link, as the CLI prints it.
    pub async fn link_stats(&self, q: &StatsQuestion) -> Result<Vec<u8>, StatsError> {
        let mut args = vec![
            "stats".to_owned(),
            "--by".to_owned(),
            if q.by_hour { "hour" } else { "day" }.to_owned(),
        ];
        q.span.push_args(&mut args);
        // After `--`: a code that starts with '-' is a code, not a flag.
        args.extend(["--".to_owned(), q.code.clone()]);
        self.run(&args, None).await
    }

    /// The most clicked of `codes` in the bounds, as the CLI's JSON array
    /// of `{code, clicks, unique_visitors}`.
    pub async fn top(
        &self,
        codes: &[String],
        span: &Span,
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
        span.push_args(&mut args);
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
        span: &Span,
    ) -> Result<CsvStream, StatsError> {
        let slot = self
            .export_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StatsError::Failed("shutting down".into()))?;
        let mut args = vec!["clicks".to_owned()];
        span.push_args(&mut args);
        args.extend(["--".to_owned(), code.to_owned()]);
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
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(StatsError::BadQuestion(e.to_string()))
            }
            Some(Err(e)) => Err(StatsError::Failed(format!("the export failed: {e}"))),
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

    fn socket(&self) -> PathBuf {
        self.socket_dir.join("analytics.sock")
    }

    /// Starts the query server unless it runs, and waits until it listens.
    async fn ensure_server(&self) -> Result<(), StatsError> {
        let mut server = self.server.lock().await;
        if let Some(child) = server.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
            tracing::warn!("the stats server exited; starting it again");
        }
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = tokio::process::Command::new(&self.bin);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl in the child before exec touches no shared state.
        unsafe {
            // The server dies with the service, however the service ends.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .arg("--lake")
            .arg(&self.lake)
            .arg("serve")
            .arg("--socket")
            .arg(self.socket())
            .arg("--refresh")
            .arg(humantime::format_duration(self.refresh).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        *server = Some(child);
        let deadline = tokio::time::Instant::now() + STATS_TIMEOUT;
        loop {
            if tokio::net::UnixStream::connect(self.socket()).await.is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = server.as_mut().map(|c| c.try_wait()) {
                *server = None;
                return Err(StatsError::Failed(format!(
                    "the stats server exited with {status} (its error is in the service's log)"
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StatsError::Timeout(STATS_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the query server `args` (the CLI's arguments after `--lake`,
    /// with `input` as its standard input) and returns what it answered.
    async fn run(&self, args: &[String], input: Option<Vec<u8>>) -> Result<Vec<u8>, StatsError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StatsError::Failed("shutting down".into()))?;
        let request = serde_json::json!({
            "args": args,
            "stdin": input.map(|i| String::from_utf8_lossy(&i).into_owned()),
        });
        let mut line = serde_json::to_vec(&request).expect("a JSON request");
        line.push(b'\n');
        tokio::time::timeout(STATS_TIMEOUT, async {
            // A server that died since the last question is started again,
            // once.
            let mut attempt = 0;
            loop {
                self.ensure_server().await?;
                match ask(&self.socket(), &line).await {
                    Ok(answer) => return answer,
                    Err(e) if attempt == 0 => {
                        tracing::warn!(error = %e, "the stats server did not answer; starting it again");
                        if let Some(mut child) = self.server.lock().await.take() {
                            let _ = child.kill().await;
                        }
                        attempt += 1;
                    }
                    Err(e) => return Err(StatsError::Failed(e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| StatsError::Timeout(STATS_TIMEOUT))?
    }
}

/// One question over the socket: the answer's bytes, or the server's
/// error. An I/O error means the server is gone.
async fn ask(
    socket: &std::path::Path,
    request: &[u8],
) -> std::io::Result<Result<Vec<u8>, StatsError>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::UnixStream::connect(socket).await?;
    conn.write_all(request).await?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await?;
    let Some(end) = answer.iter().position(|&b| b == b'\n') else {
        return Err(std::io::Error::other(
            "the stats server closed without answering",
        ));
    };
    let header: ServeHeader = serde_json::from_slice(&answer[..end])
        .map_err(|e| std::io::Error::other(format!("the stats server's answer: {e}")))?;
    let why = header.error.unwrap_or_else(|| "failed".to_owned());
    Ok(match (header.ok, header.bad_question) {
        (true, _) => Ok(answer.split_off(end + 1)),
        (false, true) => Err(StatsError::BadQuestion(why)),
        (false, false) => Err(StatsError::Failed(why)),
    })
}

/// A new folder only this user may enter, for the server's socket: other
/// local users must not ask the lake questions.
fn private_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let dir = base.join(format!(
            "snowlink-stats-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => anyhow::bail!("creating {}: {e}", dir.display()),
        }
    }
    anyhow::bail!("no free folder for the stats socket in {}", base.display())
}

impl Drop for StatsEngine {
    fn drop(&mut self) {
        // The child is killed with its handle; its folder goes too.
        let _ = std::fs::remove_dir_all(&self.socket_dir);
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
            Ok(status) => {
                let kind = if status.code() == Some(i32::from(BAD_QUESTION_EXIT)) {
                    std::io::ErrorKind::InvalidInput
                } else {
                    std::io::ErrorKind::Other
                };
                let why = why.trim();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                Some((Err(std::io::Error::new(kind, why.to_owned())), st))
            }
            Err(e) => Some((Err(e), st)),
        }
    })
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
