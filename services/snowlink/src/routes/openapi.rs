//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API,
//! generated from the handlers' own types and annotations. Served without a
//! key.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{health, links, redirect, stats};
use crate::error::{ErrorDetail, ErrorResponse};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Snowlink",
        description = "A URL shortener with click analytics. Management routes need an API key \
                       (`Authorization: Bearer <key>`) with the route's scope, and see only the \
                       links of the key's owner. Every error is `{\"error\": {\"code\", \"message\"}}`; \
                       clients match on `code`."
    ),
    paths(
        links::create,
        links::list,
        links::get,
        links::patch,
        links::delete,
        links::bulk,
        links::qr,
        stats::link_stats,
        stats::clicks_csv,
        stats::top,
        stats::public_stats,
        stats::public_clicks_csv,
        stats::public_qr,
        redirect::fallback,
        health::healthz,
        health::readyz,
        document,
    ),
    components(schemas(
        ErrorResponse,
        ErrorDetail,
        links::CreateLink,
        links::PatchLink,
        links::LinkView,
        links::Page,
        links::BulkCreate,
        links::BulkResults,
        links::BulkResult,
        links::BulkError,
        stats::LinkStats,
        stats::StatsPoint,
        stats::StatsShare,
        stats::TopLinks,
        stats::TopLink,
    )),
    modifiers(&ApiKey),
    tags(
        (name = "links", description = "Create, list, read, change and delete links"),
        (name = "stats", description = "Clicks of a link, from the click lake"),
        (name = "redirect", description = "The short URLs themselves"),
        (name = "health", description = "Liveness, readiness and this document"),
    )
)]
pub struct ApiDoc;

struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key from `snowlink keys create`"))
                    .build(),
            ),
        );
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises");
    cfg.app_data(web::Data::new(Document(json)))
        .route("/api/v1/openapi.json", web::get().to(document));
}

struct Document(String);

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn document(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
