//! `/api/v1/links`: create, read and delete links. Every route needs a key.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use snowlink_store::{CodeKind, DeleteOutcome, Link};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::links::{check_alias, check_redirect, is_code_syntax, parse_expiry, Rejection};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // A scope, so that other paths are told apart by a prefix comparison
    // before any pattern runs.
    cfg.service(
        web::scope("/api/v1/links")
            .service(
                web::resource("")
                    .route(web::post().to(create))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{code}")
                    .route(web::get().to(get))
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
        }
    }
}

#[tracing::instrument(skip(state, body), fields(alias = body.alias.as_deref(), code))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateLink>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let now = crate::now_ms();
    let url = state.url_policy.check(&body.url)?;
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
        owner: Some(caller.0.to_string()),
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

async fn find(state: &AppState, code: &str) -> Result<std::sync::Arc<Link>, ApiError> {
    if !is_code_syntax(code) {
        return Err(ApiError::link_not_found(code));
    }
    // Management reads go to the store, not the cache: they must be exact.
    let link = state
        .store
        .get_link(code)
        .await?
        .ok_or_else(|| ApiError::link_not_found(code))?;
    if link.deleted_at.is_some() {
        return Err(ApiError::link_deleted(code));
    }
    Ok(std::sync::Arc::new(link))
}

#[tracing::instrument(skip(state, _caller))]
async fn get(
    _caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let link = find(&state, &code).await?;
    Ok(HttpResponse::Ok().json(LinkView::new(&link, &state.short_url_base)))
}

#[tracing::instrument(skip(state, caller), fields(caller = %caller.0))]
async fn delete(
    caller: Caller,
    code: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    if !is_code_syntax(&code) {
        return Err(ApiError::link_not_found(&code));
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
