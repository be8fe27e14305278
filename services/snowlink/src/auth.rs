//! The caller of a management route: the extractor that checks its key
//! (through [`crate::keys::KeyVerifier`]) and its rate, and what it may do.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use snowlink_store::{ApiKey, Scope};

use crate::error::{ApiError, ErrorCode};
use crate::manage::Actor;
use crate::state::AppState;

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

    /// Who acts on links through this key.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            owner: self.owner(),
            admin: self.is_admin(),
        }
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
