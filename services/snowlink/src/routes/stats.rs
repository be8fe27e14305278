//! `GET /api/v1/links/{code}/stats`: one link's statistics from the lake.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use snowlink_store::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::state::AppState;
use crate::stats::{StatsError, StatsQuestion};

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

/// Clicks in one bucket of the series.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsPoint {
    /// Start of the bucket, RFC 3339, UTC.
    bucket: String,
    clicks: u64,
}

/// One value of a breakdown: the top 10 by clicks, then `(other)` for the
/// rest; `(none)` counts clicks without a value.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsShare {
    value: String,
    clicks: u64,
    unique_visitors: u64,
}

/// A link's statistics. Every breakdown adds up to `clicks`; the series is
/// gap-filled with zeros.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkStats {
    code: String,
    /// The lower bound, RFC 3339; null for all time.
    since: Option<String>,
    /// The upper bound, RFC 3339; null for open.
    until: Option<String>,
    /// Clicks counted (bots excluded unless `include_bots`).
    clicks: u64,
    unique_visitors: u64,
    /// Clicks of known bots in the range.
    bot_clicks: u64,
    series: Vec<StatsPoint>,
    referrers: Vec<StatsShare>,
    countries: Vec<StatsShare>,
    browsers: Vec<StatsShare>,
    os: Vec<StatsShare>,
    devices: Vec<StatsShare>,
}

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

/// One of the caller's links, its clicks counted from the lake.
#[utoipa::path(get, path = "/api/v1/links/{code}/stats", tag = "stats",
    params(("code" = String, Path, description = "The link's code or alias"), StatsParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The statistics; they lag redirects by at most one aggregate interval", body = LinkStats),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorResponse),
        (status = 403, description = "The key lacks the stats:read scope", body = ErrorResponse),
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 429, description = "The key's rate limit, or failed key attempts", body = ErrorResponse),
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
    let params = params.into_inner();
    let now = chrono::Utc::now();
    let since = bound("since", params.since.as_deref(), now)?;
    let until = bound("until", params.until.as_deref(), now)?;
    if let (Some(s), Some(u)) = (&since, &until) {
        // Both are RFC 3339 UTC with the same layout: text order is time order.
        if s >= u {
            return Err(invalid("since must be before until".into()));
        }
    }
    let by_hour = match params.by.as_deref() {
        None | Some("day") => false,
        Some("hour") => true,
        Some(other) => return Err(invalid(format!("by must be hour or day, not {other:?}"))),
    };
    let link = super::links::find(&state, &caller, &code).await?;
    let Some(engine) = &state.stats else {
        return Err(ApiError::new(
            ErrorCode::StatsUnavailable,
            StatsError::NoLake.to_string(),
        ));
    };
    let question = StatsQuestion {
        code: link.code.clone(),
        since,
        until,
        by_hour,
        include_bots: params.include_bots.unwrap_or(false),
    };
    let answer = engine.link_stats(&question).await.map_err(|e| match e {
        // Too many buckets is the asker's to fix.
        StatsError::Failed(why) if why.contains("buckets") => invalid(why),
        e => ApiError::unavailable(ErrorCode::StatsUnavailable, &e),
    })?;
    let stats: LinkStats = serde_json::from_slice(&answer)
        .map_err(|e| ApiError::unavailable(ErrorCode::StatsUnavailable, &e))?;
    Ok(HttpResponse::Ok().json(stats))
}
