//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The store answers and can take writes, so the service can do its job:
/// 200, with `status` `ready`, or `degraded` when an optional part (Redis,
/// Kafka, the worker-id lease) is down and the service runs without it. 503
/// when the store is unreachable (`store_unavailable`) or its disk is full
/// (`storage_full`), exactly when creates would fail.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "`status` is `ready` or `degraded`, with each part's state", body = serde_json::Value),
        (status = 503, description = "The store cannot be reached (`store_unavailable`) or its disk is full (`storage_full`)", body = crate::error::ErrorResponse),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(ErrorCode::StoreUnavailable, &e))?;
    if let Err(e) = state.store.writable().await {
        let e = ApiError::from(e);
        return Ok(e.response_with_status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE));
    }
    let mut body = json!({"status": "ready", "store": "ok"});
    let mut degraded = false;
    for part in state.components.health() {
        body[part.key] = json!(part.state);
        degraded |= !part.ok;
    }
    if degraded {
        body["status"] = json!("degraded");
    }
    Ok(HttpResponse::Ok().json(body))
}
