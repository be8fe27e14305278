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

/// Declares every error code once: its HTTP status and what it means. The
/// The error table of `docs/api.md` is checked against this one (see the tests).
macro_rules! error_codes {
    ($($variant:ident => $status:ident, $code:literal, $meaning:literal;)*) => {
        /// Every machine code the API answers with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant),*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The `code` field of the body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code),*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status),*
                }
            }

            /// What the code means; the message when there is nothing more
            /// specific to say.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning),*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson => BAD_REQUEST, "invalid_json", "the body is not valid JSON";
    InvalidBody => BAD_REQUEST, "invalid_body", "the body has an unknown, missing or mistyped field";
    InvalidUrl => BAD_REQUEST, "invalid_url", "the url is not an absolute URL with a host";
    UrlSchemeNotAllowed => BAD_REQUEST, "url_scheme_not_allowed", "only http and https targets are allowed";
    UrlTooLong => BAD_REQUEST, "url_too_long", "the url is longer than the service accepts";
    UrlPointsToSelf => BAD_REQUEST, "url_points_to_self", "the url points at this shortener";
    UrlHasUserinfo => BAD_REQUEST, "url_has_userinfo", "the url carries a user name or password (user@host)";
    UrlTargetNotAllowed => BAD_REQUEST, "url_target_not_allowed", "the url points at a loopback, private or link-local address";
    UrlBlocked => BAD_REQUEST, "url_blocked", "the url's host is on the service's blocklist";
    InvalidAlias => BAD_REQUEST, "invalid_alias", "the alias is not 3 to 64 of [A-Za-z0-9_-], or has the shape of a generated code";
    AliasReserved => BAD_REQUEST, "alias_reserved", "the alias is a route name";
    InvalidRedirect => BAD_REQUEST, "invalid_redirect", "redirect is not one of 301, 302, 307, 308";
    InvalidExpiresAt => BAD_REQUEST, "invalid_expires_at", "expires_at is not an RFC 3339 time";
    ExpiresInPast => BAD_REQUEST, "expires_in_past", "expires_at is in the past";
    InvalidTags => BAD_REQUEST, "invalid_tags", "tags are not at most 10 distinct values of 1 to 32 of [a-z0-9_-]";
    InvalidQuery => BAD_REQUEST, "invalid_query", "a query parameter is unknown or out of range";
    MissingApiKey => UNAUTHORIZED, "missing_api_key", "send an API key as 'Authorization: Bearer <key>'";
    InvalidApiKey => UNAUTHORIZED, "invalid_api_key", "the API key is unknown or revoked";
    InsufficientScope => FORBIDDEN, "insufficient_scope", "the API key lacks the scope this route needs";
    LinkNotFound => NOT_FOUND, "link_not_found", "no link has this code";
    NotFound => NOT_FOUND, "not_found", "no such resource";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed", "this resource does not support that method";
    AliasTaken => CONFLICT, "alias_taken", "the alias is already taken";
    KeyNameTaken => CONFLICT, "key_name_taken", "an API key with this name already exists";
    LinkExpired => GONE, "link_expired", "the link has expired";
    LinkDeleted => GONE, "link_deleted", "the link has been deleted";
    LinkBlocked => GONE, "link_blocked", "the link's target host is on the service's blocklist";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large";
    RateLimited => TOO_MANY_REQUESTS, "rate_limited", "too many requests: the key's rate limit, or failed key attempts from one address";
    Internal => INTERNAL_SERVER_ERROR, "internal", "an unexpected error occurred";
    StorageFull => INSUFFICIENT_STORAGE, "storage_full", "the disk of the link store is full";
    StatsUnavailable => SERVICE_UNAVAILABLE, "stats_unavailable", "no click lake is configured (--lake), or the stats query failed";
    StoreUnavailable => SERVICE_UNAVAILABLE, "store_unavailable", "the link store cannot be reached";
    IdUnavailable => SERVICE_UNAVAILABLE, "id_unavailable", "no id can be issued now (the clock stepped back, or the worker id lease lapsed)";
}

impl From<snowlink_rules::Violation> for ErrorCode {
    fn from(v: snowlink_rules::Violation) -> Self {
        use snowlink_rules::Violation as V;
        match v {
            V::InvalidUrl => ErrorCode::InvalidUrl,
            V::UrlSchemeNotAllowed => ErrorCode::UrlSchemeNotAllowed,
            V::UrlTooLong => ErrorCode::UrlTooLong,
            V::UrlPointsToSelf => ErrorCode::UrlPointsToSelf,
            V::UrlHasUserinfo => ErrorCode::UrlHasUserinfo,
            V::UrlTargetNotAllowed => ErrorCode::UrlTargetNotAllowed,
            V::UrlBlocked => ErrorCode::UrlBlocked,
            V::InvalidAlias => ErrorCode::InvalidAlias,
            V::AliasReserved => ErrorCode::AliasReserved,
            V::InvalidRedirect => ErrorCode::InvalidRedirect,
            V::InvalidExpiresAt => ErrorCode::InvalidExpiresAt,
            V::ExpiresInPast => ErrorCode::ExpiresInPast,
            V::InvalidTags => ErrorCode::InvalidTags,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    error: ErrorDetail,
}

/// The document lists every code of the table.
fn error_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .description(Some("Stable and machine-readable: match on it."))
        .build()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `alias_taken`: match on it.
    #[schema(schema_with = error_code_schema)]
    code: &'static str,
    /// For people; may change.
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn link_not_found(code: &str) -> Self {
        Self::new(
            ErrorCode::LinkNotFound,
            format!("no link has the code {code:?}"),
        )
    }

    pub fn link_deleted(code: &str) -> Self {
        Self::new(
            ErrorCode::LinkDeleted,
            format!("the link {code:?} has been deleted"),
        )
    }

    pub fn link_expired(code: &str) -> Self {
        Self::new(
            ErrorCode::LinkExpired,
            format!("the link {code:?} has expired"),
        )
    }

    pub fn alias_taken(alias: &str) -> Self {
        Self::new(
            ErrorCode::AliasTaken,
            format!("the alias {alias:?} is already taken"),
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::NotFound, ErrorCode::NotFound.meaning())
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            ErrorCode::MethodNotAllowed.meaning(),
        )
    }

    /// A dependency is down; the cause is logged here, not sent.
    pub fn unavailable(code: ErrorCode, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, code = code.as_str(), "dependency unavailable");
        Self::new(
            code,
            "the service cannot handle this request right now; retry shortly",
        )
    }

    /// The JSON error body with another status than the code's own, for
    /// `/readyz`, whose failures are all 503 for load balancers.
    pub fn response_with_status(&self, status: StatusCode) -> HttpResponse {
        HttpResponse::build(status).json(ErrorResponse {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message.clone(),
            },
        })
    }

    /// Something that should not happen; the cause is logged here, not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "unexpected error");
        Self::new(ErrorCode::Internal, ErrorCode::Internal.meaning())
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.code.status()).json(ErrorResponse {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message.clone(),
            },
        })
    }
}

impl From<snowlink_store::StoreError> for ApiError {
    fn from(e: snowlink_store::StoreError) -> Self {
        use snowlink_store::StoreError::*;
        match e {
            Conflict(code) => Self::alias_taken(&code),
            KeyNameTaken(name) => Self::new(
                ErrorCode::KeyNameTaken,
                format!("an API key named {name:?} already exists"),
            ),
            Full(_) => {
                tracing::error!(error = %e, "store write refused: disk full");
                Self::new(
                    ErrorCode::StorageFull,
                    "the link store's disk is full: nothing was written; retry once space is freed",
                )
            }
            Backend(_) | Closed => Self::unavailable(ErrorCode::StoreUnavailable, &e),
        }
    }
}

impl From<snowlink_rules::links::Rejection> for ApiError {
    fn from(r: snowlink_rules::links::Rejection) -> Self {
        ApiError::new(ErrorCode::from(r.code), r.message)
    }
}

impl From<crate::manage::LinkError> for ApiError {
    fn from(e: crate::manage::LinkError) -> Self {
        use crate::manage::LinkError::*;
        match e {
            Rejected(r) => r.into(),
            Malformed(message) => Self::new(ErrorCode::InvalidBody, message),
            AliasTaken(code) => Self::alias_taken(&code),
            NotFound(code) => Self::link_not_found(&code),
            Deleted(code) => Self::link_deleted(&code),
            IdUnavailable(message) => Self::unavailable(ErrorCode::IdUnavailable, &message),
            Store(e) => e.into(),
        }
    }
}

/// Turns actix's JSON extractor failures into API errors.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match &err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds {limit} bytes"),
        ),
        E::Deserialize(de) if de.is_data() => ApiError::new(
            ErrorCode::InvalidBody,
            format!("invalid request body: {de}"),
        ),
        E::Deserialize(de) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {de}"),
        ),
        _ => ApiError::new(
            ErrorCode::InvalidJson,
            format!("could not read the body: {err}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn every_rule_violation_is_the_api_code_of_the_same_name() {
        for v in snowlink_rules::Violation::ALL {
            let code = ErrorCode::from(*v);
            assert_eq!(code.as_str(), v.as_str());
            assert_eq!(code.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn codes_are_unique() {
        let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    /// The error table of `docs/api.md` lists exactly the codes of this
    /// table, each under its status.
    #[test]
    fn the_documented_table_matches() {
        let readme = include_str!("../../../docs/api.md");
        let section = readme
            .split("## Errors")
            .nth(1)
            .expect("an Errors section in docs/api.md");
        let mut documented: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
        for line in section
            .lines()
            .skip_while(|l| !l.starts_with("| status"))
            .skip(2)
        {
            let Some(rest) = line.strip_prefix("| ") else {
                break;
            };
            let (status, codes) = rest.split_once(" | ").expect("status | codes");
            let status: u16 = status.trim().parse().expect("a status");
            for code in codes.split('`').skip(1).step_by(2) {
                documented
                    .entry(status)
                    .or_default()
                    .insert(code.to_owned());
            }
        }
        let mut table: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            table
                .entry(code.status().as_u16())
                .or_default()
                .insert(code.as_str().to_owned());
        }
        assert_eq!(documented, table);
    }
}
