//! `GET /metrics`: every metric of the service in the OpenMetrics text
//! format (which Prometheus scrapes). Served on the main listener, or only
//! on `metrics_listen` when that is set.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(on_main_listener));
}

pub fn configure_standalone(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(standalone));
}

async fn on_main_listener(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.metrics_here {
        return Err(ApiError::route_not_found());
    }
    render(state.metrics.clone()).await
}

async fn standalone(metrics: web::Data<Metrics>) -> Result<HttpResponse, ApiError> {
    render(metrics.into_inner()).await
}

/// Encodes off the async workers: some parts read their figures from disk
/// (the spool's depth).
async fn render(metrics: Arc<Metrics>) -> Result<HttpResponse, ApiError> {
    let text = web::block(move || metrics.encode())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
