//! `/api/v1/links`: create, list, read, change and delete links. Every route
//! needs a key with the route's scope, and sees only the links of the key's
//! owner (every owner's with `admin`); another owner's link answers 404,
//! exactly as if it did not exist.

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use snowlink_store::{Link, LinkQuery, LinkState, Scope, StateFilter};

use super::openapi::KeyErrors;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::manage::{first_alias_wins, Change, LinkError, NewLink};
use crate::state::AppState;

/// A link to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// The target: an absolute http(s) URL.
    #[schema(example = "https://example.com/a/long/path")]
    url: String,
    /// A chosen code: 3 to 64 of `[A-Za-z0-9_-]`, not starting with `-`, not 11 letters and digits.
    alias: Option<String>,
    /// When the link stops redirecting (RFC 3339); it then answers 410.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// The redirect status: 301, 302 (default), 307 or 308.
    #[schema(minimum = 0, maximum = 65535)]
    redirect: Option<u16>,
    /// At most 10, each 1 to 32 of `[a-z0-9_-]`.
    #[serde(default)]
    tags: Vec<String>,
    /// Whether anyone may see its statistics page, `/{code}+` [default: false].
    #[serde(default)]
    public_stats: bool,
}

impl From<CreateLink> for NewLink {
    fn from(b: CreateLink) -> Self {
        NewLink {
            url: b.url,
            alias: b.alias,
            expires_at: b.expires_at,
            redirect: b.redirect,
            tags: b.tags,
            public_stats: b.public_stats,
        }
    }
}

/// A change: absent fields stay, `"expires_at": null` clears the expiry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchLink {
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Option<String>>,
    #[schema(minimum = 0, maximum = 65535)]
    redirect: Option<u16>,
    tags: Option<Vec<String>>,
    public_stats: Option<bool>,
}

impl From<PatchLink> for Change {
    fn from(b: PatchLink) -> Self {
        Change {
            url: b.url,
            expires_at: b.expires_at,
            redirect: b.redirect,
            tags: b.tags,
            public_stats: b.public_stats,
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A link as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    code: String,
    short_url: String,
    url: String,
    created_at: String,
    expires_at: Option<String>,
    redirect: u16,
    tags: Vec<String>,
    /// `active`, `expired` or `deleted`.
    #[schema(value_type = String, pattern = "^(active|expired|deleted)$")]
    state: &'static str,
    /// The owner of the key that created it.
    owner: Option<String>,
    /// Whether anyone may see its statistics page, `stats_url`.
    public_stats: bool,
    /// Its statistics page: public when `public_stats`, else for keys with `stats:read` of its owner.
    stats_url: String,
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl LinkView {
    fn new(link: &Link, base: &str) -> Self {
        Self {
            short_url: format!("{base}{}", link.code),
            code: link.code.clone(),
            url: link.url.clone(),
            created_at: rfc3339(link.created_at),
            expires_at: link.expires_at.map(rfc3339),
            redirect: link.redirect,
            tags: link.tags.clone(),
            state: match link.state_at(crate::now_ms()) {
                LinkState::Active => "active",
                LinkState::Expired => "expired",
                LinkState::Deleted => "deleted",
            },
            owner: link.owner.clone(),
            public_stats: link.public_stats,
            stats_url: format!("{base}{}+", link.code),
        }
    }
}

/// Shortens a URL.
#[utoipa::path(post, path = "/api/v1/links", tag = "links", request_body = CreateLink,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; `Location` is the short URL", body = LinkView),
        (status = 400, description = "A bad body: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 409, description = "The alias is taken", body = ErrorResponse),
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached, or no id can be issued", body = ErrorResponse),
        (status = 507, description = "The link store's disk is full; nothing was written", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, body, caller), fields(alias = body.alias.as_deref()))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateLink>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let link = state
        .links
        .create(caller.owner(), body.into_inner().into())
        .await?;
    let view = LinkView::new(&link, &state.short_url_base);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, view.short_url.clone()))
        .json(view))
}

/// Most links in one bulk request.
pub const MAX_BULK: usize = 1000;
/// A bulk body of the most links, each with a long URL, fits.
pub(super) const BULK_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Creates of one bulk request in flight at once.
const BULK_CONCURRENCY: usize = 32;

/// Up to 1000 links to create, each a create body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCreate {
    #[schema(value_type = Vec<CreateLink>, min_items = 1, max_items = 1000)]
    links: Vec<serde_json::Value>,
}

/// The outcome of each item, in input order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResults {
    results: Vec<BulkResult>,
}

/// The outcome of one item of a bulk request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BulkResult {
    Created { status: u16, link: LinkView },
    Failed { status: u16, error: BulkError },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkError {
    #[schema(value_type = String)]
    code: &'static str,
    message: String,
}

/// Creates up to 1000 links; one bad item never fails the others.
#[utoipa::path(post, path = "/api/v1/links/bulk", tag = "links", request_body = BulkCreate,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One result per item, in input order; an item's own failure (a taken alias, no id, a full disk) is in its result", body = BulkResults),
        (status = 400, description = "A bad body: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip_all, fields(items = body.links.len()))]
pub async fn bulk(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<BulkCreate>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let items = body.into_inner().links;
    if items.is_empty() || items.len() > MAX_BULK {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("links must hold 1 to {MAX_BULK} items, not {}", items.len()),
        ));
    }
    // Each item is a create: it costs what a create request costs. The
    // request itself paid for the first.
    let limit = caller.0.rate_limit.unwrap_or(state.key_rate_limit);
    if items.len() > 1 {
        let extra = (items.len() - 1) as u32;
        let decision = state.limiter.take_n(&caller.0.hash, limit, extra).await;
        req.extensions_mut().insert(decision);
        if !decision.allowed {
            let why = if items.len() as u32 > limit {
                format!(
                    "a bulk of {} links costs {} requests, more than this API key may make in a \
                     minute ({limit}): send fewer at once",
                    items.len(),
                    items.len()
                )
            } else {
                format!(
                    "a bulk of {} links costs {} requests; this API key may make {limit} a \
                     minute; retry in {} s",
                    items.len(),
                    items.len(),
                    decision.retry_after_secs()
                )
            };
            return Err(ApiError::new(ErrorCode::RateLimited, why));
        }
    }
    let items: Vec<Result<NewLink, LinkError>> = items
        .into_iter()
        .map(|item| {
            serde_json::from_value::<CreateLink>(item)
                .map(NewLink::from)
                .map_err(|e| LinkError::Malformed(format!("invalid link: {e}")))
        })
        .collect();
    let items = first_alias_wins(items, |l| l.alias.as_deref());
    let results: Vec<BulkResult> = futures::stream::iter(items)
        .map(|item| {
            let (state, caller) = (&state, &caller);
            async move {
                let created = match item {
                    Ok(new) => state.links.create(caller.owner(), new).await,
                    Err(e) => Err(e),
                };
                match created.map_err(ApiError::from) {
                    Ok(link) => BulkResult::Created {
                        status: 201,
                        link: LinkView::new(&link, &state.short_url_base),
                    },
                    Err(e) => BulkResult::Failed {
                        status: e.code().status().as_u16(),
                        error: BulkError {
                            code: e.code().as_str(),
                            message: e.message().to_owned(),
                        },
                    },
                }
            }
        })
        .buffered(BULK_CONCURRENCY)
        .collect()
        .await;
    Ok(HttpResponse::Ok().json(BulkResults { results }))
}

/// One of the caller's links.
#[utoipa::path(get, path = "/api/v1/links/{code}", tag = "links", params(("code" = String, Path, description = "The link's code or alias")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The link", body = LinkView),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller))]
pub async fn get(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksRead)?;
    let link = state.links.find(caller.actor(), &code).await?;
    Ok(HttpResponse::Ok().json(LinkView::new(&link, &state.short_url_base)))
}

/// Most links on one page.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Links on one page, 1 to 1000 [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
    /// A substring of the code or the URL, any case.
    q: Option<String>,
    /// Only links with this tag.
    tag: Option<String>,
    /// `active` (default), `expired`, `deleted` or `all`.
    state: Option<String>,
    /// Another owner's links; `admin` keys only.
    owner: Option<String>,
}

/// One page of links, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    links: Vec<LinkView>,
    next_cursor: Option<String>,
}

/// A cursor is the last id of the page before, opaque to clients.
fn encode_cursor(id: i64) -> String {
    format!("{:016x}", id as u64 ^ CURSOR_MASK)
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    (cursor.len() == 16)
        .then(|| u64::from_str_radix(cursor, 16).ok())
        .flatten()
        .map(|v| (v ^ CURSOR_MASK) as i64)
}

const CURSOR_MASK: u64 = 0x5a17_c0de_0000_0000;

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// The caller's links, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/links", tag = "links", params(ListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page; follow `next_cursor` until null", body = Page),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, params))]
pub async fn list(
    caller: Caller,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksRead)?;
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid_query(format!(
            "limit must be 1 to {MAX_PAGE}, not {limit}"
        )));
    }
    let before_id = params
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c).ok_or_else(|| invalid_query("cursor is not one this API gave")))
        .transpose()?;
    let state_filter = match params.state.as_deref() {
        None => StateFilter::default(),
        Some(s) => StateFilter::parse(s).ok_or_else(|| {
            invalid_query(format!(
                "state must be active, expired, deleted or all, not {s:?}"
            ))
        })?,
    };
    let owner = match params.owner {
        Some(owner) if owner != caller.owner() && !caller.is_admin() => {
            return Err(ApiError::new(
                ErrorCode::InsufficientScope,
                "listing another owner's links needs the \"admin\" scope",
            ))
        }
        Some(owner) => owner,
        None => caller.owner().to_owned(),
    };
    let query = LinkQuery {
        owner,
        before_id,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
        q: params.q.filter(|q| !q.is_empty()),
        tag: params.tag.filter(|t| !t.is_empty()),
        state: state_filter,
        now_ms: crate::now_ms(),
    };
    let mut links = state.links.list(&query).await?;
    let next_cursor = if links.len() > limit {
        links.truncate(limit);
        links.last().map(|l| encode_cursor(l.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page {
        links: links
            .iter()
            .map(|l| LinkView::new(l, &state.short_url_base))
            .collect(),
        next_cursor,
    }))
}

/// Changes a link's target, expiry, redirect status or tags.
#[utoipa::path(patch, path = "/api/v1/links/{code}", tag = "links", params(("code" = String, Path, description = "The link's code or alias")),
    request_body = PatchLink, security(("api_key" = [])),
    responses(
        (status = 200, description = "The link as it now is", body = LinkView),
        (status = 400, description = "A bad body: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
        (status = 507, description = "The link store's disk is full; nothing was written", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, body), fields(caller = %caller.name()))]
pub async fn patch(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Json<PatchLink>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let link = state
        .links
        .change(caller.actor(), &code, body.into_inner().into())
        .await?;
    Ok(HttpResponse::Ok().json(LinkView::new(&link, &state.short_url_base)))
}

/// Deletes a link: it answers 410 from then on, and its code is never reissued.
#[utoipa::path(delete, path = "/api/v1/links/{code}", tag = "links", params(("code" = String, Path, description = "The link's code or alias")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Already deleted", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
        (status = 507, description = "The link store's disk is full; nothing was written", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller), fields(caller = %caller.name()))]
pub async fn delete(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    state.links.delete(caller.actor(), &code).await?;
    Ok(HttpResponse::NoContent().finish())
}
