//! Click capture: from a served redirect to a durable event in the spool.
//!
//! ```text
//! redirect handler --try_send--> bounded channel --> spooler thread --> ClickSpool (SQLite)
//!                     (never waits)                  (enrich, batch, one transaction per batch)
//! ```
//!
//! **Full channel policy: shed.** The redirect never waits for analytics. When
//! the channel is full (the spool cannot keep up, or is failing), the click is
//! dropped, counted in `snowlink_clicks_dropped_total`, and reported by a log
//! line at most every 10 seconds. At normal load the channel is nearly empty:
//! the spooler lets clicks gather for 5 ms, then writes them in one
//! transaction (one fsync), which takes about a millisecond.
//!
//! The raw client IP exists only in memory, inside this channel: the spooler
//! turns it into `visitor_id`, a SipHash of (IP, user agent) keyed with a
//! random key of the UTC day, and drops it. The keys live apart from the
//! spool and the lake ([`crate::visitor_keys`]), and each is deleted when its
//! day is over, so visitors cannot be linked across days. The referrer is
//! kept as scheme, host and path: query strings carry tokens.
//!
//! Shutdown sends a marker through the channel; the spooler closes the
//! channel, writes everything still queued, and exits.

use std::hash::Hasher;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use siphasher::sip::SipHasher13;
use snowlink_events::{ClickEventRef, SCHEMA_VERSION};
use snowlink_spool::ClickSpool;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::visitor_keys::VisitorKeys;
use crate::EventIds;

/// Longest a click waits for an event id (lease renewal, clock catch-up).
const EVENT_ID_WAIT: Duration = Duration::from_secs(10);

/// Most clicks written in one spool transaction.
const MAX_BATCH: usize = 4096;
/// How long the spooler lets clicks gather after the first one of a batch:
/// at most this many milliseconds' worth of clicks wait in memory, and the
/// spool commits (and fsyncs) at most 1000 / this many times per second.
const BATCH_LINGER: Duration = Duration::from_millis(5);
const DROP_LOG_EVERY_MS: i64 = 10_000;
/// How long shutdown keeps retrying a spool that cannot be written before
/// the clicks still held go to the rescue file.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a spool write waits for another process's lock.
const SPOOL_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_USER_AGENT: usize = 512;
pub const MAX_REFERRER: usize = 2048;

/// The `clicks` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickSettings {
    /// Record a click event for every redirect.
    #[arg(
        id = "clicks_enabled",
        long = "clicks-enabled",
        env = "SNOWLINK_CLICKS_ENABLED",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,
    /// Clicks that may wait in memory for the spool before new ones are shed.
    #[arg(
        id = "click_queue_capacity",
        long = "click-queue-capacity",
        env = "SNOWLINK_CLICK_QUEUE_CAPACITY",
        value_name = "N",
        default_value_t = 65_536,
        value_parser = clap::value_parser!(u64).range(1..=16_777_216)
    )]
    pub queue_capacity: u64,
    /// Directory of the daily visitor-hash keys (made mode 0700, files 0600) [default: DATA_DIR/visitor-keys].
    /// A key and a lake row together can confirm a guessed IP: keep this where readers of the lake and the
    /// spool cannot reach it. Each key is deleted when the next day's key is made.
    #[arg(long, env = "SNOWLINK_VISITOR_KEY_DIR", value_name = "DIR")]
    pub visitor_key_dir: Option<std::path::PathBuf>,
}

/// At most one log line per interval for a failure that repeats per click,
/// saying how many were not logged.
#[derive(Debug)]
pub struct LogThrottle {
    every_ms: i64,
    last_ms: AtomicI64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogThrottle {
    pub fn new(every_ms: i64) -> Self {
        Self {
            every_ms,
            last_ms: AtomicI64::new(i64::MIN / 2),
            suppressed: Default::default(),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// suppressed since the last one; `None` otherwise (counted).
    pub fn allow(&self) -> Option<u64> {
        let now = snowlink_events::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now - last >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// What the redirect handler knows about a click.
#[derive(Debug, Clone)]
pub struct RawClick {
    pub code: String,
    pub ts: i64,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    /// Used for `visitor_id` only; never stored.
    pub ip: Option<IpAddr>,
    pub country: Option<String>,
}

enum Msg {
    Click(RawClick),
    Shutdown,
}

/// Counters exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct ClickMetrics {
    pub enqueued: Counter,
    pub dropped: Counter,
    pub spooled: Counter,
    /// Kept in the rescue file at shutdown; they reach the spool (and are
    /// counted as spooled) at the next start.
    pub rescued: Counter,
    pub spool_writes: Counter,
    pub spool_errors: Counter,
}

/// The handler's end of the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct ClickSender {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<ClickMetrics>,
    drop_log: Arc<LogThrottle>,
}

impl ClickSender {
    /// Hands the click over without waiting; drops it if the channel is full.
    pub fn send(&self, click: RawClick) {
        match self.tx.try_send(Msg::Click(click)) {
            Ok(()) => {
                self.metrics.enqueued.inc();
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                let dropped = self.metrics.dropped.inc() + 1;
                if self.drop_log.allow().is_some() {
                    tracing::warn!(
                        dropped_total = dropped,
                        "click channel full: dropping click events (the spool is not keeping up)"
                    );
                }
            }
        }
    }

    pub fn metrics(&self) -> &ClickMetrics {
        &self.metrics
    }
}

/// The running pipeline: the sender plus the spooler thread.
pub struct ClickPipeline {
    sender: ClickSender,
    thread: Mutex<Option<JoinHandle<()>>>,
    depth: Arc<SpoolDepth>,
    /// When shutdown began (ms since the epoch); 0 while running.
    stop_at_ms: Arc<AtomicI64>,
}

/// Reports how many clicks wait in the spool for its consumer, read from
/// the spool at each scrape (two single-row reads).
struct SpoolDepth {
    spool: Mutex<ClickSpool>,
}

impl std::fmt::Debug for SpoolDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolDepth")
    }
}

impl Collector for SpoolDepth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(depth) = self.spool.lock().expect("spool").depth() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(depth);
        let metric = encoder.encode_descriptor(
            "spool_depth",
            "Click events in the spool not yet taken by its consumer (the lake or Kafka)",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

impl ClickPipeline {
    /// Opens the spool at `spool_path` and starts the spooler thread.
    pub fn start(
        spool_path: &Path,
        keys: VisitorKeys,
        ids: Arc<dyn EventIds>,
        capacity: usize,
    ) -> anyhow::Result<Self> {
        let mut spool = ClickSpool::open(spool_path)?;
        spool.set_busy_timeout(SPOOL_BUSY_TIMEOUT)?;
        // Clicks a previous run could only keep in the rescue file.
        let taken = spool
            .take_rescued(&snowlink_spool::rescue_path(spool_path))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the rescue file stays for the next start");
                0
            });
        if taken > 0 {
            tracing::info!(
                events = taken,
                "click events from the rescue file moved into the spool"
            );
        }
        let depth = Arc::new(SpoolDepth {
            spool: Mutex::new(ClickSpool::open(spool_path)?),
        });
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let metrics = Arc::new(ClickMetrics::default());
        metrics.spooled.inc_by(taken as u64);
        let stop_at_ms = Arc::new(AtomicI64::new(0));
        let spooler = Spooler {
            spool,
            spool_path: spool_path.to_path_buf(),
            ids,
            metrics: metrics.clone(),
            enricher: Enricher::new(),
            keys,
            day_key: None,
            row_buf: Vec::new(),
            stop_at_ms: stop_at_ms.clone(),
            error_log: LogThrottle::new(DROP_LOG_EVERY_MS),
        };
        let thread = std::thread::Builder::new()
            .name("click-spooler".into())
            .spawn(move || spooler.run(rx))?;
        Ok(Self {
            sender: ClickSender {
                tx,
                metrics,
                drop_log: Arc::new(LogThrottle::new(DROP_LOG_EVERY_MS)),
            },
            thread: Mutex::new(Some(thread)),
            depth,
            stop_at_ms,
        })
    }

    pub fn sender(&self) -> ClickSender {
        self.sender.clone()
    }

    /// Writes every queued click to the spool and stops the thread. Bounded:
    /// if the spool cannot be written for [`SHUTDOWN_GRACE`], the clicks
    /// still held go to the rescue file (moved into the spool at the next
    /// start), or are counted as dropped if even that fails.
    pub async fn shutdown(&self) {
        let Some(thread) = self.thread.lock().expect("spooler thread").take() else {
            return;
        };
        self.stop_at_ms
            .store(snowlink_events::now_ms(), Ordering::Relaxed);
        // The channel may be full of clicks the spooler cannot write: it
        // also sees the stop through `stop_at_ms`, so the marker is only a
        // wake-up and may be skipped.
        let _ = self.sender.tx.try_send(Msg::Shutdown);
        let join = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(SHUTDOWN_GRACE * 3, join)
            .await
            .is_err()
        {
            tracing::error!("the click spooler did not stop in time; exiting without it");
        }
        let m = self.sender.metrics();
        tracing::info!(
            spooled = m.spooled.get(),
            dropped = m.dropped.get(),
            "click spooler drained"
        );
    }
}

impl ClickPipeline {
    /// Registers the pipeline's counters and the spool's depth.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = self.sender.metrics();
        registry.register(
            "clicks_enqueued",
            "Click events handed to the spooler",
            m.enqueued.clone(),
        );
        registry.register(
            "clicks_dropped",
            "Click events lost: shed because the click channel was full, or not recordable (no event id, no visitor key, neither the spool nor the rescue file writable)",
            m.dropped.clone(),
        );
        registry.register(
            "clicks_spooled",
            "Click events durably written to the spool",
            m.spooled.clone(),
        );
        registry.register(
            "clicks_rescued",
            "Click events the spool could not take at shutdown, kept in the rescue file and moved into the spool at the next start",
            m.rescued.clone(),
        );
        registry.register(
            "spool_writes",
            "Batches of click events written to the spool (one transaction and one row each)",
            m.spool_writes.clone(),
        );
        registry.register(
            "spool_errors",
            "Failed spool writes (retried)",
            m.spool_errors.clone(),
        );
        registry.register_collector(Box::new(self.depth.clone()));
    }
}

struct Spooler {
    spool: ClickSpool,
    spool_path: std::path::PathBuf,
    stop_at_ms: Arc<AtomicI64>,
    /// Spool and enrichment failures repeat per batch or per click.
    error_log: LogThrottle,
    ids: Arc<dyn EventIds>,
    metrics: Arc<ClickMetrics>,
    enricher: Enricher,
    keys: VisitorKeys,
    /// Key of the current UTC day: (day, k0, k1).
    day_key: Option<(i64, u64, u64)>,
    /// The rows of the batch being written, kept for the next batch.
    row_buf: Vec<u8>,
}

impl Spooler {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<RawClick> = Vec::with_capacity(MAX_BATCH);
        let mut stopping = false;
        while !stopping {
            match rx.blocking_recv() {
                Some(Msg::Click(c)) => batch.push(c),
                Some(Msg::Shutdown) | None => stopping = true,
            }
            stopping |= self.stop_requested();
            if stopping {
                rx.close();
            } else {
                // Let a batch gather before committing: one fsync per
                // linger, not one per handful of clicks, leaves the cores
                // to the HTTP workers under load.
                std::thread::sleep(BATCH_LINGER);
            }
            // Take whatever else is queued; when stopping, take everything.
            while stopping || batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Click(c)) => batch.push(c),
                    Ok(Msg::Shutdown) => {
                        stopping = true;
                        rx.close();
                    }
                    Err(_) => break,
                }
                if batch.len() >= MAX_BATCH {
                    self.flush(&mut batch);
                }
            }
            self.flush(&mut batch);
        }
        tracing::debug!("click spooler stopped");
    }

    fn flush(&mut self, batch: &mut Vec<RawClick>) {
        if batch.is_empty() {
            return;
        }
        // Every row of the batch in one buffer: one allocation per batch.
        let mut buf = std::mem::take(&mut self.row_buf);
        buf.clear();
        let mut ends = Vec::with_capacity(batch.len());
        for raw in batch.drain(..) {
            if self.encode(&raw, &mut buf) {
                ends.push(buf.len());
            }
        }
        let mut start = 0;
        let rows: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let row = &buf[start..end];
                start = end;
                row
            })
            .collect();
        let mut attempt = 0u32;
        loop {
            match self.spool.append_batch(&rows) {
                Ok(()) => {
                    self.metrics.spooled.inc_by(rows.len() as u64);
                    self.metrics.spool_writes.inc();
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    self.metrics.spool_errors.inc();
                    if let Some(suppressed) = self.error_log.allow() {
                        tracing::error!(error = %e, attempt, events = rows.len(), suppressed, "click spool write failed; retrying");
                    }
                    if self.past_grace() {
                        self.rescue(&rows);
                        break;
                    }
                    // Keep the batch and retry; meanwhile the channel fills and
                    // new clicks are shed (counted), never the ones held here.
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt.min(10))));
                }
            }
        }
        drop(rows);
        self.row_buf = buf;
    }

    fn stop_requested(&self) -> bool {
        self.stop_at_ms.load(Ordering::Relaxed) != 0
    }

    /// Shutdown began more than [`SHUTDOWN_GRACE`] ago.
    fn past_grace(&self) -> bool {
        let at = self.stop_at_ms.load(Ordering::Relaxed);
        at != 0 && snowlink_events::now_ms() - at >= SHUTDOWN_GRACE.as_millis() as i64
    }

    /// Keeps `rows` in the rescue file, the spool being unwritable at
    /// shutdown.
    fn rescue(&self, rows: &[&[u8]]) {
        match snowlink_spool::rescue(&self.spool_path, rows) {
            Ok(()) => {
                self.metrics.rescued.inc_by(rows.len() as u64);
                tracing::warn!(
                    events = rows.len(),
                    path = %snowlink_spool::rescue_path(&self.spool_path).display(),
                    "the spool cannot be written: click events kept in the rescue file, moved into the spool at the next start"
                );
            }
            Err(e) => {
                self.metrics.dropped.inc_by(rows.len() as u64);
                tracing::error!(error = %e, events = rows.len(), "neither the spool nor the rescue file can be written: click events lost");
            }
        }
    }

    /// Enriches `raw` and appends its spool row to `out`; false when the
    /// click is dropped. Nothing of the event is allocated per click: text
    /// is borrowed from the click and from the enricher's memory.
    fn encode(&mut self, raw: &RawClick, out: &mut Vec<u8>) -> bool {
        // Event ids are ids like any other: issued only under the worker-id
        // lease and inside the persisted reservation. While neither holds
        // (a lost lease, a clock behind), the click waits here, for up to
        // EVENT_ID_WAIT; the queue behind it fills and sheds new clicks.
        let mut waited = Duration::ZERO;
        let event_id = loop {
            match self.ids.next_event_id() {
                Ok(id) => break id as i64,
                Err(e) if waited < EVENT_ID_WAIT && !self.stop_requested() => {
                    if waited.is_zero() {
                        if let Some(suppressed) = self.error_log.allow() {
                            tracing::warn!(error = %e, suppressed, "no event id yet; holding the click");
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    waited += Duration::from_millis(50);
                }
                Err(e) => {
                    self.metrics.dropped.inc();
                    if let Some(suppressed) = self.error_log.allow() {
                        tracing::error!(error = %e, suppressed, "no event id for a click; dropped");
                    }
                    return false;
                }
            }
        };
        let Some((k0, k1)) = self.key_for(raw.ts) else {
            return false;
        };
        let mut h = SipHasher13::new_with_keys(k0, k1);
        if let Some(ip) = raw.ip {
            match ip.to_canonical() {
                IpAddr::V4(v4) => h.write(&v4.octets()),
                IpAddr::V6(v6) => h.write(&v6.octets()),
            }
        }
        h.write_u8(0xff);
        h.write(raw.user_agent.as_deref().unwrap_or("").as_bytes());
        let visitor = hex16(h.finish());
        let (ua, referrer) = self
            .enricher
            .describe(raw.user_agent.as_deref(), raw.referrer.as_deref());
        ClickEventRef {
            schema_version: SCHEMA_VERSION,
            event_id,
            code: &raw.code,
            ts: raw.ts,
            referrer: referrer.map(|(r, _)| r),
            referrer_host: referrer.map(|(_, h)| h),
            user_agent: raw.user_agent.as_deref(),
            browser: ua.browser.as_deref(),
            os: ua.os.as_deref(),
            device: Some(ua.device),
            is_bot: ua.is_bot,
            country: raw.country.as_deref(),
            visitor_id: std::str::from_utf8(&visitor).expect("hex digits are ASCII"),
        }
        .encode_row(out);
        true
    }

    fn key_for(&mut self, ts: i64) -> Option<(u64, u64)> {
        let day = crate::visitor_keys::day_of(ts);
        if let Some((d, k0, k1)) = self.day_key {
            if d == day {
                return Some((k0, k1));
            }
        }
        match self.keys.key(day) {
            Ok(s) => {
                let k0 = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
                let k1 = u64::from_le_bytes(s[8..].try_into().expect("8 bytes"));
                self.day_key = Some((day, k0, k1));
                Some((k0, k1))
            }
            Err(e) => {
                self.metrics.dropped.inc();
                if let Some(suppressed) = self.error_log.allow() {
                    tracing::error!(error = %e, suppressed, "cannot read the visitor key; click dropped");
                }
                None
            }
        }
    }
}

/// `v` as 16 lower-case hex digits, as `format!("{v:016x}")` writes it.
fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// What is kept of a `Referer`: its scheme, host, port and path (never the
/// user info, query or fragment, which carry tokens and addresses), and its
/// lower-cased host. Anything that is not a URL with a host is dropped.
pub fn clean_referrer(referrer: &str) -> Option<(String, String)> {
    let url = url::Url::parse(referrer).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut kept = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        kept.push_str(&format!(":{port}"));
    }
    kept.push_str(url.path());
    Some((truncate(kept, MAX_REFERRER), host))
}

/// What a user agent says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: &'static str,
    pub is_bot: bool,
}

impl UaInfo {
    /// What is known of a visit without a user agent (or a blank one).
    fn unknown() -> Self {
        Self {
            browser: None,
            os: None,
            device: "other",
            is_bot: false,
        }
    }
}

/// User-agent parsing (woothee) and bot detection (isbot's maintained list,
/// plus woothee's crawler category), with the answers for recent user
/// agents remembered: traffic repeats a small set of them, and parsing plus
/// the bot patterns cost far more than a lookup.
pub struct Enricher {
    parser: woothee::parser::Parser,
    bots: isbot::Bots,
    seen: Memory<UaInfo>,
    no_agent: UaInfo,
    /// Cleaned referrers (and their hosts) by the header as sent.
    referrers: Memory<Option<(String, String)>>,
    /// The cleaned form of a referrer too long to remember.
    long_referrer: Option<(String, String)>,
}

type Memory<T> = std::collections::HashMap<String, T, foldhash::fast::RandomState>;

/// Keeps `value` under `key`, forgetting everything first when `memory`
/// holds `capacity` entries: a bounded memory with no bookkeeping per hit.
fn remember<T>(memory: &mut Memory<T>, capacity: usize, key: &str, value: T) {
    if memory.len() >= capacity {
        memory.clear();
    }
    memory.insert(key.to_owned(), value);
}

/// User agents, and referrers, remembered by an [`Enricher`]; each memory is
/// cleared when full.
const UA_CACHE: usize = 4096;
const REFERRER_CACHE: usize = 4096;
/// Longer referrers are cleaned every time, not remembered.
const REFERRER_CACHE_MAX_LEN: usize = 256;

impl Default for Enricher {
    fn default() -> Self {
        Self::new()
    }
}

impl Enricher {
    pub fn new() -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
            seen: Memory::default(),
            no_agent: UaInfo::unknown(),
            referrers: Memory::default(),
            long_referrer: None,
        }
    }

    /// What `ua` says, from memory when it was seen recently.
    pub fn parse(&mut self, ua: Option<&str>) -> UaInfo {
        self.describe(ua, None).0.clone()
    }

    /// What a visit's user agent says, and its referrer cleaned (see
    /// [`clean_referrer`]) with its host; both from memory when seen
    /// recently, and borrowed from it.
    pub fn describe(
        &mut self,
        ua: Option<&str>,
        referrer: Option<&str>,
    ) -> (&UaInfo, Option<(&str, &str)>) {
        if let Some(key) = ua.filter(|k| !self.seen.contains_key(*k)) {
            let info = self.parse_uncached(Some(key));
            remember(&mut self.seen, UA_CACHE, key, info);
        }
        let long = referrer.filter(|r| r.len() > REFERRER_CACHE_MAX_LEN);
        if let Some(r) = long {
            self.long_referrer = clean_referrer(r);
        } else if let Some(r) = referrer.filter(|r| !self.referrers.contains_key(*r)) {
            remember(&mut self.referrers, REFERRER_CACHE, r, clean_referrer(r));
        }
        let info = match ua {
            Some(key) => &self.seen[key],
            None => &self.no_agent,
        };
        let cleaned = match (long, referrer) {
            (Some(_), _) => self.long_referrer.as_ref(),
            (None, Some(r)) => self.referrers[r].as_ref(),
            (None, None) => None,
        };
        (info, cleaned.map(|(r, h)| (r.as_str(), h.as_str())))
    }

    fn parse_uncached(&self, ua: Option<&str>) -> UaInfo {
        let Some(ua) = ua.filter(|s| !s.trim().is_empty()) else {
            return UaInfo::unknown();
        };
        let parsed = self.parser.parse(ua);
        let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_owned());
        let (browser, os, category) = match &parsed {
            Some(r) => (known(r.name), known(r.os), r.category),
            None => (None, None, ""),
        };
        let is_bot = category == "crawler" || self.bots.is_bot(ua);
        let lower = ua.to_ascii_lowercase();
        let device = if is_bot {
            "bot"
        } else if lower.contains("ipad")
            || lower.contains("tablet")
            || (lower.contains("android") && !lower.contains("mobile"))
        {
            "tablet"
        } else {
            match category {
                "pc" => "desktop",
                "smartphone" | "mobilephone" => "mobile",
                _ => "other",
            }
        };
        UaInfo {
            browser,
            os,
            device,
            is_bot,
        }
    }
}

/// Truncates to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn user_agents() {
        let mut e = Enricher::new();
        let chrome = e.parse(Some(CHROME_WIN));
        assert_eq!(chrome.browser.as_deref(), Some("Chrome"));
        assert_eq!(chrome.device, "desktop");
        assert!(!chrome.is_bot);
        let iphone = e.parse(Some(SAFARI_IPHONE));
        assert_eq!(iphone.device, "mobile");
        assert_eq!(iphone.os.as_deref(), Some("iPhone"));
        let bot = e.parse(Some(GOOGLEBOT));
        assert!(bot.is_bot);
        assert_eq!(bot.device, "bot");
        assert!(e.parse(Some("curl/8.5.0")).is_bot);
        assert!(!e.parse(None).is_bot);
        // Remembered answers are the same answers.
        assert_eq!(e.parse(Some(GOOGLEBOT)), bot);
        assert_eq!(e.parse(Some(CHROME_WIN)), chrome);
    }

    #[test]
    fn referrers_keep_scheme_host_and_path_only() {
        assert_eq!(
            clean_referrer("https://News.Example.com/a?b"),
            Some((
                "https://news.example.com/a".into(),
                "news.example.com".into()
            ))
        );
        assert_eq!(
            clean_referrer("https://user:pw@mail.example:8443/reset?token=SECRET-123#x"),
            Some((
                "https://mail.example:8443/reset".into(),
                "mail.example".into()
            ))
        );
        assert_eq!(clean_referrer("not a url"), None);
        assert_eq!(clean_referrer("data:text/plain,hi"), None);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }

    #[test]
    fn visitor_ids_are_sixteen_hex_digits() {
        for v in [0, 1, 0xff, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(std::str::from_utf8(&hex16(v)).unwrap(), format!("{v:016x}"));
        }
    }

    /// Remembered answers are the answers: for user agents and for short
    /// and long referrers, the first time, again, and after the memory of
    /// referrers has been cleared for being full.
    #[test]
    fn described_visits_match_their_parsing() {
        let mut e = Enricher::new();
        let long = format!(
            "https://long.example/{}",
            "p".repeat(REFERRER_CACHE_MAX_LEN)
        );
        let referrers = [
            Some("https://News.Example.com/a?b"),
            Some("not a url"),
            Some(long.as_str()),
            None,
        ];
        let agents = [Some(CHROME_WIN), Some(GOOGLEBOT), Some("  "), None];
        for round in 0..3 {
            if round == 2 {
                for i in 0..=REFERRER_CACHE {
                    e.describe(None, Some(&format!("https://r{i}.example/")));
                }
            }
            for (ua, referrer) in agents.iter().zip(referrers.iter()) {
                let fresh = Enricher::new().parse_uncached(*ua);
                let expected = referrer.and_then(clean_referrer);
                let (info, cleaned) = e.describe(*ua, *referrer);
                assert_eq!(info, &fresh, "{ua:?}");
                assert_eq!(
                    cleaned,
                    expected.as_ref().map(|(r, h)| (r.as_str(), h.as_str())),
                    "{referrer:?}"
                );
            }
        }
        assert!(e.referrers.len() <= REFERRER_CACHE);
        assert!(!e.referrers.contains_key(long.as_str()));
    }
}
