//! Forwarding click events from the local spool to Kafka.
//!
//! ```text
//! spooler thread --> spool.db (durable) --> forwarder thread --> Kafka topic
//! ```
//!
//! Every click is first written to the local spool, as on one machine; the
//! redirect never waits for either. The forwarder reads the spool in order,
//! produces each event (JSON, keyed by code, with the spool's identity and
//! the event's sequence number as headers), waits for every delivery report
//! of the batch, and only then releases the delivered rows. So:
//!
//! * a broker that is down, slow or full only makes the spool grow; nothing
//!   is lost while the spool has disk, and forwarding resumes by itself, in
//!   spool order, so in order per code;
//! * a crash, or a delivery failure, resends from the first event not known
//!   to be delivered. The producer is idempotent (`acks=all`), which within
//!   a producer session keeps each partition in order and without gaps: what
//!   was delivered is a prefix of what was sent. A resend therefore only
//!   repeats sequence numbers the consumer has already seen on that
//!   partition, and `snowlink-aggregate` drops them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use snowlink_events::kafka::{HEADER_SEQ, HEADER_SPOOL};
use snowlink_store::ClickSpool;

/// Most events read from the spool and in flight at once.
const BATCH: usize = 5_000;
const IDLE_POLL: Duration = Duration::from_millis(20);
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    /// How long a message may wait for delivery before the batch is retried.
    pub message_timeout: Duration,
}

/// Counters exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct ForwardMetrics {
    pub forwarded: AtomicU64,
    pub failures: AtomicU64,
    /// Whether the last batch reached the broker.
    pub connected: AtomicBool,
}

pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<ForwardMetrics>,
}

#[derive(Deserialize)]
struct KeyOnly<'a> {
    #[serde(borrow)]
    code: std::borrow::Cow<'a, str>,
}

fn producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", "snowlink")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            settings.message_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", (BATCH * 2).to_string())
        .create()
}

impl Forwarder {
    /// Opens its own connection to the spool and starts forwarding.
    pub fn start(spool_path: &Path, settings: KafkaSettings) -> anyhow::Result<Self> {
        let mut spool = ClickSpool::open(spool_path)?;
        spool.claim(snowlink_store::CONSUMER_KAFKA).map_err(|e| {
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
        drop(producer(&settings)?);
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
            thread: Some(thread),
            metrics,
        })
    }

    pub fn metrics(&self) -> Arc<ForwardMetrics> {
        self.metrics.clone()
    }

    /// Forwards what is spooled (giving up after a few seconds if the broker
    /// is away: the rest stays in the spool for the next start) and stops.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

struct Worker {
    spool: ClickSpool,
    spool_id: String,
    settings: KafkaSettings,
    stop: Arc<AtomicBool>,
    metrics: Arc<ForwardMetrics>,
}

enum Outcome {
    /// Every event of the batch was delivered.
    Delivered,
    /// Events before this index were delivered; the rest must be resent.
    FailedAt(usize, KafkaError),
}

impl Worker {
    fn run(mut self) {
        let mut producer = None;
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
            let checkpoint = match self.spool.progress() {
                Ok(p) => p.checkpoint,
                Err(e) => {
                    tracing::error!(error = %e, "reading the click spool failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let rows = match self.spool.read_after(checkpoint, BATCH) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "reading the click spool failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if rows.is_empty() {
                if stop_deadline.is_some() {
                    break;
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            let p = match producer.take() {
                Some(p) => p,
                None => match producer_or_log(&self.settings) {
                    Some(p) => p,
                    None => {
                        std::thread::sleep(backoff);
                        continue;
                    }
                },
            };
            let outcome = self.send(&p, &rows, stop_deadline);
            let delivered = match &outcome {
                Outcome::Delivered => rows.len(),
                Outcome::FailedAt(i, _) => *i,
            };
            if delivered > 0 {
                let last = rows[delivered - 1].0;
                // Rows are released only after their delivery is confirmed.
                if let Err(e) = self.spool.complete(last, &[]) {
                    tracing::error!(error = %e, "releasing forwarded clicks failed; they will be resent");
                }
                self.metrics
                    .forwarded
                    .fetch_add(delivered as u64, Ordering::Relaxed);
            }
            match outcome {
                Outcome::Delivered => {
                    self.metrics.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    producer = Some(p);
                }
                Outcome::FailedAt(_, e) => {
                    self.metrics.connected.store(false, Ordering::Relaxed);
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    if last_warn.elapsed() >= WARN_EVERY {
                        last_warn = Instant::now();
                        tracing::warn!(
                            error = %e,
                            backlog = self.spool.backlog().unwrap_or(-1),
                            "kafka unavailable: clicks stay in the local spool and will be forwarded when it returns"
                        );
                    }
                    // A fresh producer session for the resend.
                    drop(p);
                    if stop_deadline.is_none() {
                        std::thread::sleep(backoff);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::debug!("kafka forwarder stopped");
    }

    /// Produces `rows` and waits for every delivery report.
    fn send(
        &self,
        producer: &FutureProducer,
        rows: &[(i64, String)],
        give_up_at: Option<Instant>,
    ) -> Outcome {
        let mut pending = Vec::with_capacity(rows.len());
        for (i, (seq, json)) in rows.iter().enumerate() {
            let key = serde_json::from_str::<KeyOnly>(json)
                .map(|k| k.code.into_owned())
                .unwrap_or_default();
            let seq_text = seq.to_string();
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: HEADER_SPOOL,
                    value: Some(self.spool_id.as_str()),
                })
                .insert(Header {
                    key: HEADER_SEQ,
                    value: Some(seq_text.as_str()),
                });
            let mut record = FutureRecord::to(&self.settings.topic)
                .key(key.as_str())
                .payload(json.as_str())
                .headers(headers);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        return self.wait(pending, i, Some(e), give_up_at);
                    }
                }
            }
        }
        let n = pending.len();
        self.wait(pending, n, None, give_up_at)
    }

    /// Waits for the first `sent` deliveries; the batch counts as delivered
    /// up to the first failure.
    fn wait(
        &self,
        pending: Vec<rdkafka::producer::DeliveryFuture>,
        sent: usize,
        send_error: Option<KafkaError>,
        mut give_up_at: Option<Instant>,
    ) -> Outcome {
        for (i, mut delivery) in pending.into_iter().enumerate() {
            let report = loop {
                if let Some(report) = (&mut delivery).now_or_never() {
                    break report;
                }
                if give_up_at.is_none() && self.stop.load(Ordering::Relaxed) {
                    give_up_at = Some(Instant::now() + Duration::from_secs(5));
                }
                if give_up_at.is_some_and(|d| Instant::now() >= d) {
                    // Shutting down with the broker away: the rest stays spooled.
                    return Outcome::FailedAt(i, KafkaError::Canceled);
                }
                std::thread::sleep(Duration::from_micros(500));
            };
            match report {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Outcome::FailedAt(i, e),
                Err(_canceled) => return Outcome::FailedAt(i, KafkaError::Canceled),
            }
        }
        match send_error {
            None => Outcome::Delivered,
            Some(e) => Outcome::FailedAt(sent, e),
        }
    }
}

fn producer_or_log(settings: &KafkaSettings) -> Option<FutureProducer> {
    match producer(settings) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "creating the kafka producer failed");
            None
        }
    }
}
