//! API keys.
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

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use moka::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use snowlink_store::{ApiKey, LinkStore, Scope};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

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

/// The authenticated caller of a management endpoint: its key.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ApiKey>);

impl Caller {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn owner(&self) -> &str {
        &self.0.owner
    }

    pub fn is_admin(&self) -> bool {
        self.0.has(Scope::Admin)
    }

    /// 403 `insufficient_scope` unless the key has `scope` (or is admin).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.has(scope) || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!(
                    "this API key lacks the {:?} scope (it has: {})",
                    scope.as_str(),
                    Scope::to_column(&self.0.scopes)
                ),
            ))
        }
    }

    /// Whether the caller manages links of `owner`.
    pub fn manages(&self, owner: Option<&str>) -> bool {
        self.is_admin() || owner == Some(self.owner())
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|h| h.to_str().map(str::to_owned).unwrap_or_default());
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(&"application state missing"))?;
            let client = state.client_ip(&req);
            let key = state.keys.verify(header.as_deref(), client).await?;
            let limit = key.rate_limit.unwrap_or(state.key_rate_limit);
            let decision = state.limiter.take(&key.hash, limit).await;
            // The response middleware turns it into RateLimit-* headers.
            req.extensions_mut().insert(decision);
            if !decision.allowed {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this API key may make {limit} requests a minute; retry in {} s",
                        decision.retry_after_secs()
                    ),
                ));
            }
            Ok(Caller(key))
        })
    }
}
