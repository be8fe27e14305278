//! Statistics from the lake: one link's (`/api/v1/links/{code}/stats`), its
//! raw clicks as CSV (`/api/v1/links/{code}/clicks.csv`), an owner's most
//! clicked links (`/api/v1/stats/top`), and the same for links made with
//! `"public_stats": true` without a key (`/api/v1/public/links/{code}/...`),
//! which the stats page `/{code}+` reads.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use snowlink_store::Scope;

use super::openapi::{KeyErrors, PublicErrors};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::qr::Format;
use crate::state::AppState;
use crate::stats::{Span, StatsError, StatsQuestion};

/// The time bounds and shape of a stats question.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// Clicks at or after: a duration back from now (`7d`, `24h`), a date (`2026-11-01`) or an RFC 3339 time
    /// [default: all time].
    since: Option<String>,
    /// Clicks before; the same forms [default: now].
    until: Option<String>,
    /// Bucket of the series: `hour` or `day` [default: `day`].
    by: Option<String>,
    /// Count clicks of known bots too [default: false; they are always reported as `bot_clicks`].
    include_bots: Option<bool>,
}

pub use snowlink_events::stats::{LinkStats, StatsPoint, StatsShare};

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// A time bound as an absolute RFC 3339 time.
fn bound(
    name: &str,
    raw: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, ApiError> {
    raw.map(|raw| {
        snowlink_time::parse_time(raw, now)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .map_err(|e| invalid(format!("{name}: {e}")))
    })
    .transpose()
}

/// What a question counts, its bounds as absolute RFC 3339 times, checked.
fn span(
    since: Option<&str>,
    until: Option<&str>,
    include_bots: Option<bool>,
) -> Result<Span, ApiError> {
    let now = chrono::Utc::now();
    let since = bound("since", since, now)?;
    let until = bound("until", until, now)?;
    if let (Some(s), Some(u)) = (&since, &until) {
        // Both are RFC 3339 UTC with the same layout: text order is time order.
        if s >= u {
            return Err(invalid("since must be before until".into()));
        }
    }
    Ok(Span {
        since,
        until,
        include_bots: include_bots.unwrap_or(false),
    })
}

impl StatsParams {
    fn question(&self, code: String) -> Result<StatsQuestion, ApiError> {
        let span = span(
            self.since.as_deref(),
            self.until.as_deref(),
            self.include_bots,
        )?;
        let by_hour = match self.by.as_deref() {
            None | Some("day") => false,
            Some("hour") => true,
            Some(other) => return Err(invalid(format!("by must be hour or day, not {other:?}"))),
        };
        Ok(StatsQuestion {
            code,
            span,
            by_hour,
        })
    }
}

fn engine(state: &AppState) -> Result<&crate::stats::StatsEngine, ApiError> {
    state
        .stats
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::StatsUnavailable, StatsError::NoLake.to_string()))
}

fn stats_failed(e: StatsError) -> ApiError {
    match e {
        StatsError::BadQuestion(why) => invalid(why),
        e => ApiError::unavailable(ErrorCode::StatsUnavailable, &e),
    }
}

async fn answer_stats(
    state: &AppState,
    question: &StatsQuestion,
) -> Result<HttpResponse, ApiError> {
    let answer = engine(state)?
        .link_stats(question)
        .await
        .map_err(stats_failed)?;
    let stats: LinkStats = serde_json::from_slice(&answer)
        .map_err(|e| ApiError::unavailable(ErrorCode::StatsUnavailable, &e))?;
    Ok(HttpResponse::Ok().json(stats))
}

/// One of the caller's links, its clicks counted from the lake.
#[utoipa::path(get, path = "/api/v1/links/{code}/stats", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), StatsParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The statistics; they lag redirects by at most one aggregate interval", body = LinkStats),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 503, description = "No lake, or the query failed; or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, params))]
pub async fn link_stats(
    caller: Caller,
    code: web::Path<String>,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::StatsRead)?;
    let mut question = params.question(String::new())?;
    question.code = state.links.find(caller.actor(), &code).await?.code;
    answer_stats(&state, &question).await
}

/// Bounds of a CSV export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// Clicks at or after: a duration back from now (`7d`, `24h`), a date (`2026-11-01`) or an RFC 3339 time
    /// [default: all time].
    since: Option<String>,
    /// Clicks before; the same forms [default: now].
    until: Option<String>,
    /// List the clicks of known bots too [default: false].
    include_bots: Option<bool>,
}

impl RangeParams {
    fn span(&self) -> Result<Span, ApiError> {
        span(
            self.since.as_deref(),
            self.until.as_deref(),
            self.include_bots,
        )
    }
}

async fn answer_csv(
    state: &AppState,
    code: &str,
    params: &RangeParams,
) -> Result<HttpResponse, ApiError> {
    let span = params.span()?;
    let engine = state.stats.clone().ok_or_else(|| {
        ApiError::new(ErrorCode::StatsUnavailable, StatsError::NoLake.to_string())
    })?;
    let stream = engine.clicks_csv(code, &span).await.map_err(stats_failed)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{code}-clicks.csv\""),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "private, no-store"))
        .streaming(stream))
}

/// One of the caller's links, its raw clicks as CSV, oldest first.
///
/// Columns: `time,code,referrer,referrer_host,country,browser,os,device,bot`.
/// The answer is streamed as the lake is read; a failure part-way cuts the
/// transfer short rather than end a shorter file cleanly.
#[utoipa::path(get, path = "/api/v1/links/{code}/clicks.csv", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), RangeParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A header line, then one line per click", content_type = "text/csv", body = String),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 503, description = "No lake, or the query failed; or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, params))]
pub async fn clicks_csv(
    caller: Caller,
    code: web::Path<String>,
    params: web::Query<RangeParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::StatsRead)?;
    params.span()?;
    let link = state.links.find(caller.actor(), &code).await?;
    answer_csv(&state, &link.code, &params).await
}

/// Bounds and length of a top list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TopParams {
    /// Clicks at or after; the forms of the link stats [default: all time].
    since: Option<String>,
    /// Clicks before [default: now].
    until: Option<String>,
    /// How many links, 1 to 1000 [default: 10].
    #[param(minimum = 0)]
    limit: Option<u32>,
    /// Count clicks of known bots too [default: false].
    include_bots: Option<bool>,
}

/// One of the most clicked links.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopLink {
    code: String,
    /// Its target now (a deleted link keeps its last one).
    #[serde(default)]
    url: String,
    clicks: u64,
    unique_visitors: u64,
}

/// The owner's most clicked links, most first (ties by code).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopLinks {
    links: Vec<TopLink>,
}

/// Links read from the store per page while gathering an owner's codes.
const OWNER_PAGE: usize = 1000;

/// The caller's most clicked links.
#[utoipa::path(get, path = "/api/v1/stats/top", tag = "stats",
    params(TopParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The links; they lag redirects by at most one aggregate interval", body = TopLinks),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 503, description = "No lake, or the query failed; or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, params))]
pub async fn top(
    caller: Caller,
    params: web::Query<TopParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::StatsRead)?;
    let span = span(
        params.since.as_deref(),
        params.until.as_deref(),
        params.include_bots,
    )?;
    let limit = params.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(invalid(format!("limit must be 1 to 1000, not {limit}")));
    }
    let engine = engine(&state)?;
    // Every link of the owner, deleted ones too: their clicks happened.
    let mut urls = std::collections::HashMap::new();
    let mut before_id = None;
    loop {
        let page = state
            .store
            .list_links(&snowlink_store::LinkQuery {
                owner: caller.owner().to_owned(),
                before_id,
                limit: OWNER_PAGE,
                q: None,
                tag: None,
                state: snowlink_store::StateFilter::All,
                now_ms: crate::now_ms(),
            })
            .await?;
        before_id = page.last().map(|l| l.id);
        let full = page.len() == OWNER_PAGE;
        urls.extend(page.into_iter().map(|l| (l.code, l.url)));
        if !full {
            break;
        }
    }
    let codes: Vec<String> = urls.keys().cloned().collect();
    let answer = engine
        .top(&codes, &span, limit)
        .await
        .map_err(stats_failed)?;
    let mut links: Vec<TopLink> = serde_json::from_slice(&answer)
        .map_err(|e| ApiError::unavailable(ErrorCode::StatsUnavailable, &e))?;
    for link in &mut links {
        link.url = urls.remove(&link.code).unwrap_or_default();
    }
    Ok(HttpResponse::Ok().json(TopLinks { links }))
}

/// A link whose stats are public, for a client within its rate; 404 for
/// any other link, as if it did not exist.
async fn public_link(
    state: &AppState,
    req: &HttpRequest,
    code: &str,
) -> Result<std::sync::Arc<snowlink_store::Link>, ApiError> {
    let engine = engine(state)?;
    if let Some(ip) = state.client_ip(req) {
        // In this process's memory only: the address is never stored.
        let decision = state
            .limiter
            .take_in_process(&format!("public-stats:{ip}"), engine.public_rate);
        req.extensions_mut().insert(decision);
        if !decision.allowed {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "public statistics allow {} requests a minute; retry in {} s",
                    decision.limit,
                    decision.retry_after_secs()
                ),
            ));
        }
    }
    if !crate::links::is_code_syntax(code) {
        return Err(ApiError::link_not_found(code));
    }
    state
        .cache
        .get(code)
        .await
        .map_err(|e| ApiError::unavailable(ErrorCode::StoreUnavailable, &e))?
        .filter(|l| l.public_stats && l.deleted_at.is_none())
        .ok_or_else(|| ApiError::link_not_found(code))
}

/// A link's statistics, without a key, if it was made with `"public_stats": true`.
#[utoipa::path(get, path = "/api/v1/public/links/{code}/stats", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), StatsParams),
    responses(
        (status = 200, description = "The statistics", body = LinkStats),
        PublicErrors,
        (status = 503, description = "No lake, or the query failed; or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, req, params))]
pub async fn public_stats(
    req: HttpRequest,
    code: web::Path<String>,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut question = params.question(String::new())?;
    question.code = public_link(&state, &req, &code).await?.code.clone();
    answer_stats(&state, &question).await
}

/// A link's raw clicks as CSV, without a key, if its stats are public.
#[utoipa::path(get, path = "/api/v1/public/links/{code}/clicks.csv", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), RangeParams),
    responses(
        (status = 200, description = "A header line, then one line per click", content_type = "text/csv", body = String),
        PublicErrors,
        (status = 503, description = "No lake, or the query failed; or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, req, params))]
pub async fn public_clicks_csv(
    req: HttpRequest,
    code: web::Path<String>,
    params: web::Query<RangeParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    params.span()?;
    let link = public_link(&state, &req, &code).await?;
    answer_csv(&state, &link.code, &params).await
}

/// The QR code of a link whose stats are public, without a key.
#[utoipa::path(get, path = "/api/v1/public/links/{code}/qr", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), super::qr::QrParams),
    responses(
        (status = 200, description = "The image", content(
            (Vec<u8> = "image/png"),
            (String = "image/svg+xml"),
        )),
        PublicErrors,
        (status = 503, description = "No lake, or the store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, req, params))]
pub async fn public_qr(
    req: HttpRequest,
    code: web::Path<String>,
    params: web::Query<super::qr::QrParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (format, size): (Format, u32) = params.checked()?;
    let link = public_link(&state, &req, &code).await?;
    super::qr::qr_image(&state, &link.code, format, size)
}
