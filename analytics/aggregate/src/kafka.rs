//! Kafka as a source: the partitions of the clicks topic, each its own
//! stream `<topic>.p<partition>`, positioned by Kafka offsets.
//!
//! The source assigns itself every partition of the topic at the offsets
//! the lake's ledger records (the earliest offset for a partition the lake
//! has never seen), so the ledger alone decides where reading resumes: a
//! consumer group's committed offsets never skip or repeat anything. The
//! group's offsets are still committed after each recorded batch, for lag
//! monitoring. A run reads up to the end of each partition as it was at
//! start, then stops.
//!
//! Messages are read `read_committed`: an aborted transaction of the
//! service's forwarder is never seen. Each message carries its forwarding
//! spool and its sequence there (headers), so a resend that made it into
//! the topic twice is dropped by the engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use snowlink_events::kafka::{HEADER_SEQ, HEADER_SPOOL};
use snowlink_lake::Lake;

use crate::engine::{Record, Source};
use crate::ledger::Ledger;

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    /// The consumer group whose offsets report the lake's progress.
    pub group: String,
    /// Longest wait to fill a batch before writing what there is.
    pub batch_wait: Duration,
}

/// The stream (and file source) name of a partition.
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("{topic}.p{partition}")
}

pub struct KafkaSource {
    settings: KafkaSettings,
    consumer: BaseConsumer,
    /// Stream name per partition.
    streams: HashMap<i32, String>,
    /// The end of each partition at start: the run stops there.
    targets: BTreeMap<i32, i64>,
    /// The next offset to read, per partition, as far as this run knows.
    read: HashMap<i32, i64>,
    idle_since: Option<Instant>,
}

fn header_str<'a>(msg: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl KafkaSource {
    pub fn new(settings: KafkaSettings) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("client.id", "snowlink-aggregate")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .create()
            .context("creating the kafka consumer")?;
        Ok(Self {
            settings,
            consumer,
            streams: HashMap::new(),
            targets: BTreeMap::new(),
            read: HashMap::new(),
            idle_since: None,
        })
    }

    /// True when every partition is read up to its end at start. Offsets of
    /// transaction markers count as read (the consumer's position steps
    /// over them), so a topic ending in a marker is caught up too.
    fn caught_up(&self) -> bool {
        if self.targets.iter().all(|(p, end)| self.read[p] >= *end) {
            return true;
        }
        let Ok(position) = self.consumer.position() else {
            return false;
        };
        self.targets.iter().all(|(p, end)| {
            let at = match position
                .find_partition(&self.settings.topic, *p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => i64::MIN,
            };
            self.read[p].max(at) >= *end
        })
    }
}

impl Source for KafkaSource {
    fn unit(&self) -> &'static str {
        "messages"
    }

    fn resume(&mut self, _lake: &Lake, ledger: &mut Ledger) -> anyhow::Result<()> {
        let topic = self.settings.topic.clone();
        let metadata = self
            .consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(30))
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
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            let p = p.id();
            let stream = source_name(&topic, p);
            let (low, high) = self
                .consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(15))
                .with_context(|| format!("reading the end of {topic}/{p}"))?;
            let start = match ledger.position(&stream)? {
                Some(next) if next < low => {
                    tracing::warn!(
                        stream,
                        next,
                        low,
                        "messages the lake never received were deleted by the topic's retention"
                    );
                    low
                }
                Some(next) => next,
                None => low,
            };
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .with_context(|| format!("assigning {topic}/{p}"))?;
            self.streams.insert(p, stream);
            self.targets.insert(p, high);
            self.read.insert(p, start);
        }
        self.consumer
            .assign(&tpl)
            .with_context(|| format!("assigning the partitions of {topic}"))?;
        tracing::info!(
            topic,
            partitions = self.targets.len(),
            remaining = self.remaining().unwrap_or(0),
            "consuming up to the current end"
        );
        Ok(())
    }

    fn remaining(&self) -> Option<u64> {
        Some(
            self.targets
                .iter()
                .map(|(p, end)| (end - self.read[p]).max(0) as u64)
                .sum(),
        )
    }

    fn poll(&mut self, max: usize, stop: &AtomicBool) -> anyhow::Result<Vec<Record>> {
        let mut batch = Vec::new();
        let deadline = Instant::now() + self.settings.batch_wait;
        while batch.len() < max && Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    let p = msg.partition();
                    let Some(stream) = self.streams.get(&p) else {
                        continue;
                    };
                    let origin = header_str(&msg, HEADER_SPOOL)
                        .zip(header_str(&msg, HEADER_SEQ).and_then(|s| s.parse::<i64>().ok()))
                        .map(|(s, q)| (s.to_owned(), q));
                    batch.push(Record {
                        stream: stream.clone(),
                        position: msg.offset(),
                        origin,
                        payload: msg.payload().map(<[u8]>::to_vec),
                    });
                    let r = self.read.entry(p).or_insert(0);
                    *r = (*r).max(msg.offset() + 1);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
                None => {
                    if self.caught_up() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        if batch.is_empty() {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(10) {
                self.idle_since = Some(Instant::now());
                tracing::warn!(
                    remaining = self.remaining().unwrap_or(0),
                    "waiting for messages up to the end seen at start"
                );
            }
        } else {
            self.idle_since = None;
        }
        Ok(batch)
    }

    fn done(&self) -> bool {
        self.caught_up()
    }

    /// Commits the recorded positions to the consumer group; a failure is
    /// logged only, since the lake's ledger is what decides.
    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, stream) in &self.streams {
            if let Some(&n) = next.get(stream) {
                tpl.add_partition_offset(&self.settings.topic, *p, Offset::Offset(n))?;
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "committing offsets to the consumer group failed; the lake's ledger is ahead, nothing is lost");
            }
        }
        Ok(())
    }
}
