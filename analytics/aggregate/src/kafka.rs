//! The Kafka path: consume click events with a consumer group and write them
//! to the lake, exactly once.
//!
//! Exactly once, by construction:
//! 1. a batch is polled; per partition it covers offsets `first..=last`;
//! 2. its events are written, one file per partition and UTC day, to
//!    `clicks-<topic>.p<partition>-<first>-<last>.parquet` (staged, fsynced,
//!    renamed, folder fsynced);
//! 3. only then, in one SQLite transaction in `LAKE/_kafka/state.db`, the
//!    next offset of each partition advances past `last` (with the
//!    duplicate-detection marks and the days to roll up);
//! 4. then the offsets are committed to the consumer group, for lag
//!    monitoring and for a consumer starting without this state.
//!
//! On start, files whose range begins at or after a partition's recorded
//! next offset are leftovers of an interrupted step 2: they are deleted
//! before anything is consumed. Messages below the recorded next offset
//! (a crash between 3 and 4) are skipped. A message whose
//! `(spool, seq)` headers were already seen on its partition is a resend by
//! the service's forwarder and is dropped. The lake lock keeps one writer
//! per lake, hence one state per lake.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rusqlite::{params, Connection, TransactionBehavior};
use snowlink_events::kafka::{HEADER_SEQ, HEADER_SPOOL};
use snowlink_events::ClickEvent;
use snowlink_lake::{parse_range, write_clicks, Lake};

use crate::Summary;

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub batch_size: usize,
    /// Longest wait to fill a batch before writing what there is.
    pub batch_wait: Duration,
}

/// Logs rebalances.
struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked")
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "partitions being assigned")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = %describe(tpl), "partitions assigned");
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The source name of a partition's files.
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("{topic}.p{partition}")
}

/// Progress of the Kafka path, kept with the lake.
pub struct KafkaState {
    conn: Connection,
}

const STATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS seen (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, spool TEXT NOT NULL, max_seq INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, spool));
CREATE TABLE IF NOT EXISTS dirty_days (day TEXT PRIMARY KEY);
";

impl KafkaState {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(STATE_SCHEMA)?;
        Ok(Self { conn })
    }

    /// Next offset to write, per partition of `topic`.
    pub fn offsets(&self, topic: &str) -> rusqlite::Result<HashMap<i32, i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT partition, next_offset FROM offsets WHERE topic = ?1")?;
        let rows = stmt.query_map([topic], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Highest sequence seen per (partition, spool) of `topic`.
    pub fn seen(&self, topic: &str) -> rusqlite::Result<HashMap<(i32, String), i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT partition, spool, max_seq FROM seen WHERE topic = ?1")?;
        let rows = stmt.query_map([topic], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        rows.collect()
    }

    /// Records that `partition` is being written from `first` on, unless
    /// progress is already recorded: files of a first batch interrupted
    /// before its commit are then recognised as unrecorded on the next run.
    fn ensure_partition(&self, topic: &str, partition: i32, first: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)",
            params![topic, partition, first],
        )?;
        Ok(())
    }

    /// Records a written batch in one transaction.
    fn commit(
        &mut self,
        topic: &str,
        next: &BTreeMap<i32, i64>,
        seen: &HashMap<(i32, String), i64>,
        days: &[String],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (p, n) in next {
            tx.execute(
                "INSERT INTO offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                params![topic, p, n],
            )?;
        }
        for ((p, spool), seq) in seen {
            tx.execute(
                "INSERT INTO seen (topic, partition, spool, max_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (topic, partition, spool) DO UPDATE SET max_seq = MAX(max_seq, excluded.max_seq)",
                params![topic, p, spool, seq],
            )?;
        }
        for day in days {
            tx.execute("INSERT OR IGNORE INTO dirty_days (day) VALUES (?1)", [day])?;
        }
        tx.commit()
    }

    pub fn dirty_days(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT day FROM dirty_days ORDER BY day")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    pub fn clear_dirty_day(&self, day: &str) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM dirty_days WHERE day = ?1", [day])?;
        Ok(())
    }
}

/// Deletes files of `topic` that no recorded offset covers: what an
/// interrupted run wrote before it could record the batch.
fn remove_unrecorded(lake: &Lake, topic: &str, next: &HashMap<i32, i64>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for date in lake.click_dates()? {
        let mut touched = false;
        for path in lake.click_files(&date)? {
            let Some((Some(source), first, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_range)
            else {
                continue;
            };
            let Some(partition) = source
                .strip_prefix(topic)
                .and_then(|s| s.strip_prefix(".p"))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let Some(&recorded) = next.get(&partition) else {
                anyhow::bail!(
                    "{} belongs to {topic} partition {partition}, but {} has no progress for it: \
                     refusing to touch the lake (restore LAKE/_kafka/state.db, or use a new lake and consumer group)",
                    path.display(),
                    lake.root().join("_kafka/state.db").display()
                );
            };
            if first >= recorded {
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

/// Before a compaction: deletes every Kafka file the lake's state does not
/// record, for every topic with files in the lake. A compaction would
/// otherwise merge such a file (left by a run killed between writing it and
/// recording it) into a file the next run cannot tell apart, and its events
/// would be consumed and written a second time. Refuses when files of a
/// topic exist without any state for it.
pub fn remove_unrecorded_before_compaction(lake: &Lake) -> anyhow::Result<usize> {
    let mut topics: std::collections::BTreeSet<String> = Default::default();
    for date in lake.click_dates()? {
        for path in lake.click_files(&date)? {
            if let Some((Some(source), _, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_range)
            {
                if let Some((topic, p)) = source.rsplit_once(".p") {
                    if p.parse::<i32>().is_ok() {
                        topics.insert(topic.to_owned());
                    }
                }
            }
        }
    }
    if topics.is_empty() {
        return Ok(0);
    }
    let state_path = lake.root().join("_kafka").join("state.db");
    anyhow::ensure!(
        state_path.is_file(),
        "the lake holds files from Kafka ({}) but {} is missing: refusing to compact          (restore it, or use a new lake and consumer group)",
        topics.iter().cloned().collect::<Vec<_>>().join(", "),
        state_path.display()
    );
    let state = KafkaState::open(&state_path)
        .with_context(|| format!("opening {}", state_path.display()))?;
    let mut removed = 0;
    for topic in topics {
        let next = state.offsets(&topic)?;
        removed += remove_unrecorded(lake, &topic, &next)?;
    }
    Ok(removed)
}

/// One consumed message, as much as the batch needs.
struct Polled {
    partition: i32,
    offset: i64,
    origin: Option<(String, i64)>,
    payload: Option<Vec<u8>>,
}

fn header_str<'a>(msg: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Consumes into the lake until caught up with the high watermarks seen at
/// start (`once`), or until `stop` is set.
pub fn run(
    source: &KafkaSource,
    lake: &Lake,
    once: bool,
    stop: &AtomicBool,
    bar: &ProgressBar,
) -> anyhow::Result<Summary> {
    let _lock = lake.lock()?;
    let state_path = lake.root().join("_kafka").join("state.db");
    let mut state = KafkaState::open(&state_path)
        .with_context(|| format!("opening {}", state_path.display()))?;
    let topic = source.topic.as_str();
    let mut next = state.offsets(topic)?;
    let mut seen = state.seen(topic)?;
    let removed = remove_unrecorded(lake, topic, &next)?;
    if removed > 0 {
        tracing::warn!(removed, "finished cleaning up after an interrupted run");
    }

    let consumer: BaseConsumer<GroupContext> = ClientConfig::new()
        .set("bootstrap.servers", &source.brokers)
        .set("group.id", &source.group)
        .set("client.id", "snowlink-aggregate")
        // Static membership: one aggregate per lake, so a restarted run
        // (after a crash) takes its own place in the group at once instead
        // of waiting for the killed member's session to time out.
        .set(
            "group.instance.id",
            format!("snowlink-aggregate-{}", source.group),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // Also the rebalance timeout: how long a join waits for members of
        // a killed run. Batches are written well within it.
        .set("max.poll.interval.ms", "20000")
        .create_with_context(GroupContext)
        .context("creating the kafka consumer")?;
    // The goal of a --once run: every partition's end as of now.
    let mut targets: BTreeMap<i32, i64> = BTreeMap::new();
    if once {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| {
                format!(
                    "reading the metadata of topic {topic} from {}",
                    source.brokers
                )
            })?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .with_context(|| format!("topic {topic} not found"))?;
        if let Some(err) = t.error() {
            anyhow::bail!("topic {topic}: {err:?}");
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(15))
                .with_context(|| format!("reading the end of {topic}/{}", p.id()))?;
            targets.insert(p.id(), high);
            // Below the low watermark nothing is left to read.
            let n = next.entry(p.id()).or_insert(0);
            if *n < low {
                *n = low;
            }
        }
        let remaining: i64 = targets
            .iter()
            .map(|(p, high)| (high - next.get(p).copied().unwrap_or(0)).max(0))
            .sum();
        bar.set_length(remaining as u64);
        tracing::info!(
            topic,
            partitions = targets.len(),
            remaining,
            "consuming up to the current end"
        );
    }

    // Joining the group comes after the metadata requests: a join can wait
    // for the members of a killed run to time out, and a broker may answer
    // requests on a connection in order.
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;

    let caught_up = |next: &HashMap<i32, i64>| {
        targets
            .iter()
            .all(|(p, high)| next.get(p).copied().unwrap_or(0) >= *high)
    };

    let mut summary = Summary::default();
    let mut last_progress_log = Instant::now();
    loop {
        if once && caught_up(&next) {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut batch: Vec<Polled> = Vec::new();
        let deadline = Instant::now() + source.batch_wait;
        while batch.len() < source.batch_size && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    let origin = header_str(&msg, HEADER_SPOOL)
                        .zip(header_str(&msg, HEADER_SEQ).and_then(|s| s.parse::<i64>().ok()));
                    batch.push(Polled {
                        partition: msg.partition(),
                        offset: msg.offset(),
                        origin: origin.map(|(s, q)| (s.to_owned(), q)),
                        payload: msg.payload().map(<[u8]>::to_vec),
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                }
                None => {
                    if once {
                        // An idle poll: stop filling if this batch completes the run.
                        let mut ahead = next.clone();
                        for m in &batch {
                            let n = ahead.entry(m.partition).or_insert(0);
                            *n = (*n).max(m.offset + 1);
                        }
                        if caught_up(&ahead) {
                            break;
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        if batch.is_empty() {
            if once && last_progress_log.elapsed() > Duration::from_secs(10) {
                last_progress_log = Instant::now();
                tracing::warn!("waiting for partitions to be assigned or for messages");
            }
            continue;
        }
        let before = summary.events + summary.duplicates + summary.rejected;
        write_batch(
            lake,
            &mut state,
            source,
            batch,
            &mut next,
            &mut seen,
            &mut consumer_commit(&consumer, topic),
            &mut summary,
        )?;
        bar.inc(summary.events + summary.duplicates + summary.rejected - before);
    }
    bar.finish_and_clear();

    let days = state.dirty_days()?;
    summary.rollups += crate::rebuild_rollups(lake, days, |day| Ok(state.clear_dirty_day(day)?))?;
    Ok(summary)
}

/// Commits `partition -> next offset` to the consumer group; a failure is
/// logged only, since the lake's own state is what decides.
fn consumer_commit<'a>(
    consumer: &'a BaseConsumer<GroupContext>,
    topic: &'a str,
) -> impl FnMut(&BTreeMap<i32, i64>) + 'a {
    move |offsets| {
        let mut tpl = TopicPartitionList::new();
        for (p, n) in offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *p, Offset::Offset(*n)) {
                tracing::warn!(error = %e, "building the offset commit");
                return;
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "committing offsets to the consumer group failed; the lake's state is ahead, nothing is lost");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_batch(
    lake: &Lake,
    state: &mut KafkaState,
    source: &KafkaSource,
    batch: Vec<Polled>,
    next: &mut HashMap<i32, i64>,
    seen: &mut HashMap<(i32, String), i64>,
    commit: &mut impl FnMut(&BTreeMap<i32, i64>),
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let topic = source.topic.as_str();
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut files: BTreeMap<(i32, String), Vec<ClickEvent>> = BTreeMap::new();
    let mut seen_now: HashMap<(i32, String), i64> = HashMap::new();
    for m in batch {
        if m.offset < next.get(&m.partition).copied().unwrap_or(0) {
            // Already in the lake: the group's commit lagged behind.
            continue;
        }
        let r = ranges.entry(m.partition).or_insert((m.offset, m.offset));
        r.0 = r.0.min(m.offset);
        r.1 = r.1.max(m.offset);
        if let Some((spool, seq)) = m.origin {
            let key = (m.partition, spool);
            let high = seen_now
                .get(&key)
                .or_else(|| seen.get(&key))
                .copied()
                .unwrap_or(i64::MIN);
            if seq <= high {
                summary.duplicates += 1;
                continue;
            }
            seen_now.insert(key, seq);
        }
        let event = m
            .payload
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(ClickEvent::from_json);
        match event {
            Some(Ok(e)) => files.entry((m.partition, e.date())).or_default().push(e),
            _ => {
                tracing::error!(
                    partition = m.partition,
                    offset = m.offset,
                    "skipping a message that is not a click event"
                );
                summary.rejected += 1;
            }
        }
    }
    for (p, (first, _)) in &ranges {
        state.ensure_partition(topic, *p, *first)?;
    }
    let mut days: Vec<String> = Vec::new();
    for ((partition, day), mut events) in files {
        let (first, last) = ranges[&partition];
        summary.events += events.len() as u64;
        let file = write_clicks(
            lake,
            &day,
            Some(&source_name(topic, partition)),
            first,
            last,
            &mut events,
        )?;
        tracing::debug!(path = %file.path.display(), rows = file.rows, "wrote");
        summary.files += 1;
        summary.bytes += file.bytes;
        if !days.contains(&day) {
            days.push(day);
        }
    }
    let new_next: BTreeMap<i32, i64> = ranges.iter().map(|(p, (_, last))| (*p, last + 1)).collect();
    state.commit(topic, &new_next, &seen_now, &days)?;
    for (p, n) in &new_next {
        next.insert(*p, *n);
    }
    seen.extend(seen_now);
    if !new_next.is_empty() {
        commit(&new_next);
    }
    Ok(())
}
