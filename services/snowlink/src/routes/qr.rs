//! QR codes of short URLs: `/api/v1/links/{code}/qr` for the owner, and
//! the image itself for the public stats route.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use snowlink_store::Scope;

use super::openapi::KeyErrors;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::state::AppState;

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QrParams {
    /// `png` (default) or `svg`.
    format: Option<String>,
    /// Side of the image in pixels, 64 to 2048 [default: 256].
    #[param(minimum = 0)]
    size: Option<u32>,
}

/// A QR code of the short URL.
#[utoipa::path(get, path = "/api/v1/links/{code}/qr", tag = "links", params(("code" = String, Path, description = "The link's code or alias"), QrParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The image", content(
            (Vec<u8> = "image/png"),
            (String = "image/svg+xml"),
        )),
        (status = 400, description = "A bad parameter: see `error.code`", body = ErrorResponse),
        KeyErrors,
        (status = 404, description = "No such link for this owner", body = ErrorResponse),
        (status = 410, description = "Deleted", body = ErrorResponse),
        (status = 503, description = "The store cannot be reached", body = ErrorResponse),
    ))]
#[tracing::instrument(skip(state, caller, params))]
pub async fn qr(
    caller: Caller,
    code: web::Path<String>,
    params: web::Query<QrParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::LinksRead)?;
    let (format, size) = params.checked()?;
    let link = state.links.find(caller.actor(), &code).await?;
    qr_image(&state, &link.code, format, size)
}

impl QrParams {
    /// The image format and side asked for, checked.
    pub(crate) fn checked(&self) -> Result<(crate::qr::Format, u32), ApiError> {
        use crate::qr::{Format, DEFAULT_SIZE, MAX_SIZE, MIN_SIZE};
        let params = self;
        let format = match params.format.as_deref() {
            None => Format::Png,
            Some(f) => Format::parse(f)
                .ok_or_else(|| invalid_query(format!("format must be png or svg, not {f:?}")))?,
        };
        let size = params.size.unwrap_or(DEFAULT_SIZE);
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
            return Err(invalid_query(format!(
                "size must be {MIN_SIZE} to {MAX_SIZE} pixels, not {size}"
            )));
        }
        Ok((format, size))
    }
}

/// The QR code of the short URL of `code`.
pub(crate) fn qr_image(
    state: &AppState,
    code: &str,
    format: crate::qr::Format,
    size: u32,
) -> Result<HttpResponse, ApiError> {
    let short_url = format!("{}{code}", state.short_url_base);
    let image = crate::qr::render(&short_url, format, size).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .body(image))
}
