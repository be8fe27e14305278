//! Where this instance's Snowflake worker id comes from, and whether it may
//! still issue ids.
//!
//! Two instances with the same worker id would mint the same ids, hence the
//! same codes. The id is either configured (the operator guarantees it is
//! unique) or leased from Redis:
//!
//! * acquire: `SET snowlink:worker:<id> <token> NX PX <ttl>` over the ids,
//!   starting at a random one, until one is free; none free, or Redis
//!   unreachable, and the service refuses to start;
//! * renew every `ttl / 3` with a script that extends the key only if it
//!   still holds this instance's token;
//! * the lease is trusted until `sent + ttl - ttl / 5`, where `sent` is when
//!   the acquiring or renewing command was sent, before Redis could have
//!   started the expiry. Past that, creates answer 503 until a renewal
//!   succeeds, so the instance has stopped issuing ids before any other
//!   instance could take its id;
//! * released (only if still ours) on shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

pub const KEY_PREFIX: &str = "snowlink:worker:";

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the worker id lease expired (redis unreachable or the lease was taken); not issuing ids until it is renewed")]
    Expired,
}

/// A worker id: given in the settings, leased from Redis, or held on this
/// machine's data directory.
#[derive(Clone)]
pub enum WorkerId {
    Fixed(u64),
    Leased(Arc<WorkerLease>),
    Local(Arc<LocalLease>),
}

impl WorkerId {
    pub fn id(&self) -> u64 {
        match self {
            WorkerId::Fixed(id) => *id,
            WorkerId::Leased(lease) => lease.worker_id,
            WorkerId::Local(lease) => lease.worker_id,
        }
    }

    /// Whether ids may be issued now.
    pub fn check(&self) -> Result<(), LeaseError> {
        match self {
            WorkerId::Fixed(_) | WorkerId::Local(_) => Ok(()),
            WorkerId::Leased(lease) => lease.check(),
        }
    }
}

/// A worker id held by this process among those that share a data
/// directory (the embedded store's machine): the lowest id whose lock file,
/// `DATA_DIR/ids/worker-N.lock`, no other process has locked. The lock goes
/// with the process, however it ends, so a service and an import running
/// side by side never issue ids as the same worker.
pub struct LocalLease {
    worker_id: u64,
    _lock: std::fs::File,
}

impl LocalLease {
    /// Locks the lowest free worker id among `0..=max_worker`.
    pub fn acquire(data_dir: &std::path::Path, max_worker: u64) -> anyhow::Result<Self> {
        use anyhow::Context;
        let dir = data_dir.join("ids");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for id in 0..=max_worker {
            let path = dir.join(format!("worker-{id}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        worker_id: id,
                        _lock: file,
                    })
                }
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        anyhow::bail!(
            "all {} worker ids of {} are held by other processes",
            max_worker + 1,
            data_dir.display()
        )
    }

    pub fn worker_id(&self) -> u64 {
        self.worker_id
    }
}

pub struct WorkerLease {
    worker_id: u64,
    token: String,
    ttl: Duration,
    /// Ids may be issued while `monotonic_ms() < valid_until`.
    valid_until: AtomicU64,
    conn: ConnectionManager,
}

impl WorkerLease {
    /// Leases a free worker id among `0..=max_worker`, or fails.
    pub async fn acquire(
        mut conn: ConnectionManager,
        max_worker: u64,
        ttl: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let count = max_worker + 1;
        let start = rand::random::<u64>() % count;
        for i in 0..count {
            let id = (start + i) % count;
            let sent = monotonic_ms();
            let got: Option<String> = redis::cmd("SET")
                .arg(format!("{KEY_PREFIX}{id}"))
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot lease a worker id from redis ({e}); set SNOWLINK_WORKER_ID or make redis reachable")
                })?;
            if got.is_some() {
                let lease = Arc::new(Self {
                    worker_id: id,
                    token,
                    ttl,
                    valid_until: AtomicU64::new(0),
                    conn,
                });
                lease.extend_from(sent);
                tracing::info!(
                    worker_id = id,
                    ttl_ms = ttl.as_millis() as u64,
                    "leased a worker id"
                );
                return Ok(lease);
            }
        }
        anyhow::bail!(
            "all {count} worker ids are leased by other instances; refusing to start without one"
        )
    }

    fn extend_from(&self, sent_ms: u64) {
        let margin = (self.ttl / 5).as_millis() as u64;
        let until = sent_ms + self.ttl.as_millis() as u64 - margin;
        self.valid_until.fetch_max(until, Ordering::AcqRel);
    }

    pub fn worker_id(&self) -> u64 {
        self.worker_id
    }

    pub fn check(&self) -> Result<(), LeaseError> {
        if monotonic_ms() < self.valid_until.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(LeaseError::Expired)
        }
    }

    /// Renews once; true if the lease is (still, or again) ours.
    pub async fn renew(&self) -> bool {
        let sent = monotonic_ms();
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(format!("{KEY_PREFIX}{}", self.worker_id))
            .arg(&self.token)
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        match result {
            Ok(1) => {
                self.extend_from(sent);
                true
            }
            Ok(_) => {
                // Someone else holds our id: stop issuing now.
                self.valid_until.store(0, Ordering::Release);
                tracing::error!(
                    worker_id = self.worker_id,
                    "the worker id lease is held by another instance; no longer issuing ids"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, worker_id = self.worker_id, "renewing the worker id lease failed; will retry");
                false
            }
        }
    }

    /// Renews every `ttl / 3` (faster after a failure) until the task is
    /// aborted.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let every = this.ttl / 3;
            loop {
                let ok = this.renew().await;
                tokio::time::sleep(if ok { every } else { every / 4 }).await;
            }
        })
    }

    /// Gives the id back if it is still ours.
    pub async fn release(&self) {
        self.valid_until.store(0, Ordering::Release);
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(format!("{KEY_PREFIX}{}", self.worker_id))
            .arg(&self.token)
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "releasing the worker id lease failed; it expires by itself");
        }
    }
}

/// A leased worker id as a running part: renewed until shut down, then
/// given back.
pub struct LeaseHolder {
    lease: Arc<WorkerLease>,
    heartbeat: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LeaseHolder {
    /// Starts renewing `lease`.
    pub fn start(lease: Arc<WorkerLease>) -> Self {
        let heartbeat = lease.spawn_heartbeat();
        Self {
            lease,
            heartbeat: std::sync::Mutex::new(Some(heartbeat)),
        }
    }
}

impl crate::components::Component for LeaseHolder {
    fn name(&self) -> &'static str {
        "worker-lease"
    }

    fn health(&self) -> Option<crate::components::Health> {
        let ok = self.lease.check().is_ok();
        Some(crate::components::Health {
            key: "worker_lease",
            ok,
            state: if ok { "ok" } else { "expired" },
        })
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'_, ()> {
        let heartbeat = self.heartbeat.lock().expect("heartbeat").take();
        Box::pin(async move {
            if let Some(heartbeat) = heartbeat {
                heartbeat.abort();
                let _ = heartbeat.await;
                self.lease.release().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_on_one_data_directory_hold_distinct_worker_ids() {
        let dir = tempfile::tempdir().unwrap();
        // Each lease is its own open file, as another process's would be.
        let first = LocalLease::acquire(dir.path(), 1023).unwrap();
        let second = LocalLease::acquire(dir.path(), 1023).unwrap();
        assert_eq!((first.worker_id(), second.worker_id()), (0, 1));
        // A lease ends with its holder: its id is free again.
        drop(first);
        let again = LocalLease::acquire(dir.path(), 1023).unwrap();
        assert_eq!(again.worker_id(), 0);
        // Every id held: refused, with the directory named.
        let only = LocalLease::acquire(dir.path(), 1);
        let err = only.err().expect("ids 0 and 1 are held");
        assert!(err.to_string().contains("held by other processes"), "{err}");
    }
}
