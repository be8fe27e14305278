//! `GET /{code}`: the redirect, the hot path.

use std::borrow::Cow;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use snowlink_store::LinkState;

use crate::error::{ApiError, ErrorCode};
use crate::links::is_code_syntax;
use crate::state::AppState;
use snowlink_clicks::pipeline::{truncate, RawClick, MAX_REFERRER, MAX_USER_AGENT};

/// `GET /{code}` (and HEAD) redirect; any other method on a single-segment
/// path is 405; every other path no route matched is 404.
///
/// This is the app's default service rather than a `/{code}` resource: the
/// router would run a pattern match per request to capture the segment,
/// and this path is the hot one.
#[utoipa::path(get, path = "/{code}", tag = "redirect",
    params(("code" = String, Path, description = "A short code or alias")),
    responses(
        (status = 301, description = "Moved permanently to `Location`"),
        (status = 302, description = "Found at `Location` (the default)"),
        (status = 307, description = "Temporary redirect to `Location`"),
        (status = 308, description = "Permanent redirect to `Location`"),
        (status = 404, description = "No link has this code", body = crate::error::ErrorResponse),
        (status = 410, description = "Expired, deleted, or its host is blocked", body = crate::error::ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = crate::error::ErrorResponse),
    ))]
pub async fn fallback(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(code) = single_segment(req.path()) else {
        return Err(ApiError::route_not_found());
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed());
    }
    redirect(&req, code, &state).await
}

/// The segment of `/{segment}`, percent-decoded (invalid UTF-8 replaced);
/// `None` for `/` and for paths of more than one segment.
fn single_segment(path: &str) -> Option<Cow<'_, str>> {
    let segment = path.strip_prefix('/')?;
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    Some(percent_encoding::percent_decode_str(segment).decode_utf8_lossy())
}

#[tracing::instrument(level = "debug", skip(state, req))]
async fn redirect(
    req: &HttpRequest,
    code: Cow<'_, str>,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    if !is_code_syntax(&code) {
        // Codes never hold a `+`: `/{code}+` is the link's stats page.
        if let Some(code) = code.strip_suffix('+') {
            return super::page::stats_page(code, state).await;
        }
        return Err(ApiError::link_not_found(&code));
    }
    let link = state
        .cache
        .get(&code)
        .await
        .map_err(|e| ApiError::unavailable(ErrorCode::StoreUnavailable, &e))?
        .ok_or_else(|| ApiError::link_not_found(&code))?;
    match link.state_at(crate::now_ms()) {
        LinkState::Active => {}
        LinkState::Expired => return Err(ApiError::link_expired(&code)),
        LinkState::Deleted => return Err(ApiError::link_deleted(&code)),
    }
    if state.links.policy().blocklist.blocks_url(&link.url) {
        return Err(ApiError::new(
            ErrorCode::LinkBlocked,
            format!("the link {code:?} points at a blocked host"),
        ));
    }
    // HEAD is a preview or a check, not a visit.
    if let (Some(clicks), true) = (&state.clicks, req.method() == Method::GET) {
        clicks.send(capture(req, state, code.into_owned()));
    }
    let status = StatusCode::from_u16(link.redirect).unwrap_or(StatusCode::FOUND);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::LOCATION, link.url.as_str()));
    if !matches!(link.redirect, 301 | 308) {
        // Temporary redirects must reach us every time, or clicks go uncounted.
        response.insert_header((
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        ));
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
    let ip = state.client_ip(req);
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

#[cfg(test)]
mod tests {
    use super::single_segment;

    #[test]
    fn single_segments_are_recognised_and_decoded() {
        assert_eq!(single_segment("/abc").as_deref(), Some("abc"));
        assert_eq!(single_segment("/%61bc").as_deref(), Some("abc"));
        assert_eq!(single_segment("/"), None);
        assert_eq!(single_segment("/a/b"), None);
        assert_eq!(single_segment("/abc/"), None);
        assert_eq!(single_segment("/a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(single_segment("/%FF").as_deref(), Some("\u{FFFD}"));
    }
}
