//! The one error body of the HTTP API:
//!
//! ```json
//! {"error": {"code": "alias_taken", "message": "the alias \"docs\" is already taken"}}
//! ```
//!
//! `code` is stable and machine-readable; clients match on it, never on the
//! message. Expected failures are 4xx with a message safe to show a user.
//! Unexpected ones are an opaque 500 (or 503 when a dependency is down) whose
//! cause goes to the log, never to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn link_not_found(code: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "link_not_found",
            format!("no link has the code {code:?}"),
        )
    }

    pub fn link_deleted(code: &str) -> Self {
        Self::new(
            StatusCode::GONE,
            "link_deleted",
            format!("the link {code:?} has been deleted"),
        )
    }

    pub fn link_expired(code: &str) -> Self {
        Self::new(
            StatusCode::GONE,
            "link_expired",
            format!("the link {code:?} has expired"),
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this resource does not support that method",
        )
    }

    /// A dependency is down; the cause is logged here, not sent.
    pub fn unavailable(code: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, code, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "the service cannot handle this request right now; retry shortly",
        )
    }

    /// Something that should not happen; the cause is logged here, not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "unexpected error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an unexpected error occurred",
        )
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

impl From<snowlink_store::StoreError> for ApiError {
    fn from(e: snowlink_store::StoreError) -> Self {
        use snowlink_store::StoreError::*;
        match e {
            Conflict(code) => Self::new(
                StatusCode::CONFLICT,
                "alias_taken",
                format!("the code {code:?} is already taken"),
            ),
            KeyNameTaken(name) => Self::new(
                StatusCode::CONFLICT,
                "key_name_taken",
                format!("an API key named {name:?} already exists"),
            ),
            Backend(_) | Closed => Self::unavailable("store_unavailable", &e),
        }
    }
}

/// Turns actix's JSON extractor failures into API errors.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match &err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        ),
        E::Deserialize(de) if de.is_data() => {
            ApiError::bad_request("invalid_body", format!("invalid request body: {de}"))
        }
        E::Deserialize(de) => {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {de}"))
        }
        _ => ApiError::bad_request("invalid_json", format!("could not read the body: {err}")),
    }
}
