//! `snowlink-aggregate`: moves click events from the spool or from Kafka
//! into the lake's Delta tables, exactly once, from one worker or many.
//!
//! One engine ([`engine`]) does it for every source: a [`engine::Source`]
//! yields records with a stream and a position, the files of a batch are
//! uploaded, one Delta commit makes them visible together with each
//! stream's new position, and only then is the source acknowledged. The
//! sources are the local click spool ([`spool`]) and the partitions of the
//! clicks topic a worker holds in its consumer group ([`kafka`]).
//! [`convert`] moves a lake of the layout before Delta tables.

pub mod convert;
pub mod engine;
pub mod kafka;
pub mod spool;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use snowlink_lake::TableKind;
use snowlink_spool::ClickSpool;

use crate::engine::LakeIo;

/// Move click events into the lake's Delta tables, from the local spool or from Kafka.
///
/// Reads the click spool that `snowlink serve` writes under its data directory
/// (or, with --kafka-brokers, the partitions of the clicks topic this worker
/// is given in its consumer group), uploads the events to the `clicks` Delta
/// table (one Parquet file per batch, stream and day, sorted by code and time)
/// and makes each batch visible in one Delta commit that also records how far
/// each stream has been read. Then it rebuilds the `daily` and `dims` rollups
/// of complete days (before today, UTC) that are missing or stale. Safe to
/// kill at any moment: rerun it and every event is in the lake exactly once.
///
/// The lake is a folder, a file:// URL or s3://bucket/prefix. For S3 set
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for an
/// S3-compatible server, AWS_ENDPOINT_URL (path-style addressing). The store
/// must refuse to overwrite an object written with If-None-Match: * (S3 does);
/// this is checked at start.
///
/// Several workers may share a topic: start each with the same --group. Each
/// writes only the partitions it holds; a worker that stops or stalls loses
/// them to the others, and its late commits are refused.
///
/// Examples:
///   snowlink-aggregate --data-dir ./data --lake ./lake --once
///   snowlink-aggregate --data-dir ./data --lake ./lake --every 60s
///   snowlink-aggregate --kafka-brokers kafka:9092 --group lake --lake s3://clicks/lake --every 60s
///   snowlink-aggregate compact --lake s3://clicks/lake
///   snowlink-aggregate vacuum --lake s3://clicks/lake --retain 168h
///   snowlink-aggregate convert --lake ./old-lake
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

    /// The lake: a folder, a file:// URL or s3://bucket/prefix.
    #[arg(long, env = "SNOWLINK_LAKE", default_value = "./lake", global = true)]
    pub lake: String,

    /// Move everything there is now, then exit (the default).
    #[arg(long, conflicts_with = "every")]
    pub once: bool,

    /// Keep running: from the spool, a round at this interval; from Kafka,
    /// consume continuously and refresh the rollups at this interval
    /// (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub every: Option<Duration>,

    /// Most events per batch; each batch is one file per stream and day it
    /// spans, made visible in one commit.
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Consume click events from these Kafka brokers (host:port,...) instead
    /// of the local spool. Each assigned partition is read from the position
    /// the lake's `clicks` table records for it.
    #[arg(long, env = "SNOWLINK_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic of click events.
    #[arg(long, env = "SNOWLINK_KAFKA_TOPIC", default_value = snowlink_events::kafka::DEFAULT_TOPIC)]
    pub topic: String,

    /// Kafka consumer group the workers share (cooperative rebalancing).
    /// Its committed offsets report the lake's lag; the lake decides where
    /// reading resumes.
    #[arg(
        long,
        env = "SNOWLINK_KAFKA_GROUP",
        default_value = "snowlink-aggregate"
    )]
    pub group: String,

    /// A worker silent this long loses its partitions to the others.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "45s", value_name = "DURATION")]
    pub session_timeout: Duration,

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
    /// Merge each day's click files into one sorted file: a Delta optimize,
    /// one commit per day with the same rows (safe while workers append).
    Compact,
    /// Rebuild the rollups of every complete day that is missing or stale.
    Rollups,
    /// Delete the files no table version references (replaced by compaction
    /// or rollups, or uploaded by a worker killed before its commit) once
    /// they are older than --retain.
    Vacuum {
        /// Keep unreferenced files younger than this: a worker's upload in
        /// progress, or a reader's snapshot, may still need them.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "168h", value_name = "DURATION")]
        retain: Duration,
    },
    /// Convert a lake of the layout before Delta tables (plain Parquet
    /// folders and a _ledger) in place, once: every recorded click file is
    /// committed to the `clicks` table with its stream's position, and the
    /// rollups are rebuilt.
    Convert,
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
    /// Records the table already held (read again after a crash).
    pub skipped: u64,
    /// Events of batches whose commit was refused because another worker
    /// had moved their stream: read again from the table's position.
    pub refused: u64,
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
///
/// The same for the C allocator, which librdkafka uses: it decompresses
/// each fetched batch of messages into a buffer it grows with `realloc`,
/// past glibc's mmap threshold, so every batch mapped fresh pages (nearly
/// all of a consuming worker's page faults). Buffers up to 256 MiB now
/// come from the heap, and the heap is not trimmed below 1 GiB.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide tuning value; mimalloc reads options
        // atomically, and the call has no other effect.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tuning values of the C allocator; it is
    // called before the threads that allocate with it start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

impl Summary {
    /// Every record the run went through, whatever became of it.
    pub fn records(&self) -> u64 {
        self.events + self.duplicates + self.rejected + self.skipped + self.refused
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logs();
    if let Some(Command::Convert) = cli.command {
        return convert::run(&cli.lake);
    }
    let io = LakeIo::open(&cli.lake)?;
    let started = Instant::now();
    match &cli.command {
        Some(Command::Compact) => {
            let stats = io.block_on(async {
                let mut clicks = io.lake.table(TableKind::Clicks).await?;
                snowlink_lake::compact(&io.lake, &mut clicks, |date| {
                    tracing::info!(date, "compacting")
                })
                .await
            })?;
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
        Some(Command::Rollups) => {
            let n = engine::refresh_rollups(&io)?;
            println!(
                "rebuilt the rollups of {n} days in {:.2}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some(Command::Vacuum { retain }) => {
            let n = io.block_on(snowlink_lake::vacuum(&io.lake, *retain))?;
            println!(
                "deleted {n} unreferenced files older than {} in {:.2}s",
                humantime::format_duration(*retain),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some(Command::Convert) | None => {}
    }
    if let Some(brokers) = &cli.kafka_brokers {
        return run_kafka(&cli, brokers, &io);
    }
    let spool_path = snowlink_spool::path_in(&cli.data_dir);
    anyhow::ensure!(
        cli.data_dir.is_dir(),
        "the data directory {} does not exist (is it the one `snowlink serve` uses?)",
        cli.data_dir.display()
    );
    let open_spool = || -> anyhow::Result<spool::SpoolSource> {
        let spool = ClickSpool::open(&spool_path)
            .with_context(|| format!("opening {}", spool_path.display()))?;
        spool::SpoolSource::new(spool, &spool_path, &cli.lake)
    };
    let source = open_spool()?;
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    let stop = stop_flag()?;
    match cli.every {
        None => {
            let mut source = source;
            let s = timed(&mut source, &io, &cli, &stop, show_progress, None)?;
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
            drop(source);
            tracing::info!(every = %humantime::format_duration(every), "aggregating periodically");
            repeat_every(every, &stop, || {
                // Each round reads what is spooled when it starts.
                let mut source = open_spool()?;
                timed(&mut source, &io, &cli, &stop, show_progress, None)
            });
        }
    }
    Ok(())
}

/// One run of the engine, with its progress bar and duration.
fn timed(
    source: &mut dyn engine::Source,
    io: &LakeIo,
    cli: &Cli,
    stop: &AtomicBool,
    show_progress: bool,
    rollups_every: Option<Duration>,
) -> anyhow::Result<(Summary, Duration)> {
    let started = Instant::now();
    let bar = progress_bar(show_progress, source.unit());
    let summary = engine::run(
        source,
        io,
        engine::RunOptions {
            batch_size: cli.batch_size as usize,
            stop,
            bar: &bar,
            rollups_every,
        },
    )?;
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
    if s.refused > 0 {
        line.push_str(&format!(
            "; {} events of refused commits read again",
            s.refused
        ));
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

fn run_kafka(cli: &Cli, brokers: &str, io: &LakeIo) -> anyhow::Result<()> {
    let settings = kafka::KafkaSettings {
        brokers: brokers.to_owned(),
        topic: cli.topic.clone(),
        group: cli.group.clone(),
        batch_wait: cli.batch_wait,
        session_timeout: cli.session_timeout,
        until_end: cli.every.is_none(),
    };
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    let stop = stop_flag()?;
    match cli.every {
        None => {
            let mut source = kafka::KafkaSource::new(settings, io.clone())?;
            let (s, elapsed) = timed(&mut source, io, cli, &stop, show_progress, None)?;
            print_summary(&s, elapsed);
        }
        Some(every) => {
            tracing::info!(every = %humantime::format_duration(every), topic = %settings.topic, group = %settings.group, "consuming continuously");
            // One consumer for as long as it works: a new one would rejoin
            // the group and move partitions. After a failure (the store or
            // the brokers out of reach), the next one starts from the
            // table's positions.
            repeat_every(every, &stop, || {
                let mut source = kafka::KafkaSource::new(settings.clone(), io.clone())?;
                timed(&mut source, io, cli, &stop, show_progress, Some(every))
            });
        }
    }
    Ok(())
}
