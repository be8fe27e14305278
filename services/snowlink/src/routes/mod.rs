//! HTTP routes: the table of the API is here ([`configure`]), the handlers
//! in one module per resource. Handlers call the link service
//! ([`crate::manage`]) and the stats engine, never each other.
//!
//! The redirect, `/{code}`, is the default service: whatever no other route
//! matches.

mod health;
mod links;
mod metrics;
mod openapi;
mod page;
mod qr;
mod redirect;
mod stats;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{guard, web, HttpMessage};

use crate::error::ApiError;
use crate::metrics::RouteClass;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    openapi::configure(cfg);
    api(cfg);
    page::configure(cfg);
    metrics::configure(cfg);
}

/// A resource with one handler per method; other methods answer 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// `/api/v1/links...`, `/api/v1/stats/top` and `/api/v1/public/links...`.
/// Scopes, so that other paths are told apart by a prefix comparison
/// before any pattern runs.
fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/links")
            .service(
                resource("")
                    .route(web::post().to(links::create))
                    .route(web::get().to(links::list)),
            )
            // Only a POST is the bulk endpoint; other methods fall through
            // to a link whose alias is "bulk".
            .service(
                web::resource("/bulk")
                    .guard(guard::Post())
                    .app_data(
                        web::JsonConfig::default()
                            .limit(links::BULK_BODY_LIMIT)
                            .content_type_required(false)
                            .error_handler(|err, _req| crate::error::json_error(err).into()),
                    )
                    .route(web::post().to(links::bulk)),
            )
            .service(resource("/{code}/qr").route(web::get().to(qr::qr)))
            .service(resource("/{code}/clicks.csv").route(web::get().to(stats::clicks_csv)))
            .service(resource("/{code}/stats").route(web::get().to(stats::link_stats)))
            .service(
                resource("/{code}")
                    .route(web::get().to(links::get))
                    .route(web::patch().to(links::patch))
                    .route(web::delete().to(links::delete)),
            ),
    )
    .service(resource("/api/v1/stats/top").route(web::get().to(stats::top)))
    .service(
        web::scope("/api/v1/public/links")
            .service(resource("/{code}/stats").route(web::get().to(stats::public_stats)))
            .service(resource("/{code}/clicks.csv").route(web::get().to(stats::public_clicks_csv)))
            .service(resource("/{code}/qr").route(web::get().to(stats::public_qr))),
    );
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
