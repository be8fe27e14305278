//! `GET /{code}+`: a link's statistics page, and the assets it loads.
//!
//! The page is one HTML document, one script and one stylesheet, compiled
//! into the binary and served from here: it needs no network beyond this
//! service. The chart is SVG drawn by the script. The script reads
//! `/api/v1/public/links/{code}/...` for links made with
//! `"public_stats": true`, or the owner's routes with a key entered on the
//! page.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};

use crate::error::{ApiError, ErrorCode};
use crate::links::is_code_syntax;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/stats.html");
const SCRIPT: &str = include_str!("../../assets/stats.js");
const STYLE: &str = include_str!("../../assets/stats.css");

/// Scripts, styles and data only from this service; no inline script, no
/// framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/stats.js", web::get().to(script))
        .route("/assets/stats.css", web::get().to(style));
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // The page asks for them with the version in the query.
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// Text safe inside HTML content and double-quoted attributes.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page of `code` (the path's segment without its `+`). A link whose
/// stats are public gets the page with its short and target URL; any other
/// code, existing or not, gets 404 with the same page asking for an
/// owner's key, which tells nobody whether the link exists.
pub async fn stats_page(code: &str, state: &AppState) -> Result<HttpResponse, ApiError> {
    if !is_code_syntax(code) {
        return Err(ApiError::link_not_found(code));
    }
    let public = match state.cache.get(code).await {
        Ok(link) => link.filter(|l| l.public_stats && l.deleted_at.is_none()),
        Err(e) => return Err(ApiError::unavailable(ErrorCode::StoreUnavailable, &e)),
    };
    let short_url = format!("{}{code}", state.short_url_base);
    let (status, url) = match &public {
        Some(link) => (StatusCode::OK, link.url.as_str()),
        None => (StatusCode::NOT_FOUND, ""),
    };
    let html = PAGE
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{title}}", &escape_html(&short_url))
        .replace("{{code}}", &escape_html(code))
        .replace(
            "{{public}}",
            if public.is_some() { "true" } else { "false" },
        )
        .replace("{{url}}", &escape_html(url));
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .body(html))
}

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"https://a.example/?q="><script>&'"#),
            "https://a.example/?q=&quot;&gt;&lt;script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [super::PAGE, super::SCRIPT, super::STYLE] {
            for far in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<_> = text
                    .match_indices(far)
                    .filter(|(i, _)| {
                        !text[..*i].ends_with("createElementNS(\"")
                            && !text[*i..].starts_with("http://www.w3.org/2000/svg")
                    })
                    .collect();
                assert!(hits.is_empty(), "{far} in an asset: {hits:?}");
            }
        }
    }
}
