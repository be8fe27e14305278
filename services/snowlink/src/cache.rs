//! In-process read-through cache in front of the link store.
//!
//! * Found links stay for `ttl`; unknown codes are remembered as unknown for
//!   a short `negative_ttl`, so a flood of requests for junk codes does not
//!   reach the store.
//! * Concurrent misses for one code are coalesced: the first request loads,
//!   the others wait for its result (value or error), so the store sees one
//!   read per code at a time however many requests miss together.
//! * With Redis configured ([`SharedCache`]), a local miss asks Redis before
//!   the store, and what the store says is written back for the other
//!   instances.
//! * Creating or deleting a link invalidates its entry here, overwrites it in
//!   Redis and tells every other instance to drop it. The cached value
//!   carries `expires_at`, so expiry needs no invalidation.
//! * An invalidation that arrives while a load for the same code is in flight
//!   wins: the loaded value is served to the waiting requests but not kept.
//!
//! The map is `quick_cache` (sharded, CLOCK-Pro eviction): a hit is a shard
//! read lock and a hash lookup, which matters on the redirect path. Entries
//! carry their own deadline; an entry past it counts as a miss.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use snowlink_store::{Link, LinkStore, StoreError};

use crate::shared_cache::SharedCache;

/// The `cache` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheSettings {
    /// Links kept in the in-process cache.
    #[arg(
        id = "cache_capacity",
        long = "cache-capacity",
        env = "SNOWLINK_CACHE_CAPACITY",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub capacity: u64,
    /// Seconds a found link stays cached (here and in Redis).
    #[arg(
        id = "cache_ttl_secs",
        long = "cache-ttl-secs",
        env = "SNOWLINK_CACHE_TTL_SECS",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub ttl_secs: u64,
    /// Seconds an unknown code stays cached as unknown.
    #[arg(
        id = "negative_cache_ttl_secs",
        long = "negative-cache-ttl-secs",
        env = "SNOWLINK_NEGATIVE_CACHE_TTL_SECS",
        value_name = "SECS",
        default_value_t = 5
    )]
    pub negative_ttl_secs: u64,
}

impl CacheSettings {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    pub fn negative_ttl(&self) -> Duration {
        Duration::from_secs(self.negative_ttl_secs)
    }
}

/// `None` is a cached "no such code".
type Entry = Option<Arc<Link>>;

/// What one load produced, and until when it may be served.
#[derive(Clone)]
struct Slot {
    value: Result<Entry, Arc<StoreError>>,
    /// Served to requests that asked before this instant. A value not to be
    /// kept (an error, or one outdated by an invalidation during its load)
    /// has the load's end here: it answers the requests that were waiting
    /// for that load, and no later ones.
    until: Instant,
}

const GENERATION_BUCKETS: usize = 256;

struct Generations {
    all: AtomicU64,
    buckets: Vec<AtomicU64>,
}

impl Default for Generations {
    fn default() -> Self {
        Self {
            all: AtomicU64::new(0),
            buckets: (0..GENERATION_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Generations {
    fn bucket(code: &str) -> usize {
        // FNV-1a: cheap, and only spreads codes over buckets.
        let mut h: u32 = 0x811c_9dc5;
        for b in code.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        h as usize % GENERATION_BUCKETS
    }

    /// The pair of counters a load of `code` depends on.
    fn of(&self, code: &str) -> (u64, u64) {
        (
            self.all.load(Ordering::Acquire),
            self.buckets[Self::bucket(code)].load(Ordering::Acquire),
        )
    }

    /// One code changed, or (`None`) everything.
    fn bump(&self, code: Option<&str>) {
        match code {
            Some(code) => self.buckets[Self::bucket(code)].fetch_add(1, Ordering::AcqRel),
            None => self.all.fetch_add(1, Ordering::AcqRel),
        };
    }
}

#[derive(Clone)]
pub struct LinkCache {
    cache: Arc<Cache<String, Slot>>,
    ttl: Duration,
    negative_ttl: Duration,
    store: Arc<dyn LinkStore>,
    shared: Option<Arc<SharedCache>>,
    /// Invalidation counters: one per bucket of codes (bumped when a code of
    /// the bucket changes) and one for the whole cache (bumped when it is
    /// cleared). A load keeps its result only if neither moved meanwhile, so
    /// a stream of creates elsewhere does not stop other codes from caching.
    generations: Arc<Generations>,
    lookups: Option<crate::metrics::CacheLookups>,
}

impl LinkCache {
    pub fn new(
        store: Arc<dyn LinkStore>,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        Self {
            cache: Arc::new(Cache::new(capacity.max(1) as usize)),
            ttl,
            negative_ttl,
            store,
            shared: None,
            generations: Arc::new(Generations::default()),
            lookups: None,
        }
    }

    /// Counts lookups by tier and outcome.
    pub fn with_metrics(mut self, lookups: crate::metrics::CacheLookups) -> Self {
        self.lookups = Some(lookups);
        self
    }

    /// Puts Redis between this cache and the store. Start [`RedisTier`] to
    /// hear about changes made by other instances.
    pub fn with_shared(mut self, shared: Arc<SharedCache>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The link under `code`, from this process, else Redis, else (once per
    /// code at a time) the store.
    pub async fn get(&self, code: &str) -> Result<Entry, Arc<StoreError>> {
        let guard = loop {
            let asked = Instant::now();
            match self.cache.get_value_or_guard_async(code).await {
                Ok(slot) if slot.until > asked => {
                    if let Some(l) = &self.lookups {
                        match &slot.value {
                            Ok(None) => l.local.negative_hit.inc(),
                            _ => l.local.hit.inc(),
                        };
                    }
                    return slot.value;
                }
                // Past its deadline: drop it (unless someone just replaced
                // it) and load again.
                Ok(_) => {
                    self.cache.remove_if(code, |slot| slot.until <= asked);
                }
                Err(guard) => break guard,
            }
        };
        if let Some(l) = &self.lookups {
            l.local.miss.inc();
        }
        let generation = self.generations.of(code);
        let value = self.load(code).await;
        let now = Instant::now();
        let until = if self.generations.of(code) != generation {
            // Something changed while this was loading: serve it to the
            // requests waiting on this load, keep it for no one else.
            now
        } else {
            match &value {
                Ok(Some(_)) => now + self.ttl,
                Ok(None) => now + self.negative_ttl,
                // Errors go to the waiters, not to later requests.
                Err(_) => now,
            }
        };
        let _ = guard.insert(Slot {
            value: value.clone(),
            until,
        });
        value
    }

    async fn load(&self, code: &str) -> Result<Entry, Arc<StoreError>> {
        if let Some(shared) = &self.shared {
            let found = shared.get(code).await;
            if let Some(l) = &self.lookups {
                match &found {
                    Some(Some(_)) => l.redis.hit.inc(),
                    Some(None) => l.redis.negative_hit.inc(),
                    None => l.redis.miss.inc(),
                };
            }
            if let Some(hit) = found {
                return Ok(hit.map(Arc::new));
            }
        }
        let link = self.store.get_link(code).await?;
        if let Some(shared) = &self.shared {
            shared.fill(code, link.as_ref()).await;
        }
        Ok(link.map(Arc::new))
    }

    /// After a create or delete: drops `code` here, records its new state in
    /// Redis and tells the other instances.
    pub async fn changed(&self, code: &str, now: Option<&Link>) {
        self.drop_local(Some(code)).await;
        if let Some(shared) = &self.shared {
            shared.record_change(code, now).await;
        }
    }

    /// After a create: as [`LinkCache::changed`], then keeps the new link in
    /// this process, where its first clicks (which often follow the create
    /// closely) find it without a store read.
    pub async fn created(&self, link: &Link) {
        self.changed(&link.code, Some(link)).await;
        self.cache.insert(
            link.code.clone(),
            Slot {
                value: Ok(Some(Arc::new(link.clone()))),
                until: Instant::now() + self.ttl,
            },
        );
    }

    /// Drops one code, or everything, from this process's cache.
    async fn drop_local(&self, code: Option<&str>) {
        self.generations.bump(code);
        match code {
            Some(code) => {
                self.cache.remove(code);
            }
            None => self.cache.clear(),
        }
    }
}

/// The Redis tier as a running part: the invalidation subscriber (which
/// drops changed codes from this process's cache) and the repairer of
/// changes Redis missed.
pub struct RedisTier {
    shared: Arc<SharedCache>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RedisTier {
    /// Starts both tasks for `cache`, which must have a shared tier.
    pub fn start(cache: &LinkCache) -> Option<Self> {
        let shared = cache.shared.clone()?;
        let local = cache.clone();
        let subscriber = shared.spawn_subscriber(move |code| {
            let local = local.clone();
            async move { local.drop_local(code.as_deref()).await }
        });
        let repairer = shared.spawn_repairer();
        Some(Self {
            shared,
            tasks: std::sync::Mutex::new(vec![subscriber, repairer]),
        })
    }
}

impl crate::components::Component for RedisTier {
    fn name(&self) -> &'static str {
        "redis-tier"
    }

    fn health(&self) -> Option<crate::components::Health> {
        let ok = self.shared.healthy();
        Some(crate::components::Health {
            key: "redis",
            ok,
            state: if ok { "ok" } else { "unavailable" },
        })
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'_, ()> {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("redis tasks"));
        Box::pin(async move {
            for task in tasks {
                task.abort();
                let _ = task.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use snowlink_store::conformance::sample_link;
    use snowlink_store::{ApiKey, CodeKind, DeleteOutcome, SqliteStore, StoreResult};

    use super::*;

    /// The embedded store, with link reads counted, slowed down, and able
    /// to fail on demand.
    struct Observed {
        inner: SqliteStore,
        reads: AtomicU64,
        delay: Duration,
        failing: AtomicBool,
    }

    #[async_trait::async_trait]
    impl LinkStore for Observed {
        async fn create_link(&self, link: &Link) -> StoreResult<()> {
            self.inner.create_link(link).await
        }
        async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Closed);
            }
            self.inner.get_link(code).await
        }
        async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
            self.inner.delete_link(code, at_ms).await
        }
        async fn list_links(&self, query: &snowlink_store::LinkQuery) -> StoreResult<Vec<Link>> {
            self.inner.list_links(query).await
        }
        async fn update_link(
            &self,
            code: &str,
            update: &snowlink_store::LinkUpdate,
        ) -> StoreResult<snowlink_store::UpdateOutcome> {
            self.inner.update_link(code, update).await
        }
        async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
            self.inner.create_api_key(key).await
        }
        async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
            self.inner.find_api_key(hash).await
        }
        async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
            self.inner.list_api_keys().await
        }
        async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool> {
            self.inner.revoke_api_key(name, at_ms).await
        }
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
        async fn id_reservation(&self, worker: u16) -> StoreResult<i64> {
            self.inner.id_reservation(worker).await
        }
        async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()> {
            self.inner.reserve_ids(worker, until_ms).await
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Observed>,
        cache: LinkCache,
    }

    async fn fixture(delay_ms: u64, ttl: Duration, negative_ttl: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(dir.path().join("links.db")).unwrap();
        inner
            .create_link(&sample_link("known", CodeKind::Alias))
            .await
            .unwrap();
        let store = Arc::new(Observed {
            inner,
            reads: AtomicU64::new(0),
            delay: Duration::from_millis(delay_ms),
            failing: AtomicBool::new(false),
        });
        let cache = LinkCache::new(store.clone(), 1000, ttl, negative_ttl);
        Fixture {
            _dir: dir,
            store,
            cache,
        }
    }

    const LONG: Duration = Duration::from_secs(600);

    fn reads(f: &Fixture) -> u64 {
        f.store.reads.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_code_read_the_store_once() {
        let f = fixture(50, LONG, LONG).await;
        let gets = (0..64).map(|_| f.cache.get("known"));
        let results = futures::future::join_all(gets).await;
        for r in results {
            assert_eq!(r.unwrap().unwrap().code, "known");
        }
        assert_eq!(reads(&f), 1);
        f.cache.get("known").await.unwrap().unwrap();
        assert_eq!(reads(&f), 1, "a hit must not read the store");
    }

    #[tokio::test]
    async fn a_created_link_replaces_its_negative_entry_and_is_served_without_a_read() {
        let f = fixture(0, LONG, LONG).await;
        assert!(f.cache.get("fresh").await.unwrap().is_none());
        assert_eq!(reads(&f), 1);
        let link = sample_link("fresh", CodeKind::Alias);
        f.store.inner.create_link(&link).await.unwrap();
        f.cache.created(&link).await;
        assert_eq!(f.cache.get("fresh").await.unwrap().unwrap().code, "fresh");
        assert_eq!(reads(&f), 1, "the created link is served from memory");
    }

    #[tokio::test]
    async fn unknown_codes_are_remembered_for_the_negative_ttl_only() {
        let f = fixture(0, LONG, Duration::from_millis(50)).await;
        assert!(f.cache.get("nope").await.unwrap().is_none());
        assert!(f.cache.get("nope").await.unwrap().is_none());
        assert_eq!(reads(&f), 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(f.cache.get("nope").await.unwrap().is_none());
        assert_eq!(reads(&f), 2, "an expired negative entry must be reloaded");
    }

    #[tokio::test]
    async fn found_links_expire_after_the_ttl() {
        let f = fixture(0, Duration::from_millis(50), LONG).await;
        f.cache.get("known").await.unwrap().unwrap();
        f.cache.get("known").await.unwrap().unwrap();
        assert_eq!(reads(&f), 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        f.cache.get("known").await.unwrap().unwrap();
        assert_eq!(reads(&f), 2);
    }

    #[tokio::test]
    async fn a_store_error_reaches_the_waiters_and_is_not_kept() {
        let f = fixture(50, LONG, LONG).await;
        f.store.failing.store(true, Ordering::SeqCst);
        let results = futures::future::join_all((0..16).map(|_| f.cache.get("known"))).await;
        assert!(results.iter().all(Result::is_err));
        assert_eq!(reads(&f), 1, "waiters share the failed load");
        f.store.failing.store(false, Ordering::SeqCst);
        assert!(f.cache.get("known").await.unwrap().is_some());
        assert_eq!(reads(&f), 2, "the error must not be served after the load");
    }

    #[tokio::test]
    async fn an_invalidation_during_a_load_wins() {
        let f = fixture(100, LONG, LONG).await;
        let load = f.cache.get("known");
        let invalidate = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            f.cache.changed("known", None).await;
        };
        let (loaded, ()) = tokio::join!(load, invalidate);
        assert!(loaded.unwrap().is_some());
        f.cache.get("known").await.unwrap();
        assert_eq!(
            reads(&f),
            2,
            "the value loaded before the change must not be kept"
        );
    }

    #[tokio::test]
    async fn changes_to_other_codes_during_a_load_do_not_stop_caching() {
        let f = fixture(100, LONG, LONG).await;
        // A stream of creates elsewhere while "known" loads.
        let load = f.cache.get("known");
        let others = async {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                // A code in another invalidation bucket than "known".
                let other = format!("other{i}");
                if Generations::bucket(&other) != Generations::bucket("known") {
                    f.cache.changed(&other, None).await;
                }
            }
        };
        let (loaded, ()) = tokio::join!(load, others);
        assert!(loaded.unwrap().is_some());
        f.cache.get("known").await.unwrap();
        assert_eq!(reads(&f), 1, "the loaded value is kept");
    }

    #[tokio::test]
    async fn a_change_drops_the_cached_entry() {
        let f = fixture(0, LONG, LONG).await;
        f.cache.get("known").await.unwrap().unwrap();
        f.store.inner.delete_link("known", 1).await.unwrap();
        f.cache.changed("known", None).await;
        let now = f.cache.get("known").await.unwrap().unwrap();
        assert!(now.deleted_at.is_some());
        assert_eq!(reads(&f), 2);
    }
}
