//! In-process read-through cache in front of the link store.
//!
//! * Found links stay for `ttl`; unknown codes are remembered as unknown for
//!   a short `negative_ttl`, so a flood of requests for junk codes does not
//!   reach the store.
//! * Concurrent misses for one code are coalesced: moka runs one loader and
//!   every waiter shares its result, so the store sees one read per code at a
//!   time however many requests miss together.
//! * With Redis configured ([`SharedCache`]), a local miss asks Redis before
//!   the store, and what the store says is written back for the other
//!   instances.
//! * Creating or deleting a link invalidates its entry here, overwrites it in
//!   Redis and tells every other instance to drop it. The cached value
//!   carries `expires_at`, so expiry needs no invalidation.
//! * An invalidation that arrives while a load for the same code is in flight
//!   wins: the loaded value is served to the waiting requests but not kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use snowlink_store::{Link, LinkStore, StoreError};

use crate::shared_cache::SharedCache;

/// `None` is a cached "no such code".
type Entry = Option<Arc<Link>>;

struct TtlPolicy {
    ttl: Duration,
    negative_ttl: Duration,
}

impl moka::Expiry<String, Entry> for TtlPolicy {
    fn expire_after_create(&self, _key: &String, value: &Entry, _at: Instant) -> Option<Duration> {
        Some(match value {
            Some(_) => self.ttl,
            None => self.negative_ttl,
        })
    }
}

#[derive(Clone)]
pub struct LinkCache {
    cache: Cache<String, Entry>,
    store: Arc<dyn LinkStore>,
    shared: Option<Arc<SharedCache>>,
    /// Bumped by every invalidation.
    generation: Arc<AtomicU64>,
}

impl LinkCache {
    pub fn new(
        store: Arc<dyn LinkStore>,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(TtlPolicy { ttl, negative_ttl })
            .build();
        Self {
            cache,
            store,
            shared: None,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Puts Redis between this cache and the store, and starts listening for
    /// changes made by other instances.
    pub fn with_shared(mut self, shared: Arc<SharedCache>) -> Self {
        let local = self.clone();
        shared.spawn_subscriber(move |code| {
            let local = local.clone();
            async move { local.drop_local(code.as_deref()).await }
        });
        self.shared = Some(shared);
        self
    }

    pub fn shared(&self) -> Option<&Arc<SharedCache>> {
        self.shared.as_ref()
    }

    /// The link under `code`, from this process, else Redis, else (once per
    /// code at a time) the store.
    pub async fn get(&self, code: &str) -> Result<Entry, Arc<StoreError>> {
        let generation = self.generation.load(Ordering::Acquire);
        let store = &self.store;
        let shared = self.shared.as_ref();
        let entry = self
            .cache
            .try_get_with_by_ref(code, async move {
                if let Some(shared) = shared {
                    if let Some(hit) = shared.get(code).await {
                        return Ok(hit.map(Arc::new));
                    }
                }
                let link = store.get_link(code).await?;
                if let Some(shared) = shared {
                    shared.fill(code, link.as_ref()).await;
                }
                Ok(link.map(Arc::new))
            })
            .await?;
        if self.generation.load(Ordering::Acquire) != generation {
            // Something changed while this was loading: do not keep it.
            self.cache.invalidate(code).await;
        }
        Ok(entry)
    }

    /// After a create or delete: drops `code` here, records its new state in
    /// Redis and tells the other instances.
    pub async fn changed(&self, code: &str, now: Option<&Link>) {
        self.drop_local(Some(code)).await;
        if let Some(shared) = &self.shared {
            shared.put(code, now).await;
            shared.publish(code).await;
        }
    }

    /// Drops one code, or everything, from this process's cache.
    async fn drop_local(&self, code: Option<&str>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match code {
            Some(code) => self.cache.invalidate(code).await,
            None => self.cache.invalidate_all(),
        }
    }
}
