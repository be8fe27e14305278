//! HTTP routes, one module per resource, each with its own `configure`.
//!
//! Order matters: fixed paths are mounted before the catch-all `/{code}`.

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
    redirect::configure(cfg);
}

/// Answer for paths no route matches.
pub async fn not_found() -> actix_web::Result<actix_web::HttpResponse> {
    Err(ApiError::route_not_found().into())
}

/// Answer for a known path with a method it does not support.
pub async fn method_not_allowed() -> actix_web::Result<actix_web::HttpResponse> {
    Err(ApiError::method_not_allowed().into())
}
