//! `snowlink-aggregate`: moves click events from the spool into the lake.
//!
//! Exactly once, by construction:
//! 1. a batch of spooled events `first..=last` is recorded as pending;
//! 2. its events are written, one file per UTC day, to names derived from
//!    `first..=last` (staged, fsynced, renamed, folder fsynced);
//! 3. only then, in one transaction, are the rows released and the
//!    checkpoint advanced to `last`.
//!
//! Killed before 3, the next run finds the pending batch and writes the same
//! range to the same names, replacing whatever part was written. Killed after
//! 3, the rows are gone from the spool and the files are whole. Daily rollups
//! are rebuilt for every day that received events, tracked durably so a crash
//! between the checkpoint and the rollup is repaired on the next run.

pub mod kafka;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use snowlink_events::ClickEvent;
use snowlink_lake::{parse_range, write_clicks, Lake};
use snowlink_store::ClickSpool;

/// Move click events into the Parquet lake, from the local spool or from Kafka.
///
/// Reads the click spool that `snowlink serve` writes under its data directory
/// (or, with --kafka-brokers, consumes the clicks topic as a consumer group),
/// writes `LAKE/clicks/date=YYYY-MM-DD/*.parquet` (one file per batch and day,
/// sorted by code and time) and rebuilds `LAKE/daily/date=YYYY-MM-DD/daily.parquet`
/// for each day that received events. Safe to kill at any moment: rerun it and
/// every event is in the lake exactly once.
///
/// Examples:
///   snowlink-aggregate --data-dir ./data --lake ./lake --once
///   snowlink-aggregate --data-dir ./data --lake ./lake --every 60s
///   snowlink-aggregate --kafka-brokers kafka:9092 --group lake --lake ./lake --once
///   snowlink-aggregate compact --lake ./lake
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
    /// of the local spool. Offsets are committed only after the Parquet files
    /// holding them are durable; --once stops at the end of each partition
    /// as seen at start.
    #[arg(long, env = "SNOWLINK_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic of click events.
    #[arg(long, env = "SNOWLINK_KAFKA_TOPIC", default_value = snowlink_events::kafka::DEFAULT_TOPIC)]
    pub topic: String,

    /// Kafka consumer group; use one group per lake.
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
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logs();
    let lake = Lake::new(&cli.lake);
    if let Some(Command::Compact) = cli.command {
        anyhow::ensure!(
            cli.lake.is_dir(),
            "the lake {} does not exist",
            cli.lake.display()
        );
        let started = Instant::now();
        let _lock = lake.lock()?;
        // Only what the ledger records may be merged.
        let removed = kafka::remove_unrecorded_before_compaction(&lake)?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed files an interrupted Kafka run did not record"
            );
        }
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
    if let Some(brokers) = &cli.kafka_brokers {
        return run_kafka(&cli, brokers, &lake);
    }
    let spool_path = cli.data_dir.join("spool.db");
    anyhow::ensure!(
        cli.data_dir.is_dir(),
        "the data directory {} does not exist (is it the one `snowlink serve` uses?)",
        cli.data_dir.display()
    );
    let mut spool = ClickSpool::open(&spool_path)
        .with_context(|| format!("opening {}", spool_path.display()))?;
    // The spool has one consumer: with Kafka forwarding on, its clicks go to
    // Kafka and must be aggregated from there.
    if let Err(e) = spool.claim(snowlink_store::CONSUMER_LAKE) {
        anyhow::bail!(
            "{e}: {} is forwarded to Kafka by `snowlink serve --kafka-brokers`, and two consumers \
             would split and duplicate clicks. Aggregate from Kafka instead \
             (snowlink-aggregate --kafka-brokers HOST:PORT --lake {})",
            spool_path.display(),
            cli.lake.display()
        );
    }
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    match cli.every {
        None => {
            let s = run_once(&mut spool, &lake, cli.batch_size as usize, show_progress)?;
            print_summary(&s.0, s.1);
            if cli.release_spool {
                spool
                    .release()
                    .with_context(|| format!("releasing {}", spool_path.display()))?;
                println!(
                    "released {}: another consumer may drain it now",
                    spool_path.display()
                );
            }
        }
        Some(every) => {
            let stop = stop_flag()?;
            tracing::info!(every = %humantime::format_duration(every), "aggregating periodically");
            repeat_every(every, &stop, || {
                run_once(&mut spool, &lake, cli.batch_size as usize, show_progress)
            });
        }
    }
    Ok(())
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

/// Rebuilds the rollup of every day in `days`, calling `done` after each so
/// the day is no longer marked.
pub(crate) fn rebuild_rollups(
    lake: &Lake,
    days: Vec<String>,
    mut done: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut rebuilt = 0;
    for day in days {
        let stats = snowlink_lake::rebuild_daily(lake, &day)?;
        tracing::info!(
            day,
            codes = stats.codes,
            clicks = stats.clicks,
            "daily rollup rebuilt"
        );
        done(&day)?;
        rebuilt += 1;
    }
    Ok(rebuilt)
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
    let source = kafka::KafkaSource {
        brokers: brokers.to_owned(),
        topic: cli.topic.clone(),
        group: cli.group.clone(),
        batch_size: cli.batch_size as usize,
        batch_wait: cli.batch_wait,
    };
    let show_progress = !cli.no_progress && std::io::stderr().is_terminal();
    let stop = stop_flag()?;
    match cli.every {
        None => {
            let started = Instant::now();
            let bar = progress_bar(show_progress, "messages");
            let s = kafka::run(&source, lake, true, &stop, &bar)?;
            print_summary(&s, started.elapsed());
        }
        Some(every) => {
            tracing::info!(every = %humantime::format_duration(every), topic = %source.topic, "aggregating from kafka periodically");
            repeat_every(every, &stop, || {
                let started = Instant::now();
                let bar = progress_bar(show_progress, "messages");
                kafka::run(&source, lake, true, &stop, &bar).map(|s| (s, started.elapsed()))
            });
        }
    }
    Ok(())
}

/// Moves everything spooled into the lake and rebuilds the touched rollups.
pub fn run_once(
    spool: &mut ClickSpool,
    lake: &Lake,
    batch_size: usize,
    show_progress: bool,
) -> anyhow::Result<(Summary, Duration)> {
    let started = Instant::now();
    let _lock = lake.lock()?;
    let mut summary = Summary::default();
    let bar = if show_progress {
        let bar = ProgressBar::new(spool.backlog()? as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    if let Some((first, last)) = spool.progress()?.pending {
        tracing::warn!(
            first,
            last,
            "finishing a batch interrupted by an earlier run"
        );
        let rows = spool.read_range(first, last)?;
        write_batch(spool, lake, first, last, rows, true, &mut summary)?;
        bar.inc(summary.events);
    }
    loop {
        let checkpoint = spool.progress()?.checkpoint;
        let rows = spool.read_after(checkpoint, batch_size)?;
        let (Some(&(first, _)), Some(&(last, _))) = (rows.first(), rows.last()) else {
            break;
        };
        spool.set_pending(first, last)?;
        let before = summary.events;
        write_batch(spool, lake, first, last, rows, false, &mut summary)?;
        bar.inc(summary.events - before);
    }
    bar.finish_and_clear();

    let days = spool.dirty_days()?;
    summary.rollups += rebuild_rollups(lake, days, |day| Ok(spool.clear_dirty_day(day)?))?;
    Ok((summary, started.elapsed()))
}

/// Writes spool rows `first..=last` to the lake, then releases them.
fn write_batch(
    spool: &mut ClickSpool,
    lake: &Lake,
    first: i64,
    last: i64,
    rows: Vec<(i64, String)>,
    recovering: bool,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut by_day: std::collections::BTreeMap<String, Vec<ClickEvent>> = Default::default();
    for (seq, json) in rows {
        match ClickEvent::from_json(&json) {
            Ok(e) => by_day.entry(e.date()).or_default().push(e),
            Err(e) => {
                tracing::error!(seq, error = %e, "skipping a spool row that is not a click event");
                summary.rejected += 1;
            }
        }
    }
    let days: Vec<String> = by_day.keys().cloned().collect();
    for (day, mut events) in by_day {
        summary.events += events.len() as u64;
        if recovering && already_compacted(lake, &day, first, last)? {
            continue;
        }
        let file = write_clicks(lake, &day, None, first, last, &mut events)?;
        tracing::debug!(path = %file.path.display(), rows = file.rows, bytes = file.bytes, "wrote");
        summary.files += 1;
        summary.bytes += file.bytes;
    }
    spool.complete(last, &days)?;
    Ok(())
}

/// True when a compacted file of `day` already holds `first..=last`: the
/// interrupted batch reached the lake and was merged since.
fn already_compacted(lake: &Lake, day: &str, first: i64, last: i64) -> anyhow::Result<bool> {
    Ok(lake.click_files(day)?.iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_range)
            .is_some_and(|(src, f, l)| {
                src.is_none() && f <= first && last <= l && (f, l) != (first, last)
            })
    }))
}
