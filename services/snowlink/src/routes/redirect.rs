//! `GET /{code}`: the redirect, the hot path.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use snowlink_store::LinkState;

use crate::error::ApiError;
use crate::links::is_code_syntax;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/{code}")
            .route(web::get().to(redirect))
            .route(web::head().to(redirect))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[tracing::instrument(level = "debug", skip(state))]
async fn redirect(
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    if !is_code_syntax(&code) {
        return Err(ApiError::link_not_found(&code));
    }
    let link = state
        .cache
        .get(&code)
        .await
        .map_err(|e| ApiError::unavailable("store_unavailable", &e))?
        .ok_or_else(|| ApiError::link_not_found(&code))?;
    match link.state_at(crate::now_ms()) {
        LinkState::Active => {}
        LinkState::Expired => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "link_expired",
                format!("the link {code:?} has expired"),
            ))
        }
        LinkState::Deleted => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "link_deleted",
                format!("the link {code:?} has been deleted"),
            ))
        }
    }
    let status = StatusCode::from_u16(link.redirect).unwrap_or(StatusCode::FOUND);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::LOCATION, link.url.as_str()));
    if !matches!(link.redirect, 301 | 308) {
        // Temporary redirects must reach us every time, or clicks go uncounted.
        response.insert_header((header::CACHE_CONTROL, "private, no-store"));
    }
    Ok(response.finish())
}
