//! Kafka as a source: the partitions of the clicks topic this worker holds,
//! each its own stream `<topic>.p<partition>`, positioned by Kafka offsets.
//!
//! Workers share the topic through one consumer group with cooperative
//! rebalancing (`cooperative-sticky`): adding or losing a worker moves only
//! the partitions that must move. When a partition is assigned, the worker
//! looks up the partition's position in the `clicks` table (its `txn`
//! version) and starts reading there, so the table alone decides where
//! reading resumes; the group's committed offsets only report lag. When one
//! is revoked (or lost, after a pause longer than the session timeout), the
//! worker drops what it read of it. A worker that commits a partition it no
//! longer holds is refused by the table (its position moved), so nothing is
//! counted twice.
//!
//! Messages are read `read_committed`: an aborted transaction of the
//! service's forwarder is never seen. Each message carries its forwarding
//! spool and its sequence there (its `origin`), so a resend that made it
//! into the topic twice is dropped by the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::engine::{Decode, LakeIo, Record, Source};

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    /// The consumer group the workers share.
    pub group: String,
    /// Longest wait to fill a batch before writing what there is.
    pub batch_wait: Duration,
    /// The group's session timeout: a worker silent this long loses its
    /// partitions to the others.
    pub session_timeout: Duration,
    /// Stop once every partition held is read up to its end as it was when
    /// assigned (`--once`); otherwise run until stopped.
    pub until_end: bool,
}

/// The stream (and app id) of a partition.
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("{topic}.p{partition}")
}

/// What the rebalance callback tells the source.
#[derive(Default)]
struct Shared {
    /// Partitions held now.
    owned: HashSet<i32>,
    /// Newly assigned partitions and their table positions, for the engine.
    assigned: Vec<(i32, Option<i64>)>,
    /// Partitions revoked or lost since the source last looked.
    revoked: Vec<i32>,
}

/// The consumer's context: positions each assigned partition where the
/// table records it.
pub struct LakeContext {
    io: LakeIo,
    topic: String,
    shared: Mutex<Shared>,
}

impl ClientContext for LakeContext {}

impl LakeContext {
    /// The table's positions of `partitions`, retried a few times: a store
    /// that does not answer now may in a moment.
    fn positions(&self, partitions: &[i32]) -> Option<HashMap<String, Option<i64>>> {
        let streams: Vec<String> = partitions
            .iter()
            .map(|p| source_name(&self.topic, *p))
            .collect();
        for attempt in 0..5 {
            match self.io.positions(&streams) {
                Ok(p) => return Some(p),
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        attempt,
                        "reading the partitions' positions from the lake failed"
                    );
                    std::thread::sleep(Duration::from_millis(500 << attempt));
                }
            }
        }
        None
    }
}

impl ConsumerContext for LakeContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positions = self.positions(&partitions);
                let mut shared = self.shared.lock().expect("rebalance state");
                for &p in &partitions {
                    let at = positions
                        .as_ref()
                        .and_then(|m| m.get(&source_name(&self.topic, p)).copied().flatten());
                    let offset = match (&positions, at) {
                        (Some(_), Some(n)) => Offset::Offset(n),
                        (Some(_), None) => Offset::Beginning,
                        // Unknown: the group's offset is never ahead of
                        // the table, and the first commit's check sends
                        // the worker back to the table's position.
                        (None, _) => Offset::Stored,
                    };
                    let _ = tpl.set_partition_offset(&self.topic, p, offset);
                    shared.owned.insert(p);
                    shared.assigned.push((p, at));
                }
                tracing::info!(?partitions, "partitions assigned");
                if let Err(e) = consumer.incremental_assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                {
                    let mut shared = self.shared.lock().expect("rebalance state");
                    for &p in &partitions {
                        shared.owned.remove(&p);
                        shared.revoked.push(p);
                    }
                }
                if lost {
                    tracing::warn!(
                        ?partitions,
                        "partitions lost (this worker was silent longer than the session timeout)"
                    );
                } else {
                    tracing::info!(?partitions, "partitions revoked");
                }
                if let Err(e) = consumer.incremental_unassign(tpl) {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance failed"),
        }
    }
}

pub struct KafkaSource {
    settings: KafkaSettings,
    consumer: BaseConsumer<LakeContext>,
    /// The end of each held partition when it was assigned (`--once`).
    targets: BTreeMap<i32, i64>,
    /// The next offset to read, per held partition, as far as this run knows.
    read: HashMap<i32, i64>,
    started: Instant,
    idle_since: Option<Instant>,
    /// The stream name of each partition met, made once.
    names: HashMap<i32, Arc<str>>,
}

/// How long a `--once` worker waits for its first partitions.
const FIRST_ASSIGNMENT_WAIT: Duration = Duration::from_secs(30);

impl KafkaSource {
    pub fn new(settings: KafkaSettings, io: LakeIo) -> anyhow::Result<Self> {
        let context = LakeContext {
            io,
            topic: settings.topic.clone(),
            shared: Mutex::new(Shared::default()),
        };
        let consumer: BaseConsumer<LakeContext> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("client.id", "snowlink-aggregate")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            // A member learns of a rebalance at its next heartbeat, and a
            // cooperative rebalance takes two rounds: a worker that joins
            // gets its partitions about two heartbeats later.
            .set(
                "heartbeat.interval.ms",
                (settings.session_timeout.as_millis() / 3)
                    .clamp(100, 1000)
                    .to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // Room for a whole batch to be fetched ahead while the last
            // one is parsed and written: with librdkafka's defaults (1 MiB
            // per partition per fetch, 64 MiB queued) the reader waited on
            // the broker for most of each batch.
            .set("max.partition.fetch.bytes", "8388608")
            .set("fetch.max.bytes", "67108864")
            .set("queued.max.messages.kbytes", "262144")
            .set("queued.min.messages", "250000")
            .create_with_context(context)
            .context("creating the kafka consumer")?;
        Ok(Self {
            settings,
            consumer,
            targets: BTreeMap::new(),
            read: HashMap::new(),
            started: Instant::now(),
            idle_since: None,
            names: HashMap::new(),
        })
    }

    fn stream(&self, p: i32) -> String {
        source_name(&self.settings.topic, p)
    }

    /// The stream of partition `p`, shared by its records.
    fn stream_of(&mut self, p: i32) -> Arc<str> {
        let topic = &self.settings.topic;
        self.names
            .entry(p)
            .or_insert_with(|| source_name(topic, p).into())
            .clone()
    }

    /// What the rebalance callback has told this source.
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.consumer
            .context()
            .shared
            .lock()
            .expect("rebalance state")
    }

    fn owned(&self) -> HashSet<i32> {
        self.shared().owned.clone()
    }

    /// Forgets revoked partitions; returns them.
    fn take_revoked(&mut self) -> Vec<i32> {
        let revoked = std::mem::take(&mut self.shared().revoked);
        for p in &revoked {
            self.targets.remove(p);
            self.read.remove(p);
        }
        revoked
    }

    /// True when every held partition is read up to its end at assignment.
    /// Offsets of transaction markers count as read (the consumer's
    /// position steps over them), so a partition ending in a marker is
    /// caught up too.
    fn caught_up(&self) -> bool {
        let owned = self.owned();
        if owned.is_empty() {
            return self.started.elapsed() > FIRST_ASSIGNMENT_WAIT;
        }
        let behind = |p: &i32, at: i64| self.targets.get(p).is_none_or(|end| at < *end);
        if owned
            .iter()
            .all(|p| !behind(p, self.read.get(p).copied().unwrap_or(i64::MIN)))
        {
            return true;
        }
        let Ok(position) = self.consumer.position() else {
            return false;
        };
        owned.iter().all(|p| {
            let at = match position
                .find_partition(&self.settings.topic, *p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => i64::MIN,
            };
            !behind(p, self.read.get(p).copied().unwrap_or(i64::MIN).max(at))
        })
    }
}

impl Source for KafkaSource {
    fn unit(&self) -> &'static str {
        "messages"
    }

    fn decode(&self) -> Decode {
        snowlink_events::kafka::parse
    }

    fn resume(&mut self, _io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>> {
        let topic = &self.settings.topic;
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| {
                format!(
                    "reading the metadata of topic {topic} from {}",
                    self.settings.brokers
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
        self.consumer
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        tracing::info!(
            topic,
            group = self.settings.group,
            partitions = t.partitions().len(),
            "joined the group"
        );
        // Partitions and their positions arrive with the group's
        // assignment, during the polls.
        Ok(HashMap::new())
    }

    fn remaining(&self) -> Option<u64> {
        self.settings.until_end.then(|| {
            self.targets
                .iter()
                .map(|(p, end)| (end - self.read.get(p).copied().unwrap_or(0)).max(0) as u64)
                .sum()
        })
    }

    fn assigned(&mut self) -> Vec<(String, Option<i64>)> {
        self.take_revoked();
        let assigned = std::mem::take(&mut self.shared().assigned);
        let mut out = Vec::with_capacity(assigned.len());
        for (p, at) in assigned {
            if self.settings.until_end {
                match self.consumer.fetch_watermarks(
                    &self.settings.topic,
                    p,
                    Duration::from_secs(15),
                ) {
                    Ok((low, high)) => {
                        self.targets.insert(p, high);
                        self.read.insert(p, at.unwrap_or(low));
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "reading a partition's end failed")
                    }
                }
            }
            out.push((self.stream(p), at));
        }
        out
    }

    fn poll(&mut self, max: usize, stop: &AtomicBool) -> anyhow::Result<Vec<Record>> {
        let mut batch: Vec<Record> = Vec::with_capacity(max.min(1 << 20));
        let deadline = Instant::now() + self.settings.batch_wait;
        // The clock is read once per 256 messages, and whenever the topic
        // has nothing for now.
        let mut past_deadline = false;
        while batch.len() < max && !past_deadline {
            let polled = self.consumer.poll(Duration::from_millis(100)).map(|m| {
                m.map(|msg| {
                    (
                        msg.partition(),
                        msg.offset(),
                        msg.payload().map(<[u8]>::to_vec),
                    )
                })
            });
            // A rebalance runs inside the poll, before the message it
            // returns: what was read before of a partition revoked there is
            // another worker's now.
            let revoked: HashSet<String> = self
                .take_revoked()
                .into_iter()
                .map(|p| self.stream(p))
                .collect();
            if !revoked.is_empty() {
                let before = batch.len();
                batch.retain(|r| !revoked.contains(&*r.stream));
                tracing::info!(
                    dropped = before - batch.len(),
                    "dropped what was read of revoked partitions"
                );
            }
            match polled {
                Some(Ok((p, offset, payload))) => {
                    batch.push(Record {
                        stream: self.stream_of(p),
                        position: offset,
                        payload,
                    });
                    let r = self.read.entry(p).or_insert(0);
                    *r = (*r).max(offset + 1);
                    if batch.len().is_multiple_of(256) {
                        past_deadline = Instant::now() >= deadline;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    past_deadline = Instant::now() >= deadline;
                }
                None => {
                    if (self.settings.until_end && self.caught_up()) || stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    past_deadline = Instant::now() >= deadline;
                }
            }
        }
        if batch.is_empty() {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            if self.settings.until_end && since.elapsed() > Duration::from_secs(10) {
                self.idle_since = Some(Instant::now());
                tracing::warn!(
                    remaining = self.remaining().unwrap_or(0),
                    "waiting for messages up to the end seen at assignment"
                );
            }
        } else {
            self.idle_since = None;
        }
        Ok(batch)
    }

    fn done(&self) -> bool {
        self.settings.until_end && self.caught_up()
    }

    /// Commits the recorded positions to the consumer group, for lag
    /// monitoring; a failure is logged only, since the table decides.
    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for p in self.owned() {
            if let Some(&n) = next.get(&self.stream(p)) {
                tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(n))?;
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "committing offsets to the consumer group failed; the lake is ahead, nothing is lost");
            }
        }
        Ok(())
    }

    fn resync(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>> {
        self.take_revoked();
        let owned: Vec<i32> = self.owned().into_iter().collect();
        let streams: Vec<String> = owned.iter().map(|p| self.stream(*p)).collect();
        let positions = io.positions(&streams)?;
        let mut tpl = TopicPartitionList::new();
        for &p in &owned {
            let offset = match positions.get(&self.stream(p)).copied().flatten() {
                Some(n) => Offset::Offset(n),
                None => Offset::Beginning,
            };
            tpl.add_partition_offset(&self.settings.topic, p, offset)?;
            if let Offset::Offset(n) = offset {
                self.read.insert(p, n);
            }
        }
        if tpl.count() > 0 {
            seek(&self.consumer, &tpl)?;
        }
        tracing::info!(?positions, "back at the table's positions");
        Ok(positions)
    }
}

fn seek(consumer: &BaseConsumer<LakeContext>, tpl: &TopicPartitionList) -> KafkaResult<()> {
    let result = consumer.seek_partitions(tpl.clone(), Duration::from_secs(10))?;
    for e in result.elements() {
        if let Err(err) = e.error() {
            tracing::warn!(partition = e.partition(), error = %err, "seeking failed; reassigning");
            let mut one = TopicPartitionList::new();
            one.add_partition_offset(e.topic(), e.partition(), e.offset())?;
            consumer.incremental_unassign(&one)?;
            consumer.incremental_assign(&one)?;
        }
    }
    Ok(())
}
