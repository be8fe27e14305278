//! The click pipeline: what happens to a click after the redirect has been
//! served, up to the point where the lake's aggregate takes it.
//!
//! ```text
//! redirect --RawClick--> [pipeline] enrich, visitor hash --> spool.db --> [forwarder] --> Kafka
//!                                                               \--> snowlink-aggregate (no Kafka)
//! ```
//!
//! * [`pipeline`]: the bounded channel the redirect hands clicks to (it
//!   never waits), and the spooler thread that enriches each click (user
//!   agent, bot flag, referrer cleaned to scheme, host and path, country)
//!   and writes batches to the durable spool; the rescue file at shutdown.
//! * [`visitor_keys`]: the daily secret keys of the visitor hash, kept apart
//!   from everything a lake or spool reader opens, deleted day by day.
//! * [`forwarder`]: the optional thread that moves the spool to a Kafka
//!   topic in transactions, exactly once.
//!
//! Free of HTTP and of the link store: the service hands it raw clicks and
//! a source of event ids ([`EventIds`]), and runs its two parts.

pub mod forwarder;
pub mod pipeline;
pub mod visitor_keys;

pub use forwarder::{Forwarder, KafkaSettings};
pub use pipeline::{ClickPipeline, ClickSender, ClickSettings, RawClick};
pub use visitor_keys::VisitorKeys;

/// Where the pipeline's event ids come from. The service's id source
/// issues them under its worker id and inside its persisted reservation,
/// like every other id.
pub trait EventIds: Send + Sync + 'static {
    /// The next id, blocking the calling thread while one may not be issued
    /// yet, within the source's own bound.
    fn next_event_id(&self) -> anyhow::Result<u64>;
}
