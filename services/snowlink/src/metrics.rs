//! What `/metrics` reports (Prometheus / OpenMetrics text).
//!
//! Labels have few values by design: requests are counted by route class
//! (`redirect`, `api`, `health`) and status class (`2xx`..`5xx`), never by
//! path or code; store operations by operation name. The handles used on
//! the request path are resolved once at start, so recording is an atomic
//! add (and, for a histogram, one short lock), never a map lookup.
//!
//! Each running part of the service (see [`crate::components`]) registers
//! its own metrics when it starts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use snowlink_store::{
    ApiKey, DeleteOutcome, Link, LinkQuery, LinkStore, LinkUpdate, StoreResult, UpdateOutcome,
};

/// Route classes of HTTP requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    Redirect,
    Api,
    Health,
}

impl RouteClass {
    pub const ALL: [RouteClass; 3] = [RouteClass::Redirect, RouteClass::Api, RouteClass::Health];

    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/api/") {
            RouteClass::Api
        } else if matches!(path, "/healthz" | "/readyz" | "/metrics") {
            RouteClass::Health
        } else {
            RouteClass::Redirect
        }
    }

    fn label(self) -> &'static str {
        match self {
            RouteClass::Redirect => "redirect",
            RouteClass::Api => "api",
            RouteClass::Health => "health",
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    tier: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Outcome counters of one cache tier.
#[derive(Clone, Debug)]
pub struct TierLookups {
    /// Found a link.
    pub hit: Counter,
    /// Found that the code is unknown (a cached "no such link").
    pub negative_hit: Counter,
    /// Had nothing; the next tier was asked.
    pub miss: Counter,
}

/// Cache lookups by tier.
#[derive(Clone, Debug)]
pub struct CacheLookups {
    pub local: TierLookups,
    pub redis: TierLookups,
}

/// Every metric of one running service.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: [[Counter; 5]; 3],
    latency: [Histogram; 3],
    pub cache: CacheLookups,
    store: Family<OpLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<OpLabels, Counter>,
}

fn latency_buckets() -> Histogram {
    // 50 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("snowlink");
        let requests_family = Family::<RequestLabels, Counter>::default();
        let latency_family =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        let requests = RouteClass::ALL.map(|route| {
            STATUS_CLASSES.map(|status| {
                requests_family.get_or_create_owned(&RequestLabels {
                    route: route.label(),
                    status,
                })
            })
        });
        let latency = RouteClass::ALL.map(|route| {
            latency_family.get_or_create_owned(&RouteLabels {
                route: route.label(),
            })
        });
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class and status class",
            requests_family,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response, by route class",
            latency_family,
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        let tier = |tier: &'static str| TierLookups {
            hit: lookups.get_or_create_owned(&LookupLabels {
                tier,
                result: "hit",
            }),
            negative_hit: lookups.get_or_create_owned(&LookupLabels {
                tier,
                result: "negative_hit",
            }),
            miss: lookups.get_or_create_owned(&LookupLabels {
                tier,
                result: "miss",
            }),
        };
        let cache = CacheLookups {
            local: tier("local"),
            redis: tier("redis"),
        };
        registry.register(
            "cache_lookups",
            "Link cache lookups by tier (local: in-process, redis: shared) and result",
            lookups,
        );
        let store =
            Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        let store_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "store_operation_duration_seconds",
            "Latency of link store operations, by operation",
            store.clone(),
        );
        registry.register(
            "store_errors",
            "Link store operations that failed, by operation",
            store_errors.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            cache,
            store,
            store_errors,
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: RouteClass, status: u16, took: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        let r = route as usize;
        self.requests[r][class].inc();
        self.latency[r].observe(took.as_secs_f64());
    }

    /// Lets a part of the service register its metrics.
    pub fn register(&self, with: impl FnOnce(&mut Registry)) {
        with(&mut self.registry.lock().expect("metrics registry"));
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("metrics registry"),
        )
        .expect("writing to a String");
        out
    }

    /// Wraps a store so each of its operations is timed.
    pub fn timed_store(self: &Arc<Self>, store: Arc<dyn LinkStore>) -> Arc<dyn LinkStore> {
        Arc::new(TimedStore {
            inner: store,
            metrics: self.clone(),
        })
    }

    fn store_op<T>(&self, op: &'static str, started: Instant, result: &StoreResult<T>) {
        let labels = OpLabels { op };
        self.store
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.store_errors.get_or_create(&labels).inc();
        }
    }
}

/// A [`LinkStore`] that records the latency and failures of each operation.
struct TimedStore {
    inner: Arc<dyn LinkStore>,
    metrics: Arc<Metrics>,
}

macro_rules! timed {
    ($self:ident, $op:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        $self.metrics.store_op($op, started, &result);
        result
    }};
}

#[async_trait]
impl LinkStore for TimedStore {
    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        timed!(self, "create_link", self.inner.create_link(link))
    }
    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        timed!(self, "get_link", self.inner.get_link(code))
    }
    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
        timed!(self, "delete_link", self.inner.delete_link(code, at_ms))
    }
    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>> {
        timed!(self, "list_links", self.inner.list_links(query))
    }
    async fn update_link(&self, code: &str, update: &LinkUpdate) -> StoreResult<UpdateOutcome> {
        timed!(self, "update_link", self.inner.update_link(code, update))
    }
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        timed!(self, "create_api_key", self.inner.create_api_key(key))
    }
    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        timed!(self, "find_api_key", self.inner.find_api_key(hash))
    }
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        timed!(self, "list_api_keys", self.inner.list_api_keys())
    }
    async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool> {
        timed!(
            self,
            "revoke_api_key",
            self.inner.revoke_api_key(name, at_ms)
        )
    }
    async fn ping(&self) -> StoreResult<()> {
        timed!(self, "ping", self.inner.ping())
    }
    async fn writable(&self) -> StoreResult<()> {
        self.inner.writable().await
    }
    async fn id_reservation(&self, worker: u16) -> StoreResult<i64> {
        timed!(self, "id_reservation", self.inner.id_reservation(worker))
    }
    async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()> {
        timed!(
            self,
            "reserve_ids",
            self.inner.reserve_ids(worker, until_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_path() {
        assert_eq!(RouteClass::of_path("/abc123"), RouteClass::Redirect);
        assert_eq!(RouteClass::of_path("/api/v1/links"), RouteClass::Api);
        assert_eq!(RouteClass::of_path("/readyz"), RouteClass::Health);
        assert_eq!(RouteClass::of_path("/metrics"), RouteClass::Health);
    }

    #[test]
    fn requests_are_counted_by_class() {
        let m = Metrics::new();
        m.request(RouteClass::Redirect, 302, Duration::from_micros(120));
        m.request(RouteClass::Redirect, 302, Duration::from_micros(80));
        m.request(RouteClass::Api, 404, Duration::from_millis(2));
        let text = m.encode();
        assert!(
            text.contains(r#"snowlink_http_requests_total{route="redirect",status="3xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"snowlink_http_requests_total{route="api",status="4xx"} 1"#));
        assert!(
            text.contains(r#"snowlink_http_request_duration_seconds_count{route="redirect"} 2"#)
        );
        assert!(
            text.contains(
                r#"snowlink_http_request_duration_seconds_bucket{le="0.0001",route="redirect"} 1"#
            ),
            "{text}"
        );
    }
}
