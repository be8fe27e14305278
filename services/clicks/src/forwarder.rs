//! Forwarding click events from the local spool to Kafka, exactly once.
//!
//! ```text
//! spooler thread --> spool.db (durable) --> forwarder thread --> Kafka topic
//! ```
//!
//! Every click is first written to the local spool, as on one machine; the
//! redirect never waits for either. The forwarder reads the spool in order
//! and produces each batch in one Kafka transaction (JSON, keyed by code,
//! with the spool's identity and the event's sequence number as its
//! `origin`: `snowlink_events::kafka`).
//! The same transaction commits the position after the batch as the offset
//! of a consumer group of the spool's own (`snowlink-forwarder-<spool id>`,
//! on the topic's partition 0; nobody consumes with it). Only after the
//! transaction commits are the rows released from the spool. So:
//!
//! * a broker that is down, slow or full only makes the spool grow; nothing
//!   is lost while the spool has disk, and forwarding resumes by itself, in
//!   spool order, so in order per code;
//! * a batch is in the topic for `read_committed` readers (the default of
//!   Kafka's own clients and of `snowlink-aggregate`) entirely or not at all;
//! * after a crash or a failed commit, a new producer session with the same
//!   transactional id first fences the old one and settles its open
//!   transaction, then reads the committed position back: rows below it
//!   are released without being sent again, rows from it on are sent
//!   again. Each event therefore appears in the topic exactly once.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use snowlink_events::kafka::{self, Origin};
use snowlink_events::{ClickEventIn, EventView};
use snowlink_spool::ClickSpool;

/// Most events read from the spool and in flight at once.
const BATCH: usize = 20_000;
const IDLE_POLL: Duration = Duration::from_millis(20);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How long a click may wait for Kafka's acknowledgement by default.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 10_000;

/// The `kafka` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers, comma-separated host:port; click events are forwarded there from the local spool.
    #[arg(
        id = "kafka_brokers",
        long = "kafka-brokers",
        env = "SNOWLINK_KAFKA_BROKERS",
        value_name = "HOST:PORT,..."
    )]
    pub brokers: Option<String>,
    /// Kafka topic for click events.
    #[arg(
        id = "kafka_topic",
        long = "kafka-topic",
        env = "SNOWLINK_KAFKA_TOPIC",
        value_name = "TOPIC",
        default_value = snowlink_events::kafka::DEFAULT_TOPIC
    )]
    pub topic: String,
    /// Milliseconds a click may wait for Kafka's acknowledgement before its batch is resent from the spool (100 to 900000, Kafka's longest transaction).
    #[arg(
        id = "kafka_message_timeout_ms",
        long = "kafka-message-timeout-ms",
        env = "SNOWLINK_KAFKA_MESSAGE_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = DEFAULT_MESSAGE_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(100..=900_000)
    )]
    pub message_timeout_ms: u64,
}

impl KafkaSettings {
    /// Settings for `brokers`, with the declared defaults otherwise.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: Some(brokers.into()),
            topic: snowlink_events::kafka::DEFAULT_TOPIC.to_owned(),
            message_timeout_ms: DEFAULT_MESSAGE_TIMEOUT_MS,
        }
    }

    pub fn normalize(&mut self) {
        if self.brokers.as_ref().is_some_and(|b| b.trim().is_empty()) {
            self.brokers = None;
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.brokers.is_some() && self.topic.trim().is_empty() {
            anyhow::bail!("kafka_topic must not be empty");
        }
        Ok(())
    }

    /// How long a message may wait for delivery before the batch is retried.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_millis(self.message_timeout_ms)
    }

    fn bootstrap(&self) -> &str {
        self.brokers.as_deref().unwrap_or_default()
    }
}

/// Counters exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct ForwardMetrics {
    pub forwarded: Counter,
    pub failures: Counter,
    /// Click events in the spool not yet committed to Kafka.
    pub lag: Gauge,
    /// Whether the last batch reached the broker.
    pub connected: AtomicBool,
}

pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<ForwardMetrics>,
}

/// What a spool row is sent as: its key (the code) and its message, which
/// names the spool and the row's sequence there. A row that is not a click
/// event goes as it is, with no key: the aggregate rejects it, counted, as
/// it would read it from the spool.
fn message_of<'a>(row: &'a [u8], origin: &Origin) -> (String, Cow<'a, [u8]>) {
    match ClickEventIn::from_row(row) {
        Ok(e) => {
            let e = e.view();
            (
                e.code.to_owned(),
                Cow::Owned(kafka::message(e, Some(origin))),
            )
        }
        Err(_) => (String::new(), Cow::Borrowed(row)),
    }
}

/// The transactional id and the position group of a spool's forwarder.
pub fn forwarder_id(spool_id: &str) -> String {
    format!("snowlink-forwarder-{spool_id}")
}

fn producer_config(settings: &KafkaSettings, spool_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", settings.bootstrap())
        .set("client.id", "snowlink")
        .set("transactional.id", forwarder_id(spool_id))
        // A transaction left open by a killed instance blocks
        // read_committed readers of its partitions until it times out.
        // librdkafka requires it to be at least the message timeout.
        .set(
            "transaction.timeout.ms",
            settings
                .message_timeout()
                .as_millis()
                .max(15_000)
                .to_string(),
        )
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            settings.message_timeout().as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", (BATCH * 2).to_string());
    config
}

/// A producer session: the transactional producer, and the consumer that
/// reads and names the position group.
struct Session {
    producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    group: ConsumerGroupMetadata,
    /// Every `seq` below this is committed in the topic, if known.
    committed: Option<i64>,
}

impl Session {
    /// Fences any earlier session of this spool, settles its open
    /// transaction, and reads the committed position.
    fn open(
        settings: &KafkaSettings,
        spool_id: &str,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let producer: ThreadedProducer<_> = producer_config(settings, spool_id).create()?;
        producer.init_transactions(timeout)?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", settings.bootstrap())
            .set("client.id", "snowlink")
            .set("group.id", forwarder_id(spool_id))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&settings.topic, 0);
        let committed = consumer
            .committed_offsets(tpl, timeout)?
            .find_partition(&settings.topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            });
        let group = consumer
            .group_metadata()
            .ok_or(KafkaError::Global(RDKafkaErrorCode::InvalidGroupId))?;
        Ok(Self {
            producer,
            group,
            committed,
        })
    }
}

impl Forwarder {
    /// Opens its own connection to the spool and starts forwarding.
    pub fn start(spool_path: &Path, settings: KafkaSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(settings.brokers.is_some(), "no kafka brokers given");
        let mut spool = ClickSpool::open(spool_path)?;
        spool.claim(snowlink_spool::CONSUMER_KAFKA).map_err(|e| {
            anyhow::anyhow!(
                "{e}: {} is drained into a lake by `snowlink-aggregate --data-dir`, and two \
                 consumers would split and duplicate clicks. To forward to Kafka instead, stop \
                 the service, run `snowlink-aggregate --data-dir DIR --once --release-spool`, \
                 then start it with Kafka",
                spool_path.display()
            )
        })?;
        let spool_id = spool.spool_id()?;
        // Fails early on settings librdkafka rejects.
        drop(producer_config(&settings, &spool_id).create::<ThreadedProducer<_>>()?);
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(ForwardMetrics::default());
        metrics.connected.store(true, Ordering::Relaxed);
        let worker = Worker {
            spool,
            spool_id,
            settings,
            stop: stop.clone(),
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kafka-forwarder".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            stop,
            thread: Mutex::new(Some(thread)),
            metrics,
        })
    }

    pub fn metrics(&self) -> Arc<ForwardMetrics> {
        self.metrics.clone()
    }

    /// Forwards what is spooled (giving up after a few seconds if the broker
    /// is away: the rest stays in the spool for the next start) and stops.
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().expect("forwarder thread").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Forwarder {
    /// Whether the last batch reached the broker.
    pub fn connected(&self) -> bool {
        self.metrics.connected.load(Ordering::Relaxed)
    }

    /// Registers the forwarder's counters.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "kafka_forwarded",
            "Click events committed to Kafka from the spool",
            self.metrics.forwarded.clone(),
        );
        registry.register(
            "kafka_failures",
            "Forwarding attempts that failed (the batch stays spooled and is retried)",
            self.metrics.failures.clone(),
        );
        registry.register(
            "kafka_forwarder_lag",
            "Click events in the spool not yet committed to Kafka",
            self.metrics.lag.clone(),
        );
    }
}

struct Worker {
    spool: ClickSpool,
    spool_id: String,
    settings: KafkaSettings,
    stop: Arc<AtomicBool>,
    metrics: Arc<ForwardMetrics>,
}

impl Worker {
    fn run(mut self) {
        let mut session: Option<Session> = None;
        let mut backoff = Duration::from_millis(100);
        let mut last_warn = Instant::now() - WARN_EVERY;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
            if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let rows = match self
                .spool
                .released()
                .and_then(|after| self.spool.read_after(after, BATCH))
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "reading the click spool failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if let Ok(depth) = self.spool.depth() {
                self.metrics.lag.set(depth);
            }
            if rows.is_empty() {
                if stop_deadline.is_some() {
                    break;
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            let timeout = stop_deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(self.settings.message_timeout())
                .max(Duration::from_millis(100));
            let result = match session.take() {
                Some(s) => Ok(s),
                None => self.open_session(timeout),
            }
            .and_then(|s| {
                let sent = self.send(&s, &rows, timeout);
                match sent {
                    Ok(()) => Ok(s),
                    Err(e) => {
                        // Best effort: a new session aborts it anyway.
                        let _ = s.producer.abort_transaction(Duration::from_secs(1));
                        Err(e)
                    }
                }
            });
            match result {
                Ok(mut s) => {
                    let last = rows.last().expect("non-empty").0;
                    s.committed = Some(last + 1);
                    // Rows are released only after their transaction committed.
                    if let Err(e) = self.spool.release_through(last) {
                        tracing::error!(error = %e, "releasing forwarded clicks failed; the next session skips them");
                    }
                    self.metrics.forwarded.inc_by(rows.len() as u64);
                    self.metrics.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    session = Some(s);
                }
                Err(e) => {
                    self.metrics.connected.store(false, Ordering::Relaxed);
                    self.metrics.failures.inc();
                    if last_warn.elapsed() >= WARN_EVERY {
                        last_warn = Instant::now();
                        tracing::warn!(
                            error = %e,
                            backlog = self.spool.backlog().unwrap_or(-1),
                            "kafka unavailable: clicks stay in the local spool and will be forwarded when it returns"
                        );
                    }
                    if stop_deadline.is_none() {
                        std::thread::sleep(backoff);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::debug!("kafka forwarder stopped");
    }

    /// A new session; rows its predecessors committed are released first.
    fn open_session(&mut self, timeout: Duration) -> Result<Session, KafkaError> {
        let session = Session::open(&self.settings, &self.spool_id, timeout)?;
        if let Some(next) = session.committed {
            match self.spool.released() {
                Ok(released) if released < next - 1 => {
                    tracing::info!(
                        through = next - 1,
                        "releasing clicks a previous session committed to kafka"
                    );
                    let before = self.spool.backlog().unwrap_or(0);
                    if let Err(e) = self.spool.release_through(next - 1) {
                        tracing::error!(error = %e, "releasing committed clicks failed");
                        return Err(KafkaError::Canceled);
                    }
                    let after = self.spool.backlog().unwrap_or(before);
                    self.metrics
                        .forwarded
                        .inc_by((before - after).max(0) as u64);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading the click spool failed");
                    return Err(KafkaError::Canceled);
                }
            }
        }
        Ok(session)
    }

    /// Produces `rows` in one transaction with the position after them.
    /// Rows the session knows to be committed already are not sent.
    fn send(
        &self,
        session: &Session,
        rows: &[(i64, Vec<u8>)],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let from = session.committed.unwrap_or(i64::MIN);
        let rows: Vec<&(i64, Vec<u8>)> = rows.iter().filter(|(seq, _)| *seq >= from).collect();
        let Some(&&(last, _)) = rows.last() else {
            return Ok(());
        };
        let producer = &session.producer;
        producer.begin_transaction()?;
        for (seq, row) in rows {
            let origin = Origin {
                spool: self.spool_id.clone(),
                seq: *seq,
            };
            let (key, message) = message_of(row, &origin);
            let mut record = BaseRecord::to(&self.settings.topic)
                .key(key.as_str())
                .payload(message.as_ref());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let mut position = TopicPartitionList::new();
        position.add_partition_offset(&self.settings.topic, 0, Offset::Offset(last + 1))?;
        producer.send_offsets_to_transaction(&position, &session.group, timeout)?;
        producer.commit_transaction(timeout)?;
        Ok(())
    }
}
