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
use snowlink_events::kafka::Origin;
use snowlink_events::{ClickEventIn, MS_PER_DAY};
use snowlink_lake::{Advance, Change, Lake, LakeError, TableKind};

use crate::Summary;

/// One event as a source delivers it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The stream it belongs to; also the table's app id for its position.
    /// Shared: a batch holds many records of few streams.
    pub stream: Arc<str>,
    /// Its place in the stream; grows with every record of the stream.
    pub position: i64,
    /// The event's bytes in the source's form ([`Source::decode`]), or
    /// `None` when a message had none.
    pub payload: Option<Vec<u8>>,
}

/// A record's payload as an event, and who first sent it and its sequence
/// there when a sender may resend it under another position (the Kafka
/// forwarder); or why it is not a click event.
/// Its text is borrowed from the payload where it can be.
pub type Decoded<'a> = Result<(ClickEventIn<'a>, Option<Origin>), snowlink_events::InvalidEvent>;

/// How a source's payloads are decoded (and validated against the time
/// given).
pub type Decode = for<'a> fn(&'a [u8], i64) -> Decoded<'a>;

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

    /// Parses and validates a record's payload (a spool row, a Kafka
    /// message); `now_ms` bounds the times it may hold.
    fn decode(&self) -> Decode;

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
///
/// Three threads, each batch moving through them in order: one reads
/// batches from the source (and acknowledges committed ones to it), one
/// parses them and sorts them into Arrow batches per file, and this one
/// uploads and commits them. Every batch is still committed and
/// acknowledged in the order it was read, and acknowledged only once
/// committed. A refused commit starts a new epoch: the reader goes back to
/// the table's positions, the batches read before are dropped, and the
/// preparer starts again from those positions.
pub fn run(source: &mut dyn Source, io: &LakeIo, opts: RunOptions<'_>) -> anyhow::Result<Summary> {
    let RunOptions {
        batch_size,
        stop,
        bar,
        rollups_every,
    } = opts;
    let mut clicks = io.block_on(io.lake.table(TableKind::Clicks))?;
    let claimed = Claimed {
        next: source.resume(io)?,
        seen: Seen::default(),
        rejected: 0,
    };
    if let Some(n) = source.remaining() {
        bar.set_length(n);
    }
    let decode = source.decode();
    // Rendezvous channels: at most three batches in memory, one per thread.
    let (to_prepare, polled) = std::sync::mpsc::sync_channel::<Stage<Polled>>(0);
    let (to_write, prepared) = std::sync::mpsc::sync_channel::<Stage<Prepared>>(0);
    let (to_reader, control) = std::sync::mpsc::channel::<Control>();
    let mut summary = Summary::default();
    let (read, prep, written) = std::thread::scope(|s| {
        let reader =
            s.spawn(move || read_batches(source, io, batch_size, stop, control, to_prepare));
        let preparer = s.spawn(move || prepare_batches(claimed, io, decode, polled, to_write));
        let written = write_batches(
            io,
            &mut clicks,
            prepared,
            to_reader,
            &mut summary,
            bar,
            rollups_every,
        );
        (reader.join(), preparer.join(), written)
    });
    let read = read.map_err(|_| anyhow::anyhow!("reading batches panicked"))?;
    let prep = prep.map_err(|_| anyhow::anyhow!("preparing batches panicked"))?;
    // The first failure in the pipeline's order is the cause; the later
    // stages only saw their channel close.
    read?;
    prep?;
    written?;
    bar.finish_and_clear();
    summary.rollups += refresh_rollups(io)?;
    Ok(summary)
}

/// What moves down the pipeline: a batch, or the reader's word that it has
/// read everything it set out to (`Done`), each with the epoch the reader
/// was in; or, to the preparer, the table's positions after a refused
/// commit (`Reset`), before the new epoch's batches.
enum Stage<T> {
    Batch(u64, T),
    Reset(HashMap<String, Option<i64>>),
    Done(u64),
}

/// What the writer tells the reader.
enum Control {
    /// Committed: the source may forget everything before these positions.
    Acknowledge(BTreeMap<String, i64>),
    /// A commit was refused: go back to the table's positions, in this
    /// new epoch.
    Resync(u64),
}

/// The reader: polls the source until it is done (or `stop`), then waits
/// for acknowledgements, or for a resync that sends it reading again, until
/// the writer hangs up.
fn read_batches(
    source: &mut dyn Source,
    io: &LakeIo,
    batch_size: usize,
    stop: &AtomicBool,
    control: std::sync::mpsc::Receiver<Control>,
    to_prepare: std::sync::mpsc::SyncSender<Stage<Polled>>,
) -> anyhow::Result<()> {
    let mut epoch = 0;
    let mut done_sent = false;
    loop {
        // Acknowledgements and resyncs first, in the order they were sent.
        let reading = !done_sent;
        let message = if reading {
            control.try_recv().ok()
        } else {
            match control.recv() {
                Ok(m) => Some(m),
                // The writer is finished.
                Err(_) => return Ok(()),
            }
        };
        match message {
            Some(Control::Acknowledge(next)) => {
                source.acknowledge(&next)?;
                continue;
            }
            Some(Control::Resync(new)) => {
                epoch = new;
                let positions = source.resync(io)?;
                if to_prepare.send(Stage::Reset(positions)).is_err() {
                    return Ok(());
                }
                done_sent = false;
                continue;
            }
            None => {}
        }
        if source.done() || stop.load(Ordering::Relaxed) {
            if to_prepare.send(Stage::Done(epoch)).is_err() {
                return Ok(());
            }
            done_sent = true;
            continue;
        }
        // Streams assigned before the poll and during it come before its
        // records.
        let mut assigned = source.assigned();
        let records = source.poll(batch_size, stop)?;
        assigned.extend(source.assigned());
        if (!records.is_empty() || !assigned.is_empty())
            && to_prepare
                .send(Stage::Batch(epoch, Polled { assigned, records }))
                .is_err()
        {
            return Ok(());
        }
    }
}

/// The preparer: decodes, filters and sorts each batch, keeping what the
/// batches read so far claim.
fn prepare_batches(
    mut claimed: Claimed,
    io: &LakeIo,
    decode: Decode,
    polled: std::sync::mpsc::Receiver<Stage<Polled>>,
    to_write: std::sync::mpsc::SyncSender<Stage<Prepared>>,
) -> anyhow::Result<()> {
    for stage in polled {
        let next = match stage {
            Stage::Batch(epoch, Polled { assigned, records }) => {
                claimed.take_assigned(assigned);
                if records.is_empty() {
                    continue;
                }
                let decoded = decode_all(&records, decode, snowlink_events::now_ms());
                claimed.look_up_origins(io, &records, &decoded)?;
                Stage::Batch(epoch, prepare(&records, &decoded, &mut claimed)?)
            }
            // Before any batch of the new epoch.
            Stage::Reset(positions) => {
                claimed.next = positions;
                claimed.seen = Seen::default();
                continue;
            }
            Stage::Done(epoch) => Stage::Done(epoch),
        };
        if to_write.send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// The writer: uploads and commits each batch of the current epoch, and
/// tells the reader what was committed, or that a commit was refused.
/// Returns once the reader's `Done` of the current epoch arrives.
fn write_batches(
    io: &LakeIo,
    clicks: &mut snowlink_lake::deltalake_core::DeltaTable,
    prepared: std::sync::mpsc::Receiver<Stage<Prepared>>,
    to_reader: std::sync::mpsc::Sender<Control>,
    summary: &mut Summary,
    bar: &ProgressBar,
    rollups_every: Option<Duration>,
) -> anyhow::Result<()> {
    let mut epoch = 0;
    let mut last_rollups = Instant::now();
    loop {
        match prepared.recv_timeout(Duration::from_secs(1)) {
            Ok(Stage::Batch(at, batch)) if at == epoch => {
                let before = summary.records();
                match write_prepared(io, clicks, batch, summary)? {
                    Some(recorded) => {
                        let _ = to_reader.send(Control::Acknowledge(recorded));
                    }
                    None => {
                        // What was read after the refused batch starts
                        // from positions that are no longer true: read it
                        // again from the table's.
                        epoch += 1;
                        let _ = to_reader.send(Control::Resync(epoch));
                    }
                }
                bar.inc(summary.records().saturating_sub(before));
            }
            // Read before the refusal: it is read again.
            Ok(Stage::Batch(..)) => {}
            Ok(Stage::Done(at)) if at == epoch => return Ok(()),
            Ok(Stage::Done(_) | Stage::Reset(_)) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // The reader or the preparer stopped on an error, which the
            // caller reports.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if rollups_every.is_some_and(|every| last_rollups.elapsed() >= every) {
            summary.rollups += refresh_rollups(io)?;
            last_rollups = Instant::now();
        }
    }
}

/// A batch as read, with the streams given to the source before and while
/// it was read (they come before its records).
struct Polled {
    assigned: Vec<(String, Option<i64>)>,
    records: Vec<Record>,
}

/// Rebuilds the rollups of complete days (before today, UTC) that are
/// missing or stale.
pub fn refresh_rollups(io: &LakeIo) -> anyhow::Result<u64> {
    let today = snowlink_events::date_of_ms(snowlink_events::now_ms());
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

/// Decodes every record of a batch. Validated before anything else is
/// believed of it: a forged record must not put an absurd time into the
/// lake.
/// Large batches are decoded in two halves at once: decoding is the
/// preparing thread's largest part, and a machine of two cores has room
/// for it beside the reader and the writer.
fn decode_all(batch: &[Record], decode: Decode, now_ms: i64) -> Vec<Decoded<'_>> {
    if batch.len() < 10_000 {
        return decode_each(batch, decode, now_ms);
    }
    let (first, second) = batch.split_at(batch.len() / 2);
    std::thread::scope(|s| {
        let later = s.spawn(|| decode_each(second, decode, now_ms));
        let mut decoded = Vec::with_capacity(batch.len());
        decoded.extend(decode_each(first, decode, now_ms));
        decoded.extend(later.join().expect("decoding does not panic"));
        decoded
    })
}

fn decode_each(records: &[Record], decode: Decode, now_ms: i64) -> Vec<Decoded<'_>> {
    records
        .iter()
        .map(|r| match r.payload.as_deref() {
            Some(bytes) => decode(bytes, now_ms),
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
    /// Takes streams newly given to the source, at the table's positions.
    fn take_assigned(&mut self, assigned: Vec<(String, Option<i64>)>) {
        for (stream, at) in assigned {
            self.seen.0.remove(&stream);
            self.next.insert(stream, at);
        }
    }

    /// Looks up the recorded sequence of every (stream, origin) of `batch`
    /// not met before.
    fn look_up_origins(
        &mut self,
        io: &LakeIo,
        batch: &[Record],
        decoded: &[Decoded],
    ) -> anyhow::Result<()> {
        let mut missing: Vec<(&str, &str)> = Vec::new();
        for (r, d) in batch.iter().zip(decoded) {
            if let Ok((_, Some(origin))) = d {
                let key = (&*r.stream, origin.spool.as_str());
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

/// Filters one batch (its records and what [`decode_all`] made of them),
/// groups it by stream and day, and sorts each group into batches. Moves
/// `claimed` past it.
fn prepare(
    batch: &[Record],
    decoded: &[Decoded<'_>],
    claimed: &mut Claimed,
) -> anyhow::Result<Prepared> {
    let mut ranges: BTreeMap<String, (Option<i64>, i64, i64)> = BTreeMap::new();
    let mut groups: BTreeMap<(Arc<str>, i64), Vec<&ClickEventIn<'_>>> = BTreeMap::new();
    let mut seen_now = Seen::default();
    let (mut rejected, mut duplicates, mut skipped) = (0u64, 0u64, 0u64);
    for (r, event) in batch.iter().zip(decoded) {
        let recorded = claimed.next.get(&*r.stream).copied().flatten();
        if r.position < recorded.unwrap_or(i64::MIN) {
            // Already in the table: the source was not acknowledged in time.
            skipped += 1;
            continue;
        }
        // Looked up before inserting: no copy of the stream's name per record.
        match ranges.get_mut(&*r.stream) {
            Some(range) => {
                range.1 = range.1.min(r.position);
                range.2 = range.2.max(r.position);
            }
            None => {
                ranges.insert(r.stream.to_string(), (recorded, r.position, r.position));
            }
        }
        let (event, origin) = match event {
            Ok(e) => e,
            Err(why) => {
                if claimed.rejected < REJECTS_LOGGED {
                    tracing::error!(
                        stream = &*r.stream,
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
        if let Some(Origin { spool, seq }) = origin {
            let high = seen_now
                .get(&r.stream, spool)
                .or_else(|| claimed.seen.get(&r.stream, spool))
                .unwrap_or(i64::MIN);
            if *seq <= high {
                duplicates += 1;
                continue;
            }
            seen_now.set(&r.stream, spool, *seq);
        }
        // Grouped by the day's number; its `YYYY-MM-DD` is made once per file.
        groups
            .entry((r.stream.clone(), event.ts.div_euclid(MS_PER_DAY)))
            .or_default()
            .push(event);
    }
    let mut files = Vec::with_capacity(groups.len());
    for ((stream, day), events) in groups {
        let day = snowlink_events::date_of_ms(day * MS_PER_DAY);
        let batches = snowlink_lake::sorted_batches(&events)?;
        files.push((stream.to_string(), day, batches));
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
