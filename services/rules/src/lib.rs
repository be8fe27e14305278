//! The rules a Snowlink link follows, with no HTTP and no storage: which
//! target URLs are accepted and in which form they are stored
//! ([`links::UrlPolicy`], [`targets`]), aliases, tags, expiries and redirect
//! statuses. The service turns a [`Violation`] into its API error of the
//! same name; the fuzz targets call these functions directly.

pub mod links;
pub mod targets;

pub use links::{
    check_alias, check_redirect, check_tags, is_code_syntax, parse_expiry, Rejection, UrlPolicy,
    DEFAULT_REDIRECT, REDIRECT_STATUSES,
};

/// Which rule a link broke. [`Violation::as_str`] is the API's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    InvalidUrl,
    UrlSchemeNotAllowed,
    UrlTooLong,
    UrlPointsToSelf,
    UrlHasUserinfo,
    UrlTargetNotAllowed,
    UrlBlocked,
    InvalidAlias,
    AliasReserved,
    InvalidRedirect,
    InvalidExpiresAt,
    ExpiresInPast,
    InvalidTags,
}

impl Violation {
    pub const ALL: &'static [Violation] = &[
        Violation::InvalidUrl,
        Violation::UrlSchemeNotAllowed,
        Violation::UrlTooLong,
        Violation::UrlPointsToSelf,
        Violation::UrlHasUserinfo,
        Violation::UrlTargetNotAllowed,
        Violation::UrlBlocked,
        Violation::InvalidAlias,
        Violation::AliasReserved,
        Violation::InvalidRedirect,
        Violation::InvalidExpiresAt,
        Violation::ExpiresInPast,
        Violation::InvalidTags,
    ];

    /// The machine code, as the API's error table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::InvalidUrl => "invalid_url",
            Violation::UrlSchemeNotAllowed => "url_scheme_not_allowed",
            Violation::UrlTooLong => "url_too_long",
            Violation::UrlPointsToSelf => "url_points_to_self",
            Violation::UrlHasUserinfo => "url_has_userinfo",
            Violation::UrlTargetNotAllowed => "url_target_not_allowed",
            Violation::UrlBlocked => "url_blocked",
            Violation::InvalidAlias => "invalid_alias",
            Violation::AliasReserved => "alias_reserved",
            Violation::InvalidRedirect => "invalid_redirect",
            Violation::InvalidExpiresAt => "invalid_expires_at",
            Violation::ExpiresInPast => "expires_in_past",
            Violation::InvalidTags => "invalid_tags",
        }
    }
}
