//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API,
//! generated from the handlers' own types and annotations. Served without a
//! key.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{health, links, qr, redirect, stats};
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
        qr::qr,
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

/// Error answers, each with the error body, for `responses(...)`.
fn error_responses(
    answers: &[(&str, &str)],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ResponsesBuilder};
    let mut responses = ResponsesBuilder::new();
    for (status, description) in answers {
        responses = responses.response(
            *status,
            ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            ),
        );
    }
    responses.build().into()
}

/// The answers every route behind a key can give before its handler runs:
/// no key or a bad one, a missing scope, the key's rate. Each route lists
/// these and then only the answers its own handler can give.
pub struct KeyErrors;

impl utoipa::IntoResponses for KeyErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        error_responses(&[
            ("401", "No key, or an unknown or revoked one"),
            ("403", "The key lacks the route's scope"),
            (
                "429",
                "The key's rate limit, or failed key attempts from this address",
            ),
        ])
    }
}

/// The answers every public stats route (no key) can give besides its own:
/// a bad parameter, a link that is not there or not public, the client's
/// rate.
pub struct PublicErrors;

impl utoipa::IntoResponses for PublicErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        error_responses(&[
            ("400", "A bad parameter: see `error.code`"),
            ("404", "No such link, or its stats are not public"),
            ("429", "Too many requests from this client"),
        ])
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, method) -> the statuses it lists and their descriptions.
    fn operations() -> Vec<(String, String, serde_json::Map<String, serde_json::Value>)> {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap().clone();
                out.push((path.clone(), method.clone(), responses));
            }
        }
        out
    }

    #[test]
    fn each_route_lists_only_the_answers_it_can_give() {
        let ops = operations();
        let get = |path: &str, method: &str| {
            ops.iter()
                .find(|(p, m, _)| p == path && m == method)
                .map(|(_, _, r)| r.clone())
                .unwrap_or_else(|| panic!("{method} {path} is documented"))
        };
        // Only the routes that read a body can find it too large.
        for (path, method) in [
            ("/api/v1/links", "post"),
            ("/api/v1/links/bulk", "post"),
            ("/api/v1/links/{code}", "patch"),
        ] {
            assert!(get(path, method).contains_key("413"), "{method} {path}");
        }
        for (path, method) in [
            ("/api/v1/links", "get"),
            ("/api/v1/links/{code}", "get"),
            ("/api/v1/links/{code}", "delete"),
            ("/api/v1/links/{code}/qr", "get"),
            ("/api/v1/links/{code}/stats", "get"),
        ] {
            assert!(!get(path, method).contains_key("413"), "{method} {path}");
        }
        // Only a create issues an id.
        for (path, method, responses) in &ops {
            let issues_id = responses
                .get("503")
                .and_then(|r| r["description"].as_str())
                .is_some_and(|d| d.contains("id"));
            assert_eq!(
                issues_id,
                path == "/api/v1/links" && method == "post",
                "{method} {path}"
            );
        }
        // Every route behind a key lists the key's answers; the others do not.
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, method, responses) in &ops {
            let keyed = doc["paths"][path][method].get("security").is_some();
            for status in ["401", "403"] {
                assert_eq!(
                    responses.contains_key(status),
                    keyed,
                    "{status} of {method} {path}"
                );
            }
            if keyed {
                assert!(responses.contains_key("429"), "{method} {path}");
            }
        }
    }
}
