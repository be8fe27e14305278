//! What every request handler shares.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;

use snowlink_store::LinkStore;

use crate::cache::LinkCache;
use crate::components::Components;
use crate::keys::KeyVerifier;
use crate::manage::LinkService;
use crate::metrics::Metrics;
use snowlink_clicks::ClickSender;

pub struct AppState {
    pub store: Arc<dyn LinkStore>,
    pub cache: LinkCache,
    /// Creates, finds, changes and deletes links.
    pub links: LinkService,
    pub keys: KeyVerifier,
    /// Per-key token buckets, and the default requests per minute.
    pub limiter: crate::ratelimit::RateLimiter,
    pub key_rate_limit: u32,
    /// `public_url` with a trailing slash.
    pub short_url_base: String,
    /// `None` when click analytics are off.
    pub clicks: Option<ClickSender>,
    /// Header carrying the client address, set by a trusted proxy.
    pub client_ip_header: Option<String>,
    /// Header carrying the client country, set by a trusted proxy.
    pub country_header: Option<String>,
    /// Answers stats questions from the lake; `None` without `--lake`.
    pub stats: Option<Arc<crate::stats::StatsEngine>>,
    /// The running parts, for readiness.
    pub components: Arc<Components>,
    pub metrics: Arc<Metrics>,
    /// Whether `/metrics` is served here (not on its own address).
    pub metrics_here: bool,
}

impl AppState {
    /// The client's address: the first entry of the trusted client-address
    /// header when one is configured and present, the peer address otherwise.
    /// It is used in memory only (failed-key counting, visitor hashes) and
    /// never logged or stored.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.client_ip_header
            .as_deref()
            .and_then(|h| req.headers().get(h)?.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| req.peer_addr().map(|a| a.ip()))
    }
}
