//! The one exactly-once loop, whatever the source.
//!
//! A [`Source`] (the spool, or the partitions of a Kafka topic this worker
//! holds) yields records with a stream name and a position that only grows
//! within the stream. The `clicks` Delta table records, per stream, the
//! position to read next, as a Delta transaction identifier (`txn`, app id
//! = the stream's name). The loop:
//! 1. asks the table where each stream resumes, and the source reads from
//!    there;
//! 2. for each batch, uploads one file per stream and UTC day (unique
//!    names; invisible until committed);
//! 3. commits the files and each stream's new position in one Delta commit,
//!    refused unless each stream's recorded position is still the one the
//!    batch started from (checked on the latest version, and by Delta's own
//!    conflict check against any commit of the same app id that lands in
//!    between);
//! 4. only then acknowledges the batch to the source, which may forget it
//!    (the spool releases its rows, Kafka gets the group's offsets).
//!
//! Killed before 3, the uploaded files are referenced by no commit: no
//! reader sees them, vacuum deletes them, and the next run reads the same
//! records again. Killed between 3 and 4, the source offers records the
//! table already holds, and they are skipped by position. A refused commit
//! (another worker took the stream and moved it) drops the batch; the
//! source goes back to the table's positions. Records a sender resent
//! (same origin, sequence not above the highest written) are dropped; the
//! highest sequence per stream and origin is recorded in the same commit
//! (`txn` app id `seen/<stream>/<origin>`). Rollups of complete days are
//! refreshed after the batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use indicatif::ProgressBar;
use snowlink_events::ClickEvent;
use snowlink_lake::{Advance, Change, Lake, LakeError, TableKind};

use crate::Summary;

/// One event as a source delivers it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The stream it belongs to; also the table's app id for its position.
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

/// The lake as the aggregate writes it: the lake, its `clicks` table, and
/// the runtime its I/O runs on. Cheap to clone; sources keep one to look
/// positions up when they are given new streams.
#[derive(Clone)]
pub struct LakeIo {
    pub lake: Lake,
    pub runtime: Arc<tokio::runtime::Runtime>,
}

impl LakeIo {
    /// Opens the lake for writing: the layout is this one, the store
    /// refuses overwrites of conditional writes, and the tables exist.
    pub fn open(spec: &str) -> anyhow::Result<LakeIo> {
        let lake = Lake::open(spec)?;
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        );
        runtime.block_on(async {
            lake.check_layout().await?;
            lake.check_conditional_writes().await?;
            for kind in TableKind::ALL {
                lake.table(kind).await?;
            }
            Ok::<_, LakeError>(())
        })?;
        Ok(LakeIo { lake, runtime })
    }

    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Where each stream resumes, per the latest version of `clicks`.
    pub fn positions(&self, streams: &[String]) -> anyhow::Result<HashMap<String, Option<i64>>> {
        self.recorded(streams.iter().map(String::as_str))
    }

    /// The latest recorded versions of some app ids of `clicks`.
    fn recorded<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<HashMap<String, Option<i64>>> {
        self.block_on(async {
            let table = self.lake.table(TableKind::Clicks).await?;
            let recorded = snowlink_lake::recorded(&table, ids).await?;
            Ok::<_, LakeError>(recorded.into_iter().collect())
        })
        .map_err(Into::into)
    }
}

/// The app id under which `clicks` records the highest sequence of an
/// origin (a forwarding spool) written in a stream: a record at or below
/// it is a resend, and is dropped.
fn seen_app_id(stream: &str, origin: &str) -> String {
    format!("seen/{stream}/{origin}")
}

/// The highest sequence met per stream and origin. Two levels, so that a
/// record is looked up by reference: there are few streams and few
/// origins, and many records.
#[derive(Default)]
struct Seen(HashMap<String, HashMap<String, i64>>);

impl Seen {
    fn get(&self, stream: &str, origin: &str) -> Option<i64> {
        self.0.get(stream)?.get(origin).copied()
    }

    fn set(&mut self, stream: &str, origin: &str, seq: i64) {
        let origins = match self.0.get_mut(stream) {
            Some(o) => o,
            None => self.0.entry(stream.to_owned()).or_default(),
        };
        match origins.get_mut(origin) {
            Some(at) => *at = seq,
            None => {
                origins.insert(origin.to_owned(), seq);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str, i64)> {
        self.0
            .iter()
            .flat_map(|(s, o)| o.iter().map(move |(o, q)| (s.as_str(), o.as_str(), *q)))
    }
}

/// Where click events come from. `Send`: the engine reads, parses and
/// acknowledges on one thread while it writes on another.
pub trait Source: Send {
    /// What the progress output calls a record ("events", "messages").
    fn unit(&self) -> &'static str {
        "events"
    }

    /// Called once, before any poll: position the streams where the table
    /// says they resume, and return those positions (`None`: never
    /// recorded).
    fn resume(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>>;

    /// How many records are left to read, when known.
    fn remaining(&self) -> Option<u64> {
        None
    }

    /// The next records, at most `max`. An empty batch means nothing is
    /// there now.
    fn poll(&mut self, max: usize, stop: &AtomicBool) -> anyhow::Result<Vec<Record>>;

    /// Streams given to this source since the last call, each positioned
    /// where the table records it (a Kafka partition assigned to this
    /// worker).
    fn assigned(&mut self) -> Vec<(String, Option<i64>)> {
        Vec::new()
    }

    /// True when the run has read everything it set out to read.
    fn done(&self) -> bool;

    /// The table now records everything before `next` (per stream): the
    /// source may forget it.
    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()>;

    /// A commit was refused: another writer moved one of the streams. Go
    /// back to the table's positions for every stream this source holds,
    /// dropping whatever was read past them, and return those positions.
    fn resync(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>>;
}

/// A place in the write path where a test may hold the process, to kill
/// or stall it there: `upload` (one file of a batch uploaded, the others
/// not), `commit` (every file uploaded, nothing committed) or `committed`
/// (committed, not acknowledged). With `SNOWLINK_AGGREGATE_PAUSE_AT` the
/// process waits there for ever; with `SNOWLINK_AGGREGATE_STOP_AT` it
/// stops itself there once (SIGSTOP), to go on when sent SIGCONT.
fn pause_point(at: &str) {
    static WANTED: std::sync::OnceLock<(Option<String>, Option<String>)> =
        std::sync::OnceLock::new();
    static STOPPED: AtomicBool = AtomicBool::new(false);
    let (pause, stop) = WANTED.get_or_init(|| {
        (
            std::env::var("SNOWLINK_AGGREGATE_PAUSE_AT").ok(),
            std::env::var("SNOWLINK_AGGREGATE_STOP_AT").ok(),
        )
    });
    if pause.as_deref() == Some(at) {
        eprintln!("paused at {at}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if stop.as_deref() == Some(at) && !STOPPED.swap(true, Ordering::SeqCst) {
        eprintln!("stopping at {at}");
        // SAFETY: raising a signal on this process has no memory effects.
        unsafe { libc::raise(libc::SIGSTOP) };
        eprintln!("continuing after {at}");
    }
}

/// How the engine runs.
pub struct RunOptions<'a> {
    pub batch_size: usize,
    pub stop: &'a AtomicBool,
    pub bar: &'a ProgressBar,
    /// Refresh the rollups of complete days this often while the source
    /// is not done (a long-running worker), besides once at the end.
    pub rollups_every: Option<Duration>,
}

/// Moves records from `source` into the lake until the source is done or
/// `stop` is set, then refreshes the rollups of complete days.
pub fn run(source: &mut dyn Source, io: &LakeIo, opts: RunOptions<'_>) -> anyhow::Result<Summary> {
    let RunOptions {
        batch_size,
        stop,
        bar,
        rollups_every,
    } = opts;
    let mut clicks = io.block_on(io.lake.table(TableKind::Clicks))?;
    let mut claimed = Claimed {
        next: source.resume(io)?,
        seen: Seen::default(),
        rejected: 0,
    };
    if let Some(n) = source.remaining() {
        bar.set_length(n);
    }
    let mut summary = Summary::default();
    let mut last_rollups = Instant::now();
    // Two threads, each batch moving through them in order: while this
    // thread uploads and commits batch N, a second one acknowledges batch
    // N-1 to the source, then reads batch N+1, parses it, and sorts it into
    // Arrow batches per file. Every batch is still committed and
    // acknowledged in the order it was read, and acknowledged only once
    // committed.
    let mut pending: Option<Prepared> = None;
    let mut unacknowledged: Option<BTreeMap<String, i64>> = None;
    let mut refused = false;
    loop {
        let more = !source.done() && !stop.load(Ordering::Relaxed);
        if !more && pending.is_none() {
            break;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let recorded_before = unacknowledged.take();
        let resync = std::mem::take(&mut refused);
        let (fetched, written) = std::thread::scope(|s| {
            let source = &mut *source;
            let claimed = &mut claimed;
            let fetching = s.spawn(move || -> anyhow::Result<Option<Prepared>> {
                if let Some(recorded) = recorded_before {
                    source.acknowledge(&recorded)?;
                }
                if resync {
                    claimed.next = source.resync(io)?;
                    claimed.seen = Seen::default();
                }
                claimed.take_assigned(source);
                if !more {
                    return Ok(None);
                }
                let batch = source.poll(batch_size, stop)?;
                // Partitions assigned during the poll come before their
                // records.
                claimed.take_assigned(source);
                if batch.is_empty() {
                    return Ok(None);
                }
                let parsed = parse_all(&batch, now_ms);
                claimed.look_up_origins(io, &batch)?;
                prepare(batch, parsed, claimed).map(Some)
            });
            let written = pending.take().map(|prepared| {
                let before = summary.records();
                write_prepared(io, &mut clicks, prepared, &mut summary)
                    .map(|recorded| (recorded, before))
            });
            (fetching.join(), written)
        });
        let fetched = fetched.map_err(|_| anyhow::anyhow!("reading a batch panicked"))?;
        if let Some(written) = written {
            let (recorded, before) = written?;
            match recorded {
                Some(recorded) => unacknowledged = Some(recorded),
                None => refused = true,
            }
            bar.inc(summary.records().saturating_sub(before));
        }
        pending = fetched?;
        if refused {
            // What was read after the refused batch starts from positions
            // that are no longer true: read it again from the table's.
            pending = None;
        }
        if rollups_every.is_some_and(|every| last_rollups.elapsed() >= every) {
            summary.rollups += refresh_rollups(io)?;
            last_rollups = Instant::now();
        }
    }
    if let Some(recorded) = unacknowledged {
        source.acknowledge(&recorded)?;
    }
    bar.finish_and_clear();
    summary.rollups += refresh_rollups(io)?;
    Ok(summary)
}

/// Rebuilds the rollups of complete days (before today, UTC) that are
/// missing or stale.
pub fn refresh_rollups(io: &LakeIo) -> anyhow::Result<u64> {
    let today = snowlink_events::date_of_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let rebuilt = io.block_on(async {
        let lake = &io.lake;
        let mut clicks = lake.table(TableKind::Clicks).await?;
        let mut daily = lake.table(TableKind::Daily).await?;
        let mut dims = lake.table(TableKind::Dims).await?;
        snowlink_lake::refresh_rollups(lake, &mut clicks, &mut daily, &mut dims, &today).await
    })?;
    Ok(rebuilt.len() as u64)
}

/// Invalid records logged one by one per run; the rest are counted in the
/// summary.
const REJECTS_LOGGED: u64 = 20;

/// A record's payload as an event, or why it is not one.
type Parsed = Result<ClickEvent, snowlink_events::InvalidEvent>;

/// Parses every record of a batch. Validated before anything else is
/// believed of it: a forged record must not put an absurd time into the
/// lake.
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

/// What the batches read so far claim: each stream's next position as it
/// will be once those batches are committed (`None`: never recorded). Kept
/// by the reading thread, one batch ahead of the table.
struct Claimed {
    next: HashMap<String, Option<i64>>,
    /// Per stream and origin, the highest sequence read so far (looked up
    /// in the table the first time a pair is met).
    seen: Seen,
    /// Invalid records met so far in the run.
    rejected: u64,
}

impl Claimed {
    /// Takes the streams newly given to the source, at the table's
    /// positions.
    fn take_assigned(&mut self, source: &mut dyn Source) {
        for (stream, at) in source.assigned() {
            self.seen.0.remove(&stream);
            self.next.insert(stream, at);
        }
    }

    /// Looks up the recorded sequence of every (stream, origin) of `batch`
    /// not met before.
    fn look_up_origins(&mut self, io: &LakeIo, batch: &[Record]) -> anyhow::Result<()> {
        let mut missing: Vec<(&str, &str)> = Vec::new();
        for r in batch {
            if let Some((origin, _)) = &r.origin {
                let key = (r.stream.as_str(), origin.as_str());
                if self.seen.get(key.0, key.1).is_none() && !missing.contains(&key) {
                    missing.push(key);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = missing.iter().map(|(s, o)| seen_app_id(s, o)).collect();
        let recorded = io.recorded(ids.iter().map(String::as_str))?;
        for ((stream, origin), id) in missing.into_iter().zip(ids) {
            let at = recorded.get(&id).copied().flatten().unwrap_or(i64::MIN);
            self.seen.set(stream, origin, at);
        }
        Ok(())
    }
}

/// One batch, filtered and sorted into Arrow batches per file, ready to
/// upload and commit.
struct Prepared {
    /// Per stream, the recorded position the batch starts from, and the
    /// first and last position it covers.
    ranges: BTreeMap<String, (Option<i64>, i64, i64)>,
    /// Per stream and UTC day: the file's rows, in the lake's order.
    files: Vec<(String, String, Vec<RecordBatch>)>,
    /// The highest origin sequences the batch writes, per (stream, origin).
    seen_now: Seen,
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
    let mut ranges: BTreeMap<String, (Option<i64>, i64, i64)> = BTreeMap::new();
    let mut groups: BTreeMap<(String, i64), Vec<ClickEvent>> = BTreeMap::new();
    let mut seen_now = Seen::default();
    let (mut rejected, mut duplicates, mut skipped) = (0u64, 0u64, 0u64);
    for (r, event) in batch.into_iter().zip(parsed) {
        let recorded = claimed.next.get(&r.stream).copied().flatten();
        if r.position < recorded.unwrap_or(i64::MIN) {
            // Already in the table: the source was not acknowledged in time.
            skipped += 1;
            continue;
        }
        // Looked up before inserting: no copy of the stream's name per record.
        match ranges.get_mut(&r.stream) {
            Some(range) => {
                range.1 = range.1.min(r.position);
                range.2 = range.2.max(r.position);
            }
            None => {
                ranges.insert(r.stream.clone(), (recorded, r.position, r.position));
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
        if let Some((origin, seq)) = &r.origin {
            let high = seen_now
                .get(&r.stream, origin)
                .or_else(|| claimed.seen.get(&r.stream, origin))
                .unwrap_or(i64::MIN);
            if *seq <= high {
                duplicates += 1;
                continue;
            }
            seen_now.set(&r.stream, origin, *seq);
        }
        // Grouped by the day's number; its `YYYY-MM-DD` is made once per file.
        groups
            .entry((r.stream, event.ts.div_euclid(86_400_000)))
            .or_default()
            .push(event);
    }
    let mut files = Vec::with_capacity(groups.len());
    for ((stream, day), events) in groups {
        let day = snowlink_events::date_of_ms(day * 86_400_000);
        let batches = snowlink_lake::sorted_batches(&events)?;
        files.push((stream, day, batches));
    }
    for (stream, (_, _, last)) in &ranges {
        claimed.next.insert(stream.clone(), Some(last + 1));
    }
    for (stream, origin, seq) in seen_now.iter() {
        claimed.seen.set(stream, origin, seq);
    }
    Ok(Prepared {
        ranges,
        files,
        seen_now,
        rejected,
        duplicates,
        skipped,
    })
}

/// Uploads one prepared batch and commits it; returns the recorded next
/// positions of the streams it touched, or `None` when the commit was
/// refused (nothing of it is visible).
fn write_prepared(
    io: &LakeIo,
    clicks: &mut snowlink_lake::deltalake_core::DeltaTable,
    prepared: Prepared,
    summary: &mut Summary,
) -> anyhow::Result<Option<BTreeMap<String, i64>>> {
    let Prepared {
        ranges,
        files,
        seen_now,
        rejected,
        duplicates,
        skipped,
    } = prepared;
    summary.skipped += skipped;
    let lake = &io.lake;
    let mut staged = Vec::with_capacity(files.len());
    let many = files.len() > 1;
    for (i, (stream, day, batches)) in files.into_iter().enumerate() {
        let (_, first, last) = ranges[&stream];
        let encoded = snowlink_lake::encode_clicks(&batches)?;
        drop(batches);
        let name = snowlink_lake::click_file_name(&stream, first, last);
        let file = io.block_on(lake.upload(
            TableKind::Clicks,
            &day,
            &name,
            encoded.bytes,
            encoded.rows,
            Some(encoded.stats),
        ))?;
        tracing::debug!(
            path = file.path,
            rows = file.rows,
            bytes = file.size,
            "uploaded"
        );
        staged.push(file);
        if i == 0 && many {
            pause_point("upload");
        }
    }
    pause_point("commit");
    let advances: Vec<Advance> = ranges
        .iter()
        .map(|(stream, (expected, _, last))| Advance {
            app_id: stream.clone(),
            expected: *expected,
            next: last + 1,
        })
        .collect();
    // Written with the stream's position, which only this commit may move:
    // no check of their own.
    let marks: Vec<(String, i64)> = seen_now
        .iter()
        .map(|(stream, origin, seq)| (seen_app_id(stream, origin), seq))
        .collect();
    match io.block_on(snowlink_lake::commit(
        clicks,
        Change::Append(&staged),
        &advances,
        &marks,
    )) {
        Ok(version) => {
            tracing::debug!(version, files = staged.len(), "committed");
        }
        Err(LakeError::Conflict(why)) => {
            let rows: i64 = staged.iter().map(|f| f.rows).sum();
            tracing::warn!(
                why,
                streams = ?ranges.keys().collect::<Vec<_>>(),
                rows,
                "commit refused: these streams were moved by another worker; \
                 dropping the batch and reading on from the table's positions"
            );
            summary.refused += rows as u64;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    pause_point("committed");
    summary.rejected += rejected;
    summary.duplicates += duplicates;
    for f in &staged {
        summary.events += f.rows as u64;
        summary.files += 1;
        summary.bytes += f.size as u64;
    }
    Ok(Some(
        ranges
            .into_iter()
            .map(|(stream, (_, _, last))| (stream, last + 1))
            .collect(),
    ))
}
