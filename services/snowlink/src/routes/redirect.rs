//! `GET /{code}`: the redirect, the hot path.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use snowlink_store::LinkState;

use crate::clicks::{truncate, RawClick, MAX_REFERRER, MAX_USER_AGENT};
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

#[tracing::instrument(level = "debug", skip(state, req))]
async fn redirect(
    req: HttpRequest,
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
        LinkState::Expired => return Err(ApiError::link_expired(&code)),
        LinkState::Deleted => return Err(ApiError::link_deleted(&code)),
    }
    // HEAD is a preview or a check, not a visit.
    if let (Some(clicks), true) = (&state.clicks, req.method() == Method::GET) {
        clicks.send(capture(&req, &state, code));
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

fn header_string(req: &HttpRequest, name: &str, max: usize) -> Option<String> {
    let v = req.headers().get(name)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| truncate(v.to_owned(), max))
}

/// What the request says about the click; the IP goes no further than the
/// click channel.
fn capture(req: &HttpRequest, state: &AppState, code: String) -> RawClick {
    let ip = state
        .client_ip_header
        .as_deref()
        .and_then(|h| req.headers().get(h)?.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| req.peer_addr().map(|a| a.ip()));
    let country = state
        .country_header
        .as_deref()
        .and_then(|h| header_string(req, h, 8))
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase());
    RawClick {
        code,
        ts: crate::now_ms(),
        referrer: header_string(req, "referer", MAX_REFERRER),
        user_agent: header_string(req, "user-agent", MAX_USER_AGENT),
        ip,
        country,
    }
}
