//! HTTP routes, one module per resource, each with its own `configure`.
//!
//! The redirect, `/{code}`, is the default service: whatever no other route
//! matches.

mod health;
mod links;
mod metrics;
mod openapi;
mod page;
mod redirect;
mod stats;

pub use openapi::ApiDoc;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::error::ApiError;
use crate::metrics::RouteClass;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    openapi::configure(cfg);
    links::configure(cfg);
    stats::configure(cfg);
    page::configure(cfg);
    metrics::configure(cfg);
}

/// The routes of a listener that serves `/metrics` alone.
pub fn metrics_only(cfg: &mut web::ServiceConfig) {
    metrics::configure_standalone(cfg);
}

/// Middleware: counts every answered request by route class and status
/// class, and times it.
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = RouteClass::of_path(req.path());
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let mut result = next.call(req).await;
    if route == RouteClass::Api {
        if let Ok(res) = &mut result {
            let decision = res
                .request()
                .extensions()
                .get::<crate::ratelimit::Decision>()
                .copied();
            if let Some(decision) = decision {
                decision.write_headers(res.headers_mut());
            }
        }
    }
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        metrics.request(route, status.as_u16(), started.elapsed());
    }
    result
}

pub use redirect::fallback;

/// Answer for a known path with a method it does not support.
pub async fn method_not_allowed() -> actix_web::Result<actix_web::HttpResponse> {
    Err(ApiError::method_not_allowed().into())
}
