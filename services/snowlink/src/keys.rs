//! API keys: minting them, and checking a bearer key against the store.
//!
//! A key is `sl_` followed by 64 hex characters (256 random bits). Only its
//! SHA-256 is stored: a fast hash is enough because the key is random, not a
//! password, and it lets a lookup go straight to the row by hash.
//!
//! Failed attempts are counted per client address (the trusted client-address
//! header behind a proxy, the peer otherwise) in one-minute windows; past the
//! limit an address gets 429 for every key that does not exist or is revoked,
//! so guessing keys is slow. A key that exists and is not revoked is never
//! refused, so one noisy client behind the same proxy locks out nobody else.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use snowlink_store::{ApiKey, LinkStore, Scope};

use crate::error::{ApiError, ErrorCode};

pub const KEY_PREFIX: &str = "sl_";
/// How long a verified key is trusted without asking the store again; this
/// bounds how long a revoked key keeps working in a running process.
const VERIFIED_TTL: Duration = Duration::from_secs(10);
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Who a new key is for and what it may do.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    /// Defaults to the name.
    pub owner: Option<String>,
    /// Defaults to [`Scope::DEFAULT`].
    pub scopes: Option<Vec<Scope>>,
    /// Requests per minute; `None` uses the service's default.
    pub rate_limit: Option<u32>,
}

impl KeySpec {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            owner: None,
            scopes: None,
            rate_limit: None,
        }
    }
}

/// Creates a new key: the secret to hand to the user once, and the record to
/// store.
pub fn mint_key(spec: &KeySpec, now_ms: i64) -> (String, ApiKey) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let mut scopes = spec
        .scopes
        .clone()
        .unwrap_or_else(|| Scope::DEFAULT.to_vec());
    scopes.sort();
    scopes.dedup();
    let record = ApiKey {
        name: spec.name.clone(),
        hash: hash_key(&key),
        prefix: key[..KEY_PREFIX.len() + 6].to_owned(),
        created_at: now_ms,
        revoked_at: None,
        owner: spec.owner.clone().unwrap_or_else(|| spec.name.clone()),
        scopes,
        rate_limit: spec.rate_limit,
    };
    (key, record)
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks bearer keys against the store, with a short positive cache and a
/// per-address failure limit.
pub struct KeyVerifier {
    store: Arc<dyn LinkStore>,
    verified: Cache<String, Arc<ApiKey>>,
    failures: Cache<IpAddr, Arc<AtomicU32>>,
    failures_per_minute: u32,
}

impl KeyVerifier {
    pub fn new(store: Arc<dyn LinkStore>, failures_per_minute: u32) -> Self {
        Self {
            store,
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
            failures_per_minute,
        }
    }

    /// The key presented in `authorization`, or why not.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Arc<ApiKey>, ApiError> {
        let Some(header) = authorization else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                ErrorCode::MissingApiKey.meaning(),
            ));
        };
        let key = match header.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::MissingApiKey,
                    "the Authorization header must be 'Bearer <key>'",
                ))
            }
        };
        let hash = hash_key(key);
        if let Some(key) = self.verified.get(&hash) {
            return Ok(key);
        }
        let counter = client.map(|ip| self.failures.get_with(ip, Default::default));
        let over_limit = counter
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed) >= self.failures_per_minute);
        // Past the limit a key is still looked up: a key that exists and is
        // not revoked is never refused, whoever else shares the address.
        match self.store.find_api_key(&hash).await? {
            Some(k) if k.revoked_at.is_none() => {
                let key = Arc::new(k);
                self.verified.insert(hash, key.clone());
                Ok(key)
            }
            _ if over_limit => Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many failed API-key attempts from this address; wait a minute",
            )),
            found => {
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let why = if found.is_some() {
                    "this API key has been revoked"
                } else {
                    "this API key is not valid"
                };
                // No client address here: raw IPs are never logged.
                tracing::warn!(revoked = found.is_some(), "rejected API key");
                Err(ApiError::new(ErrorCode::InvalidApiKey, why))
            }
        }
    }
}
