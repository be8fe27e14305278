//! HTTP routes, one module per resource, each with its own `configure`.
//!
//! The redirect, `/{code}`, is the default service: whatever no other route
//! matches.

mod health;
mod links;
mod metrics;
mod redirect;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    links::configure(cfg);
    metrics::configure(cfg);
}

pub use redirect::fallback;

/// Answer for a known path with a method it does not support.
pub async fn method_not_allowed() -> actix_web::Result<actix_web::HttpResponse> {
    Err(ApiError::method_not_allowed().into())
}
