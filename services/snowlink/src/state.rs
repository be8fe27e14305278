//! What every request handler shares.

use std::sync::Arc;

use snowlink_id::CodeCodec;
use snowlink_store::LinkStore;

use crate::auth::KeyVerifier;
use crate::cache::LinkCache;
use crate::clicks::ClickSender;
use crate::ids::IdSource;
use crate::kafka::ForwardMetrics;
use crate::lease::WorkerId;
use crate::links::UrlPolicy;

pub struct AppState {
    pub store: Arc<dyn LinkStore>,
    pub cache: LinkCache,
    /// Link and click ids, under the worker-id lease and the id fence.
    pub ids: IdSource,
    /// Where the generator's worker id comes from (for readiness).
    pub worker: WorkerId,
    /// `None` unless clicks are forwarded to Kafka.
    pub kafka: Option<Arc<ForwardMetrics>>,
    pub codec: CodeCodec,
    pub keys: KeyVerifier,
    pub url_policy: UrlPolicy,
    /// `public_url` with a trailing slash.
    pub short_url_base: String,
    /// `None` when click analytics are off.
    pub clicks: Option<ClickSender>,
    /// Header carrying the client address, set by a trusted proxy.
    pub client_ip_header: Option<String>,
    /// Header carrying the client country, set by a trusted proxy.
    pub country_header: Option<String>,
}
