//! `snowlink-aggregate`: moves click events from the spool or from Kafka
//! into the lake, exactly once.
//!
//! One engine ([`engine`]) does it for every source: a [`engine::Source`]
//! yields records with a stream and a position, the files of a batch are
//! made durable, the lake's [`ledger`] records the batch, and only then is
//! the source acknowledged. The sources are the local click spool
//! ([`spool`]) and the clicks topic ([`kafka`]). `compact` reads the same
//! ledger.

pub mod engine;
pub mod kafka;
pub mod ledger;
pub mod spool;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use snowlink_lake::Lake;
use snowlink_spool::ClickSpool;

/// Move click events into the Parquet lake, from the local spool or from Kafka.
///
/// Reads the click spool that `snowlink serve` writes under its data directory
/// (or, with --kafka-brokers, every partition of the clicks topic), writes
/// `LAKE/clicks/date=YYYY-MM-DD/*.parquet` (one file per batch, stream and day,
/// sorted by code and time) and rebuilds the rollups of each day that received
/// events (`LAKE/daily/date=YYYY-MM-DD/daily.parquet` per link,
/// `LAKE/dims/date=YYYY-MM-DD/dims.parquet` per link and referrer, country,
/// browser, OS and device). What is in the lake is recorded in
/// `LAKE/_ledger/ledger.db` after the files are durable and before the spool is
/// released or Kafka offsets are committed. Safe to kill at any moment: rerun
/// it and every event is in the lake exactly once.
///
/// Examples:
///   snowlink-aggregate --data-dir ./data --lake ./lake --once
///   snowlink-aggregate --data-dir ./data --lake ./lake --every 60s
///   snowlink-aggregate --kafka-brokers kafka:9092 --group lake --lake ./lake --once
///   snowlink-aggregate compact --lake ./lake
///   snowlink-aggregate rollups --lake ./lake
#[derive(Debug, Parser)]
#[command(name = "snowlink-aggregate", version, verbatim_doc_comment)]
pub struct Cli {
    /// Data directory of the snowlink service (holds spool.db).
    #[arg(
        long,
        env = "SNOWLINK_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Root folder of the Parquet lake.
    #[arg(long, env = "SNOWLINK_LAKE", default_value = "./lake", global = true)]
    pub lake: PathBuf,

    /// Move everything spooled now, then exit (the default).
    #[arg(long, conflicts_with = "every")]
    pub once: bool,

    /// Keep running, aggregating at this interval (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub every: Option<Duration>,

    /// Most events per batch; each batch is one file per day it spans.
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Consume click events from these Kafka brokers (host:port,...) instead
    /// of the local spool. Reading resumes where the lake's ledger says; a
    /// run stops at the end of each partition as seen at start.
    #[arg(long, env = "SNOWLINK_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic of click events.
    #[arg(long, env = "SNOWLINK_KAFKA_TOPIC", default_value = snowlink_events::kafka::DEFAULT_TOPIC)]
    pub topic: String,

    /// Kafka consumer group the lake's progress is committed to, for lag
    /// monitoring (the lake's ledger decides where reading resumes).
    #[arg(
        long,
        env = "SNOWLINK_KAFKA_GROUP",
        default_value = "snowlink-aggregate"
    )]
    pub group: String,

    /// Longest wait to fill a Kafka batch before writing what has arrived.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s", value_name = "DURATION")]
    pub batch_wait: Duration,

    /// After moving everything (with --once), give up this data dir's spool
    /// so another consumer may drain it (the service's Kafka forwarder).
    /// Refused while clicks remain in it.
    #[arg(long, requires = "once", conflicts_with = "kafka_brokers")]
    pub release_spool: bool,

    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge each day's small files into one, atomically, with identical rows.
    Compact,
    /// Rebuild every day's rollups from its click files (after an upgrade
    /// that adds a rollup; queries read the raw clicks of a day until then).
    Rollups,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub files: u64,
    pub bytes: u64,
    pub rollups: u64,
    /// Spool rows or messages that were not a valid event; logged and skipped.
    pub rejected: u64,
    /// Kafka messages that were resends of events already in the lake.
    pub duplicates: u64,
    /// Records the ledger already held (read again after a crash).
    pub skipped: u64,
}

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc (when it is the process's allocator) to keep the memory
/// a batch frees for the next batch instead of handing it back to the OS
/// 10 ms later: each batch allocates and frees hundreds of megabytes, and
/// memory taken back from the OS arrives as fresh pages the kernel must
/// zero (a sixth of a run's samples, in huge pages). A process holds on to
/// its largest batch's memory. Call before the first batch; an explicit
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide tuning value; mimalloc reads options
        // atomically, and the call has no other effect.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

impl Summary {
    /// Every record the run went through, whatever became of it.
    pub fn records(&self) -> u64 {
        self.events + self.duplicates + self.rejected + self.skipped
    }
}

/// Locks an existing lake and removes the files an interrupted run wrote
/// but never recorded: only what the ledger records may be merged or
/// rolled up.
fn lock_recorded(lake: &Lake) -> anyhow::Result<snowlink_lake::LakeLock> {
    anyhow::ensure!(
        lake.root().is_dir(),
        "the lake {} does not exist",
        lake.root().display()
    );
    let lock = lake.lock()?;
    let ledger = ledger::Ledger::open(lake)?;
    let removed = engine::remove_unrecorded(lake, &ledger)?;
    if removed > 0 {
        tracing::warn!(removed, "removed files an interrupted run did not record");
    }
    Ok(lock)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logs();
    let lake = Lake::new(&cli.lake);
    if let Some(Command::Compact) = cli.command {
        let started = Instant::now();
        let _lock = lock_recorded(&lake)?;
        let stats = snowlink_lake::compact(&lake, |date| tracing::info!(date, "compacting"))?;
        println!(
            "compacted {} days: {} files -> {} files, {} rows rewritten, {:.2}s",
            stats.days,
            stats.files_before,
            stats.files_after,
            stats.rows,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if let Some(Command::Rollups) = cli.command {
        let started = Instant::now();
        let _lock = lock_recorded(&lake)?;
        let days = lake.click_dates()?;
        let bar = progress_bar(!cli.no_progress && std::io::stderr().is_terminal(), "days");
        bar.set_length(days.len() as u64);
        let mut clicks = 0;
        for day in &days {
            clicks += snowlink_lake::rebuild_daily(&lake, day)?.clicks;
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!(
            "rebuilt the rollups of {} days ({} clicks) in {:.2}s",
            days.len(),
            clicks,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if let Some(brokers) = &cli.kafka_brokers {
        return run_kafka(&cli, brokers, &lake);
    }
    let spool_path = cli.data_dir.join("spool.db");
    anyhow::ensure!(
        cli.data_dir.is_dir(),
        "the data directory {} does not exist (is it the one `snowlink serve` uses?)",
        cli.data_dir.display()
    );
    let spool = ClickSpool::open(&spool_path)
        .with_context(|| format!("opening {}", spool_path.display()))?;
    let mut source = spool::SpoolSource::new(spool, &spool_path, &cli.lake)?;
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    let stop = stop_flag()?;
    match cli.every {
        None => {
            let s = timed(&mut source, &lake, &cli, &stop, show_progress)?;
            print_summary(&s.0, s.1);
            if cli.release_spool {
                source
                    .into_spool()
                    .release()
                    .with_context(|| format!("releasing {}", spool_path.display()))?;
                println!(
                    "released {}: another consumer may drain it now",
                    spool_path.display()
                );
            }
        }
        Some(every) => {
            tracing::info!(every = %humantime::format_duration(every), "aggregating periodically");
            repeat_every(every, &stop, || {
                // Each round reads what is spooled when it starts.
                let spool = ClickSpool::open(&spool_path)
                    .with_context(|| format!("opening {}", spool_path.display()))?;
                let mut source = spool::SpoolSource::new(spool, &spool_path, &cli.lake)?;
                timed(&mut source, &lake, &cli, &stop, show_progress)
            });
        }
    }
    Ok(())
}

/// One run of the engine, with its progress bar and duration.
fn timed(
    source: &mut dyn engine::Source,
    lake: &Lake,
    cli: &Cli,
    stop: &AtomicBool,
    show_progress: bool,
) -> anyhow::Result<(Summary, Duration)> {
    let started = Instant::now();
    let bar = progress_bar(show_progress, source.unit());
    let summary = engine::run(source, lake, cli.batch_size as usize, stop, &bar)?;
    Ok((summary, started.elapsed()))
}

/// Runs `round` every `every` until SIGINT/SIGTERM, printing each summary;
/// a failed round is logged and retried at the next one.
fn repeat_every(
    every: Duration,
    stop: &AtomicBool,
    mut round: impl FnMut() -> anyhow::Result<(Summary, Duration)>,
) {
    while !stop.load(Ordering::Relaxed) {
        match round() {
            Ok((s, elapsed)) => print_summary(&s, elapsed),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "aggregation failed; retrying next round"
            ),
        }
        let until = Instant::now() + every;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    tracing::info!("stopped");
}

fn init_logs() {
    let filter = std::env::var("SNOWLINK_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_summary(s: &Summary, elapsed: Duration) {
    let mut line = format!(
        "aggregated {} events into {} files ({} bytes), rebuilt {} daily rollups in {:.2}s",
        s.events,
        s.files,
        s.bytes,
        s.rollups,
        elapsed.as_secs_f64()
    );
    if s.rejected > 0 {
        line.push_str(&format!("; {} invalid events skipped", s.rejected));
    }
    if s.duplicates > 0 {
        line.push_str(&format!("; {} resent duplicates dropped", s.duplicates));
    }
    println!("{line}");
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

fn progress_bar(show: bool, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

fn run_kafka(cli: &Cli, brokers: &str, lake: &Lake) -> anyhow::Result<()> {
    let settings = kafka::KafkaSettings {
        brokers: brokers.to_owned(),
        topic: cli.topic.clone(),
        group: cli.group.clone(),
        batch_wait: cli.batch_wait,
    };
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    let stop = stop_flag()?;
    match cli.every {
        None => {
            let mut source = kafka::KafkaSource::new(settings)?;
            let (s, elapsed) = timed(&mut source, lake, cli, &stop, show_progress)?;
            print_summary(&s, elapsed);
        }
        Some(every) => {
            tracing::info!(every = %humantime::format_duration(every), topic = %settings.topic, "aggregating from kafka periodically");
            repeat_every(every, &stop, || {
                let mut source = kafka::KafkaSource::new(settings.clone())?;
                timed(&mut source, lake, cli, &stop, show_progress)
            });
        }
    }
    Ok(())
}
