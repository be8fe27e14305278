//! Durable storage for links and API keys.
//!
//! * [`LinkStore`] is the one trait every backend implements. The service only
//!   ever talks to `Arc<dyn LinkStore>`.
//! * [`sqlite::SqliteStore`] is the embedded backend: one SQLite file in WAL
//!   mode, `synchronous=FULL`, a single writer thread doing group commit, and a
//!   small pool of reader connections.
//! * [`conformance`] is the behaviour every backend must show, as a suite any
//!   backend's tests call with a fresh store.
//!
//! Invariant: a write future resolves `Ok` only after the write is durable on
//! disk. The HTTP layer acknowledges a create only after that.

pub mod conformance;
mod model;
pub mod sqlite;

pub use model::*;
pub use sqlite::{CodeScheme, SqliteStore};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The code (alias or generated) is already taken, including by a
    /// deleted link: codes are never reused.
    #[error("code {0:?} is already taken")]
    Conflict(String),
    /// An API key name is already in use.
    #[error("an API key named {0:?} already exists")]
    KeyNameTaken(String),
    /// The disk under the store is full: nothing was written.
    #[error("the store's disk is full: {0}")]
    Full(String),
    /// The backend failed or cannot be reached.
    #[error("store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Storage of links and API keys.
///
/// Every method that writes resolves only once its effect is durable.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Stores a new link. Fails with [`StoreError::Conflict`] if the code is
    /// taken, generated codes included: every create is conditional and
    /// atomic, so a code issued twice (two processes on one worker id) is
    /// refused, never written over a live link.
    async fn create_link(&self, link: &Link) -> StoreResult<()>;

    /// The link under `code`, deleted ones included (with `deleted_at` set).
    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>>;

    /// Marks a link deleted; it then answers 410 and its code stays taken.
    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome>;

    /// Up to `query.limit` of `query.owner`'s links that match it, highest id
    /// (newest) first, each with an id below `query.before_id`. Reads only
    /// that owner's links: never the whole table.
    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>>;

    /// Applies `update` to the link under `code` unless it is deleted, and
    /// returns the link as it now is.
    async fn update_link(&self, code: &str, update: &LinkUpdate) -> StoreResult<UpdateOutcome>;

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;

    /// The key whose hash is `hash`, revoked ones included.
    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>>;

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;

    /// Revokes the key named `name`; returns false if there is none.
    async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool>;

    /// Cheap round trip proving the backend answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Whether a write can succeed now, as far as this process can tell
    /// without writing: [`StoreError::Full`] when the local disk is full.
    /// Remote backends answer for themselves on each write.
    async fn writable(&self) -> StoreResult<()> {
        Ok(())
    }

    /// The end of the highest id-time reservation recorded for Snowflake
    /// worker `worker` (ms since the Unix epoch), 0 if none. A worker that
    /// starts never issues an id at or before it.
    async fn id_reservation(&self, worker: u16) -> StoreResult<i64>;

    /// Records, durably, that `worker` may issue ids up to `until_ms`. Never
    /// lowers a recorded reservation.
    async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()>;
}
