//! In-process read-through cache in front of the link store.
//!
//! * Found links stay for `ttl`; unknown codes are remembered as unknown for
//!   a short `negative_ttl`, so a flood of requests for junk codes does not
//!   reach the store.
//! * Concurrent misses for one code are coalesced: moka runs one loader and
//!   every waiter shares its result, so the store sees one read per code at a
//!   time however many requests miss together.
//! * Creating or deleting a link invalidates its entry in this process.
//!   The cached value carries `expires_at`, so expiry needs no invalidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use snowlink_store::{Link, LinkStore, StoreError};

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
        Self { cache, store }
    }

    /// The link under `code`, from the cache or (once per code at a time)
    /// from the store.
    pub async fn get(&self, code: &str) -> Result<Entry, Arc<StoreError>> {
        let store = &self.store;
        self.cache
            .try_get_with_by_ref(code, async move {
                store.get_link(code).await.map(|link| link.map(Arc::new))
            })
            .await
    }

    pub async fn invalidate(&self, code: &str) {
        self.cache.invalidate(code).await;
    }
}
