//! `/api/v1/links`: create, list, read, change and delete links. Every route
//! needs a key with the route's scope, and sees only the links of the key's
//! owner (every owner's with `admin`); another owner's link answers 404,
//! exactly as if it did not exist.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use snowlink_store::{
    CodeKind, DeleteOutcome, Link, LinkQuery, LinkState, LinkUpdate, Scope, StateFilter,
    UpdateOutcome,
};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::links::{
    check_alias, check_redirect, check_tags, is_code_syntax, parse_expiry, Rejection,
};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // A scope, so that other paths are told apart by a prefix comparison
    // before any pattern runs.
    cfg.service(
        web::scope("/api/v1/links")
            .service(
                web::resource("")
                    .route(web::post().to(create))
                    .route(web::get().to(list))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{code}")
                    .route(web::get().to(get))
                    .route(web::patch().to(patch))
                    .route(web::delete().to(delete))
                    .default_service(web::to(super::method_not_allowed)),
            ),
    );
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::new(r.code, r.message)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    url: String,
    alias: Option<String>,
    expires_at: Option<String>,
    redirect: Option<u16>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A change: absent fields stay, `"expires_at": null` clears the expiry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchLink {
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    redirect: Option<u16>,
    tags: Option<Vec<String>>,
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
#[derive(Debug, Serialize)]
pub struct LinkView {
    code: String,
    short_url: String,
    url: String,
    created_at: String,
    expires_at: Option<String>,
    redirect: u16,
    tags: Vec<String>,
    /// `active`, `expired` or `deleted`.
    state: &'static str,
    owner: Option<String>,
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
        }
    }
}

#[tracing::instrument(skip(state, body), fields(alias = body.alias.as_deref(), code))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateLink>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let body = body.into_inner();
    let now = crate::now_ms();
    let url = state.url_policy.check(&body.url)?;
    let tags = check_tags(&body.tags)?;
    let redirect = check_redirect(body.redirect)?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|raw| parse_expiry(raw, now))
        .transpose()?;
    if let Some(alias) = &body.alias {
        check_alias(alias)?;
    }
    let id = state
        .ids
        .next_id()
        .await
        .map_err(|e| ApiError::unavailable(ErrorCode::IdUnavailable, &e))?;
    let (code, kind) = match body.alias {
        Some(alias) => (alias, CodeKind::Alias),
        None => (state.codec.encode(id), CodeKind::Generated),
    };
    tracing::Span::current().record("code", code.as_str());
    let link = Link {
        code,
        id: id as i64,
        kind,
        url,
        redirect,
        created_at: now,
        expires_at,
        deleted_at: None,
        owner: Some(caller.owner().to_owned()),
        tags,
    };
    match state.store.create_link(&link).await {
        Ok(()) => {}
        Err(snowlink_store::StoreError::Conflict(code)) if kind == CodeKind::Alias => {
            return Err(ApiError::alias_taken(&code));
        }
        Err(snowlink_store::StoreError::Conflict(code)) => {
            // Generated codes are unique by construction, and the store
            // refuses to overwrite one: this means two instances share a
            // worker id. Nothing was written; the client may retry.
            return Err(ApiError::unavailable(
                ErrorCode::IdUnavailable,
                &format!(
                    "generated code {code} is already taken: is worker id {} used twice?",
                    state.ids.worker_id()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    // A negative entry may be cached, here or elsewhere, from before the
    // link existed.
    state.cache.changed(&link.code, Some(&link)).await;
    tracing::info!(code = %link.code, "link created");
    let view = LinkView::new(&link, &state.short_url_base);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, view.short_url.clone()))
        .json(view))
}

/// The link under `code` if the caller manages it; 404 if it does not exist
/// or belongs to another owner, 410 if it was deleted.
async fn find(state: &AppState, caller: &Caller, code: &str) -> Result<Link, ApiError> {
    if !is_code_syntax(code) {
        return Err(ApiError::link_not_found(code));
    }
    // Management reads go to the store, not the cache: they must be exact.
    let link = state
        .store
        .get_link(code)
        .await?
        .filter(|l| caller.manages(l.owner.as_deref()))
        .ok_or_else(|| ApiError::link_not_found(code))?;
    if link.deleted_at.is_some() {
        return Err(ApiError::link_deleted(code));
    }
    Ok(link)
}

#[tracing::instrument(skip(state, caller))]
async fn get(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksRead)?;
    let link = find(&state, &caller, &code).await?;
    Ok(HttpResponse::Ok().json(LinkView::new(&link, &state.short_url_base)))
}

/// Most links on one page.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<usize>,
    cursor: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    state: Option<String>,
    /// Another owner's links; `admin` keys only.
    owner: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page {
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

#[tracing::instrument(skip(state, caller, params))]
async fn list(
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
    let mut links = state.store.list_links(&query).await?;
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

#[tracing::instrument(skip(state, caller, body), fields(caller = %caller.name()))]
async fn patch(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Json<PatchLink>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let code = code.into_inner();
    let body = body.into_inner();
    let now = crate::now_ms();
    let update = LinkUpdate {
        url: body
            .url
            .as_deref()
            .map(|u| state.url_policy.check(u))
            .transpose()?,
        expires_at: body
            .expires_at
            .map(|e| e.as_deref().map(|raw| parse_expiry(raw, now)).transpose())
            .transpose()?,
        redirect: body.redirect.map(|r| check_redirect(Some(r))).transpose()?,
        tags: body.tags.as_deref().map(check_tags).transpose()?,
    };
    // Ownership first: another owner's link is not there.
    find(&state, &caller, &code).await?;
    let link = match state.store.update_link(&code, &update).await? {
        UpdateOutcome::Updated(link) => link,
        UpdateOutcome::Deleted => return Err(ApiError::link_deleted(&code)),
        UpdateOutcome::NotFound => return Err(ApiError::link_not_found(&code)),
    };
    // Every instance stops serving the old target, as after a delete.
    state.cache.changed(&code, Some(&link)).await;
    tracing::info!(%code, "link changed");
    Ok(HttpResponse::Ok().json(LinkView::new(&link, &state.short_url_base)))
}

#[tracing::instrument(skip(state, caller), fields(caller = %caller.name()))]
async fn delete(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksWrite)?;
    let code = code.into_inner();
    if !is_code_syntax(&code) {
        return Err(ApiError::link_not_found(&code));
    }
    match state.store.get_link(&code).await? {
        Some(link) if caller.manages(link.owner.as_deref()) => {}
        _ => return Err(ApiError::link_not_found(&code)),
    }
    let outcome = state.store.delete_link(&code, crate::now_ms()).await?;
    if outcome != DeleteOutcome::NotFound {
        // Every instance must stop redirecting: record the tombstone in the
        // shared cache and tell the others.
        let tombstone = state.store.get_link(&code).await.ok().flatten();
        state.cache.changed(&code, tombstone.as_ref()).await;
    }
    match outcome {
        DeleteOutcome::Deleted => {
            tracing::info!(%code, "link deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        DeleteOutcome::AlreadyDeleted => Err(ApiError::link_deleted(&code)),
        DeleteOutcome::NotFound => Err(ApiError::link_not_found(&code)),
    }
}
