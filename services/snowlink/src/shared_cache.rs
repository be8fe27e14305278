//! The Redis tier: a cache shared by every instance, and the channel on which
//! instances tell each other that a link changed.
//!
//! * Entries are `snowlink:link:<code>` holding the link as JSON, or `none`
//!   for an unknown code, with a TTL (found links: the configured TTL with
//!   ±10% jitter, so entries written together do not expire together;
//!   unknown codes: the short negative TTL).
//! * Fills after a store read use `SET NX`: they never overwrite. A change
//!   (create, delete) overwrites with the new state, so a slow fill racing a
//!   delete cannot put the old link back.
//! * Every change is published on `snowlink:invalidate`; each instance drops
//!   the code from its in-process cache. When the subscription is lost, it
//!   reconnects and drops its whole in-process cache, since messages sent
//!   meanwhile are gone.
//! * Redis is never required for a redirect: any Redis error opens a short
//!   circuit during which the tier is skipped and reads go to the store, and
//!   `/readyz` reports `degraded`. The connection manager reconnects by
//!   itself.
//! * A change is never lost to the circuit: when its overwrite or its
//!   publication cannot be made (circuit open, Redis erroring), the change
//!   is kept and retried every [`REPAIR_EVERY`] until both succeed, so no
//!   instance keeps serving the old state from Redis once Redis answers
//!   again. Reads of a code with a change still pending skip Redis.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use snowlink_store::Link;

/// The `redis` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisSettings {
    /// Redis URL, e.g. redis://127.0.0.1:6379: a cache shared by all instances, cross-instance invalidation, worker-id leases.
    /// redis://:PASSWORD@host:6379 or redis://USER:PASSWORD@host:6379 authenticates (AUTH); rediss://... uses TLS.
    /// Never printed (it may hold a password).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "SNOWLINK_REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = crate::configuration::secret
    )]
    pub url: Option<secrecy::SecretString>,
    /// PEM file of the certificate authorities that sign the Redis server's TLS certificate, for rediss:// URLs
    /// [default: the system's trusted roots].
    #[arg(
        id = "redis_ca_file",
        long = "redis-ca-file",
        env = "SNOWLINK_REDIS_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<std::path::PathBuf>,
}

impl RedisSettings {
    /// The Redis client of these settings, `None` without a URL. A
    /// rediss:// URL connects with TLS, checked against `ca_file` or the
    /// system's roots.
    pub fn client(&self) -> anyhow::Result<Option<redis::Client>> {
        use secrecy::ExposeSecret;
        let Some(url) = &self.url else {
            return Ok(None);
        };
        // The URL may hold a password: messages never repeat it.
        let invalid = |e: redis::RedisError| anyhow::anyhow!("redis_url is invalid: {e}");
        // rustls picks its crypto provider from its features, and cannot
        // when a build enables two (the lake's HTTP client brings aws-lc-rs):
        // the service names ring once, before the first TLS connection.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("reading redis_ca_file {}: {e}", path.display())
                })?;
                redis::Client::build_with_tls(
                    url.expose_secret(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(invalid)?
            }
            None => redis::Client::open(url.expose_secret()).map_err(invalid)?,
        };
        Ok(Some(client))
    }

    pub fn normalize(&mut self) {
        use secrecy::ExposeSecret;
        if self
            .url
            .as_ref()
            .is_some_and(|u| u.expose_secret().is_empty())
        {
            self.url = None;
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.ca_file.is_some() && self.url.is_none() {
            anyhow::bail!("redis_ca_file is set without redis_url");
        }
        self.client().map(drop)
    }
}

pub const INVALIDATION_CHANNEL: &str = "snowlink:invalidate";
const KEY_PREFIX: &str = "snowlink:link:";
/// How long the tier is skipped after a Redis error.
const CIRCUIT_OPEN_MS: i64 = 1_000;
/// How often changes that could not reach Redis are retried.
pub const REPAIR_EVERY: Duration = Duration::from_millis(100);
const NONE: &str = "none";

/// The entry of a link: its one serialised form (JSON), or `none` for a
/// code known not to exist.
pub fn encode(link: Option<&Link>) -> String {
    match link {
        None => NONE.to_owned(),
        Some(l) => serde_json::to_string(l).expect("a link always serialises"),
    }
}

/// The entry of `code`, or `None` for an entry that is not ours to trust
/// (then the store decides). Whoever can write to Redis could otherwise
/// send visitors anywhere: an entry is served only if it is the link of
/// this very code, to an http(s) target that is safe in a `Location`
/// header, with a redirect status a link may have.
pub fn decode(raw: &str, code: &str) -> Option<Option<Link>> {
    if raw == NONE {
        return Some(None);
    }
    let link: Link = serde_json::from_str(raw).ok()?;
    let url_ok = (link.url.starts_with("https://") || link.url.starts_with("http://"))
        && link.url.len() <= MAX_ENTRY_URL
        && link.url.bytes().all(|b| b.is_ascii_graphic());
    let valid =
        link.code == code && url_ok && crate::links::REDIRECT_STATUSES.contains(&link.redirect);
    if !valid {
        tracing::warn!(
            code,
            "ignoring a Redis entry that is not a valid link of this code"
        );
        return None;
    }
    Some(Some(link))
}

/// Longest target URL an entry may hold; `--max-url-length` allows up to
/// 1 MiB.
const MAX_ENTRY_URL: usize = 1_048_576;

/// A TTL with ±10% jitter.
fn jittered(ttl: Duration) -> Duration {
    let ms = ttl.as_millis() as u64;
    let spread = ms / 10;
    if spread == 0 {
        return ttl.max(Duration::from_millis(1));
    }
    Duration::from_millis(ms - spread + rand::random::<u64>() % (2 * spread + 1))
}

pub struct SharedCache {
    client: redis::Client,
    conn: ConnectionManager,
    ttl: Duration,
    negative_ttl: Duration,
    /// Skip Redis until this time (ms since the epoch).
    open_until_ms: AtomicI64,
    subscribed: AtomicBool,
    /// Changes not yet recorded in Redis and published: code -> new state.
    pending: std::sync::Mutex<std::collections::HashMap<String, Option<Link>>>,
}

impl SharedCache {
    /// Prepares the connection; does not wait for Redis to answer, so the
    /// service starts (and redirects) while Redis is down.
    pub fn new(
        client: redis::Client,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(300)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            conn,
            ttl,
            negative_ttl,
            open_until_ms: AtomicI64::new(0),
            subscribed: AtomicBool::new(false),
            pending: Default::default(),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn available(&self) -> bool {
        crate::now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &str, e: &redis::RedisError) {
        let now = crate::now_ms();
        let previous = self
            .open_until_ms
            .swap(now + CIRCUIT_OPEN_MS, Ordering::Relaxed);
        if previous <= now {
            tracing::warn!(error = %e, op = what, "redis unavailable; serving from the store");
        }
    }

    /// A write or publication worked: Redis answers, close the circuit.
    fn succeeded(&self) {
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    /// Whether the last Redis call worked and invalidations are arriving.
    pub fn healthy(&self) -> bool {
        self.available() && self.subscribed.load(Ordering::Relaxed)
    }

    /// The cached state of `code`: `Some(None)` is a cached "unknown";
    /// `None` is a miss (or Redis unavailable).
    pub async fn get(&self, code: &str) -> Option<Option<Link>> {
        if !self.available() || self.is_pending(code) {
            return None;
        }
        let mut conn = self.conn.clone();
        match conn
            .get::<_, Option<String>>(format!("{KEY_PREFIX}{code}"))
            .await
        {
            Ok(raw) => raw.as_deref().and_then(|raw| decode(raw, code)),
            Err(e) => {
                self.failed("get", &e);
                None
            }
        }
    }

    /// Stores what the store said, unless an entry is already there.
    pub async fn fill(&self, code: &str, link: Option<&Link>) {
        self.set(code, link, true).await;
    }

    /// Records a change: overwrites the entry and tells every instance. If
    /// either cannot be done now, the change is retried in the background
    /// (see [`SharedCache::spawn_repairer`]) until both are.
    pub async fn record_change(&self, code: &str, link: Option<&Link>) {
        if self.available()
            && !self.is_pending(code)
            && self.write(code, link, false).await.is_ok()
            && self.publish(code).await.is_ok()
        {
            return;
        }
        tracing::warn!(code, "redis missed a change; retrying until it is recorded");
        self.pending
            .lock()
            .expect("pending changes")
            .insert(code.to_owned(), link.cloned());
    }

    fn is_pending(&self, code: &str) -> bool {
        let pending = self.pending.lock().expect("pending changes");
        !pending.is_empty() && pending.contains_key(code)
    }

    /// Changes still waiting for Redis.
    pub fn pending_changes(&self) -> usize {
        self.pending.lock().expect("pending changes").len()
    }

    /// Retries changes that did not reach Redis, every [`REPAIR_EVERY`],
    /// whatever the circuit says: a repair is how the circuit learns that
    /// Redis is back.
    pub fn spawn_repairer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPAIR_EVERY).await;
                let Some(this) = this.upgrade() else { return };
                let batch: Vec<(String, Option<Link>)> = {
                    let pending = this.pending.lock().expect("pending changes");
                    pending
                        .iter()
                        .map(|(c, l)| (c.clone(), l.clone()))
                        .collect()
                };
                for (code, link) in batch {
                    if this.write(&code, link.as_ref(), false).await.is_err()
                        || this.publish(&code).await.is_err()
                    {
                        break;
                    }
                    let mut pending = this.pending.lock().expect("pending changes");
                    // Only if no newer change replaced it meanwhile.
                    if pending.get(&code) == Some(&link) {
                        pending.remove(&code);
                    }
                    drop(pending);
                    tracing::info!(code, "a change missed by redis is now recorded");
                }
            }
        })
    }

    async fn set(&self, code: &str, link: Option<&Link>, only_if_absent: bool) {
        if !self.available() {
            return;
        }
        let _ = self.write(code, link, only_if_absent).await;
    }

    async fn write(
        &self,
        code: &str,
        link: Option<&Link>,
        only_if_absent: bool,
    ) -> redis::RedisResult<()> {
        let ttl = match link {
            Some(_) => jittered(self.ttl),
            None => self.negative_ttl,
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{KEY_PREFIX}{code}"))
            .arg(encode(link))
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        if only_if_absent {
            cmd.arg("NX");
        }
        let mut conn = self.conn.clone();
        let result = cmd.query_async::<()>(&mut conn).await;
        match &result {
            Ok(()) => self.succeeded(),
            Err(e) => self.failed("set", e),
        }
        result
    }

    /// Tells every instance that `code` changed.
    async fn publish(&self, code: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let result = conn.publish::<_, _, ()>(INVALIDATION_CHANNEL, code).await;
        match &result {
            Ok(()) => self.succeeded(),
            Err(e) => self.failed("publish", e),
        }
        result
    }

    /// Listens for changes published by any instance (this one included) and
    /// calls `invalidate(Some(code))`; after every (re)subscription, calls
    /// `invalidate(None)`: drop everything, messages may have been missed.
    pub fn spawn_subscriber<F, Fut>(self: &Arc<Self>, invalidate: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match this.subscribe_once(&invalidate).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        if this.subscribed.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "redis invalidation channel lost; reconnecting");
                        } else {
                            tracing::debug!(error = %e, "redis invalidation channel: cannot connect");
                        }
                    }
                }
                this.subscribed.store(false, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        })
    }

    async fn subscribe_once<F, Fut>(&self, invalidate: &F) -> redis::RedisResult<()>
    where
        F: Fn(Option<String>) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let mut pubsub =
            tokio::time::timeout(Duration::from_secs(1), self.client.get_async_pubsub())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connecting for pub/sub",
                    ))
                })??;
        pubsub.subscribe(INVALIDATION_CHANNEL).await?;
        invalidate(None).await;
        if !self.subscribed.swap(true, Ordering::Relaxed) {
            tracing::info!("subscribed to redis invalidations");
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            if let Ok(code) = msg.get_payload::<String>() {
                invalidate(Some(code)).await;
            }
        }
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "subscription ended",
        )))
    }
}

#[cfg(test)]
mod tests {
    use snowlink_store::CodeKind;

    use super::*;

    #[test]
    fn entries_round_trip() {
        let link = Link {
            code: "abc".into(),
            id: 7,
            kind: CodeKind::Alias,
            url: "https://example.com/x".into(),
            redirect: 308,
            created_at: 1,
            expires_at: Some(2),
            deleted_at: None,
            owner: Some("ci".into()),
            tags: vec![],
            public_stats: false,
        };
        assert_eq!(
            decode(&encode(Some(&link)), "abc"),
            Some(Some(link.clone()))
        );
        // An entry as instances of an earlier version wrote it.
        let earlier = r#"{"code":"abc","id":7,"kind":"alias","url":"https://example.com/x","redirect":308,"created_at":1,"expires_at":2,"deleted_at":null,"owner":"ci"}"#;
        assert_eq!(decode(earlier, "abc"), Some(Some(link.clone())));
        assert_eq!(decode(&encode(None), "abc"), Some(None));
        assert_eq!(decode("garbage", "abc"), None);
        // Entries that are not a valid link of this code are not trusted.
        assert_eq!(
            decode(&encode(Some(&link)), "other"),
            None,
            "another code's entry"
        );
        for (url, redirect) in [
            ("javascript:alert(1)", 302),
            ("https://example.com/\r\nSet-Cookie: a=b", 302),
            ("https://example.com/ok", 200),
            ("//evil.example/", 302),
        ] {
            let forged = Link {
                url: url.into(),
                redirect,
                ..link.clone()
            };
            assert_eq!(
                decode(&encode(Some(&forged)), "abc"),
                None,
                "{url} {redirect}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_secs(300)).as_millis();
            assert!((270_000..=330_000).contains(&j), "{j}");
        }
    }
}
