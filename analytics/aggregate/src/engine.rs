//! The one exactly-once loop, whatever the source.
//!
//! A [`Source`] (the spool, or a Kafka topic) yields records with a stream
//! name and a position that only grows within the stream. The loop:
//! 1. cleans up after an interrupted run: every file whose range begins at
//!    or after its stream's recorded position was never recorded, and is
//!    deleted before anything is read;
//! 2. tells the source where each stream resumes (the ledger's positions);
//! 3. for each batch, writes one file per stream and UTC day, named
//!    `clicks-<stream>-<first>-<last>.parquet` (staged, fsynced, renamed,
//!    folder fsynced);
//! 4. only then records the new positions (and the origins seen, and the
//!    days to roll up) in the ledger, in one transaction;
//! 5. only then acknowledges the batch to the source, which may forget it
//!    (the spool releases its rows, Kafka gets the group's offsets).
//!
//! Killed before 4, the next run deletes the files of 3 and reads the same
//! records again. Killed between 4 and 5, the source offers records the
//! ledger already holds, and they are skipped by position. Daily rollups are
//! rebuilt for every day the ledger marks, after the batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arrow_array::RecordBatch;
use indicatif::ProgressBar;
use snowlink_events::ClickEvent;
use snowlink_lake::{parse_range, write_sorted_clicks, Lake};

use crate::ledger::{Ledger, Seen};
use crate::Summary;

/// One event as a source delivers it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The stream it belongs to; also the source part of its file's name.
    pub stream: String,
    /// Its place in the stream; grows with every record of the stream.
    pub position: i64,
    /// Who first sent it and its sequence there, when a sender may resend
    /// it under another position (the Kafka forwarder).
    pub origin: Option<(String, i64)>,
    /// The event's bytes (a spool row or JSON), or `None` when a message
    /// had none.
    pub payload: Option<Vec<u8>>,
}

/// Where click events come from. `Send`: the engine reads, parses and
/// acknowledges on one thread while it writes on another.
pub trait Source: Send {
    /// What the progress output calls a record ("events", "messages").
    fn unit(&self) -> &'static str {
        "events"
    }

    /// Called once the lake is locked and clean: position the streams where
    /// the ledger says they resume.
    fn resume(&mut self, lake: &Lake, ledger: &mut Ledger) -> anyhow::Result<()>;

    /// How many records are left to read, when known.
    fn remaining(&self) -> Option<u64> {
        None
    }

    /// The next records, at most `max`. An empty batch means nothing is
    /// there now.
    fn poll(&mut self, max: usize, stop: &AtomicBool) -> anyhow::Result<Vec<Record>>;

    /// True when the run has read everything it set out to read.
    fn done(&self) -> bool;

    /// The ledger now records everything before `next` (per stream): the
    /// source may forget it.
    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()>;
}

/// Moves records from `source` into the lake until the source is done or
/// `stop` is set, then rebuilds the marked rollups.
pub fn run(
    source: &mut dyn Source,
    lake: &Lake,
    batch_size: usize,
    stop: &AtomicBool,
    bar: &ProgressBar,
) -> anyhow::Result<Summary> {
    let _lock = lake.lock()?;
    let mut ledger = Ledger::open(lake)?;
    let removed = remove_unrecorded(lake, &ledger)?;
    if removed > 0 {
        tracing::warn!(removed, "removed files an interrupted run did not record");
    }
    source.resume(lake, &mut ledger)?;
    if let Some(n) = source.remaining() {
        bar.set_length(n);
    }
    let mut claimed = Claimed {
        next: ledger.positions()?,
        seen: ledger.seen()?,
        rejected: 0,
    };
    let mut summary = Summary::default();
    // Two threads, each batch moving through them in order: while this
    // thread writes, syncs and records batch N, a second one acknowledges
    // batch N-1 to the source (the spool deletes its rows), then reads
    // batch N+1, parses it, and sorts it into Arrow batches per file. Every
    // batch is still written, recorded and acknowledged in the order it was
    // read, and acknowledged only once recorded.
    let mut pending: Option<Prepared> = None;
    let mut unacknowledged: Option<BTreeMap<String, i64>> = None;
    loop {
        let more = !source.done() && !stop.load(Ordering::Relaxed);
        if !more && pending.is_none() {
            break;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let recorded_before = unacknowledged.take();
        let (fetched, written) = std::thread::scope(|s| {
            let source = &mut *source;
            let claimed = &mut claimed;
            let fetching = s.spawn(move || -> anyhow::Result<Option<Prepared>> {
                if let Some(recorded) = recorded_before {
                    source.acknowledge(&recorded)?;
                }
                if !more {
                    return Ok(None);
                }
                let batch = source.poll(batch_size, stop)?;
                if batch.is_empty() {
                    return Ok(None);
                }
                let parsed = parse_all(&batch, now_ms);
                prepare(batch, parsed, claimed).map(Some)
            });
            let written = pending.take().map(|prepared| {
                let before = summary.records();
                write_prepared(lake, &mut ledger, prepared, &mut summary)
                    .map(|recorded| (recorded, before))
            });
            (fetching.join(), written)
        });
        let fetched = fetched.map_err(|_| anyhow::anyhow!("reading a batch panicked"))?;
        if let Some(written) = written {
            let (recorded, before) = written?;
            unacknowledged = Some(recorded);
            bar.inc(summary.records() - before);
        }
        pending = fetched?;
    }
    if let Some(recorded) = unacknowledged {
        source.acknowledge(&recorded)?;
    }
    bar.finish_and_clear();
    summary.rollups += rebuild_rollups(lake, &ledger)?;
    Ok(summary)
}

/// Rebuilds the rollup of every day the ledger marks, unmarking each after.
fn rebuild_rollups(lake: &Lake, ledger: &Ledger) -> anyhow::Result<u64> {
    let mut rebuilt = 0;
    for day in ledger.dirty_days()? {
        let stats = snowlink_lake::rebuild_daily(lake, &day)?;
        tracing::info!(
            day,
            codes = stats.codes,
            clicks = stats.clicks,
            "daily rollup rebuilt"
        );
        ledger.clear_dirty_day(&day)?;
        rebuilt += 1;
    }
    Ok(rebuilt)
}

/// Invalid records logged one by one per run; the rest are counted in the
/// summary.
const REJECTS_LOGGED: u64 = 20;

/// A record's payload as an event, or why it is not one.
type Parsed = Result<ClickEvent, snowlink_events::InvalidEvent>;

/// Parses every record of a batch. Validated before anything else is
/// believed of it: a forged record must not move an origin's high-water
/// mark (which would drop that spool's later events as resends), nor put an
/// absurd time into the lake.
fn parse_all(batch: &[Record], now_ms: i64) -> Vec<Parsed> {
    batch
        .iter()
        .map(|r| match r.payload.as_deref() {
            Some(bytes) => ClickEvent::parse_bytes(bytes, now_ms),
            None => Err(snowlink_events::InvalidEvent(
                "the record has no payload".into(),
            )),
        })
        .collect()
}

/// What the batches read so far claim: each stream's next position and
/// each origin's high-water mark, as they will be once those batches are
/// recorded. Kept by the reading thread, one batch ahead of the ledger.
struct Claimed {
    next: HashMap<String, i64>,
    seen: Seen,
    /// Invalid records met so far in the run.
    rejected: u64,
}

/// One batch, filtered and sorted into Arrow batches per file, ready to
/// write and record.
struct Prepared {
    /// Per stream, the first and last position the batch covers.
    ranges: BTreeMap<String, (i64, i64)>,
    /// Per stream and UTC day: the file's rows, in the lake's order.
    files: Vec<(String, String, Vec<RecordBatch>)>,
    seen_now: Seen,
    days: Vec<String>,
    rejected: u64,
    duplicates: u64,
    skipped: u64,
}

/// Filters one batch (its records and what [`parse_all`] made of them),
/// groups it by stream and day, and sorts each group into batches. Moves
/// `claimed` past it.
fn prepare(
    batch: Vec<Record>,
    parsed: Vec<Parsed>,
    claimed: &mut Claimed,
) -> anyhow::Result<Prepared> {
    let mut ranges: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut groups: BTreeMap<(String, i64), Vec<ClickEvent>> = BTreeMap::new();
    let mut seen_now = Seen::new();
    let (mut rejected, mut duplicates, mut skipped) = (0u64, 0u64, 0u64);
    for (r, event) in batch.into_iter().zip(parsed) {
        if r.position < claimed.next.get(&r.stream).copied().unwrap_or(i64::MIN) {
            // Already in the lake: the source was not acknowledged in time.
            skipped += 1;
            continue;
        }
        // Looked up before inserting: no copy of the stream's name per record.
        match ranges.get_mut(&r.stream) {
            Some(range) => {
                range.0 = range.0.min(r.position);
                range.1 = range.1.max(r.position);
            }
            None => {
                ranges.insert(r.stream.clone(), (r.position, r.position));
            }
        }
        let event = match event {
            Ok(e) => e,
            Err(why) => {
                if claimed.rejected < REJECTS_LOGGED {
                    tracing::error!(
                        stream = r.stream,
                        position = r.position,
                        reason = %why,
                        "skipping a record that is not a valid click event"
                    );
                }
                rejected += 1;
                claimed.rejected += 1;
                continue;
            }
        };
        if let Some((origin, seq)) = r.origin {
            let key = (r.stream.clone(), origin);
            let high = seen_now
                .get(&key)
                .or_else(|| claimed.seen.get(&key))
                .copied()
                .unwrap_or(i64::MIN);
            if seq <= high {
                duplicates += 1;
                continue;
            }
            seen_now.insert(key, seq);
        }
        // Grouped by the day's number; its `YYYY-MM-DD` is made once per file.
        groups
            .entry((r.stream, event.ts.div_euclid(86_400_000)))
            .or_default()
            .push(event);
    }
    let mut files = Vec::with_capacity(groups.len());
    let mut days: Vec<String> = Vec::new();
    for ((stream, day), events) in groups {
        let day = snowlink_events::date_of_ms(day * 86_400_000);
        let batches = snowlink_lake::sorted_batches(&events)?;
        if !days.contains(&day) {
            days.push(day.clone());
        }
        files.push((stream, day, batches));
    }
    for (stream, (_, last)) in &ranges {
        claimed.next.insert(stream.clone(), last + 1);
    }
    claimed
        .seen
        .extend(seen_now.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(Prepared {
        ranges,
        files,
        seen_now,
        days,
        rejected,
        duplicates,
        skipped,
    })
}

/// Writes one prepared batch and records it; returns the recorded next
/// positions of the streams it touched.
fn write_prepared(
    lake: &Lake,
    ledger: &mut Ledger,
    prepared: Prepared,
    summary: &mut Summary,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let Prepared {
        ranges,
        files,
        seen_now,
        days,
        rejected,
        duplicates,
        skipped,
    } = prepared;
    summary.rejected += rejected;
    summary.duplicates += duplicates;
    summary.skipped += skipped;
    for (stream, (first, _)) in &ranges {
        ledger.ensure_stream(stream, *first)?;
    }
    for (stream, day, batches) in files {
        let (first, last) = ranges[&stream];
        let file = write_sorted_clicks(lake, &day, Some(&stream), first, last, &batches)?;
        tracing::debug!(path = %file.path.display(), rows = file.rows, bytes = file.bytes, "wrote");
        summary.events += file.rows as u64;
        summary.files += 1;
        summary.bytes += file.bytes;
    }
    let recorded: BTreeMap<String, i64> = ranges
        .into_iter()
        .map(|(stream, (_, last))| (stream, last + 1))
        .collect();
    ledger.record(&recorded, &seen_now, &days)?;
    Ok(recorded)
}

/// Deletes every file the ledger does not record: what a run killed
/// between writing a batch and recording it left behind. Refuses to touch
/// the lake when it holds files of a stream the ledger has never seen (a
/// lost or replaced ledger). Files without a stream in their name predate
/// the ledger and are whole.
pub fn remove_unrecorded(lake: &Lake, ledger: &Ledger) -> anyhow::Result<usize> {
    let next = ledger.positions()?;
    remove_click_files(lake, |path, stream, first| {
        let Some(stream) = stream else {
            return Ok(false);
        };
        let Some(&recorded) = next.get(stream) else {
            anyhow::bail!(
                "{} belongs to stream {stream}, but the lake's ledger ({}) has no progress for it: \
                 refusing to touch the lake (restore the ledger, or use a new lake)",
                path.display(),
                crate::ledger::path(lake).display()
            );
        };
        Ok(first >= recorded)
    })
}

/// Deletes every click file (named by its range) for which
/// `doomed(path, stream, first)` is true, and syncs each folder it changed.
pub(crate) fn remove_click_files(
    lake: &Lake,
    mut doomed: impl FnMut(&std::path::Path, Option<&str>, i64) -> anyhow::Result<bool>,
) -> anyhow::Result<usize> {
    let mut removed = 0;
    for date in lake.click_dates()? {
        let mut touched = false;
        for path in lake.click_files(&date)? {
            let Some((stream, first, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_range)
            else {
                continue;
            };
            if doomed(&path, stream.as_deref(), first)? {
                tracing::warn!(path = %path.display(), "removing a file an interrupted run did not record");
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                removed += 1;
                touched = true;
            }
        }
        if touched {
            let dir = lake.clicks_dir(&date);
            std::fs::File::open(&dir)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
    }
    Ok(removed)
}
