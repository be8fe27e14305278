//! The rules a link must follow.

use chrono::DateTime;
use std::sync::Arc;

use url::{Host, Url};

use crate::targets::{host_key, is_internal, Blocklist, OwnHosts};

use crate::Violation;

/// Why a link was refused: which rule, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Violation,
    pub message: String,
}

fn reject(code: Violation, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

pub const ALIAS_MIN: usize = 3;
pub const ALIAS_MAX: usize = 64;

/// Words an alias may not be, compared case-insensitively, because routes or
/// well-known paths already answer there.
pub const RESERVED_ALIASES: &[&str] = &["api", "healthz", "readyz", "metrics", "admin", "static"];

/// Redirect statuses a link may use.
pub const REDIRECT_STATUSES: &[u16] = &[301, 302, 307, 308];
pub const DEFAULT_REDIRECT: u16 = 302;

/// Target-URL checks that depend on the deployment.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    pub max_len: usize,
    /// This service's names; links to them would loop.
    pub own_hosts: OwnHosts,
    /// Whether loopback, private and link-local targets are accepted.
    pub allow_private: bool,
    pub blocklist: Arc<Blocklist>,
}

impl UrlPolicy {
    /// The policy for a service at `public_url`, with the defaults of the
    /// `targets` settings: internal targets refused, no blocklist.
    pub fn new(max_len: usize, public_url: &Url) -> Self {
        Self {
            max_len,
            own_hosts: OwnHosts::new(public_url, &[]).expect("a public URL is a host"),
            allow_private: false,
            blocklist: Arc::new(Blocklist::none()),
        }
    }

    /// Validates a target URL and returns the only form that is stored and
    /// served: the parser's normalised one. Every later reader of the
    /// `Location` header (browsers, other URL parsers) then sees the host
    /// that was checked here.
    pub fn check(&self, raw: &str) -> Result<String, Rejection> {
        if raw.len() > self.max_len {
            return Err(reject(
                Violation::UrlTooLong,
                format!(
                    "the url is {} bytes; the maximum is {}",
                    raw.len(),
                    self.max_len
                ),
            ));
        }
        let url = Url::parse(raw).map_err(|e| {
            reject(
                Violation::InvalidUrl,
                format!("the url is not an absolute URL: {e}"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(reject(
                Violation::UrlSchemeNotAllowed,
                format!(
                    "only http and https URLs can be shortened, not {:?}",
                    url.scheme()
                ),
            ));
        }
        let Some(host) = url.host().filter(|h| !matches!(h, Host::Domain(""))) else {
            return Err(reject(Violation::InvalidUrl, "the url has no host"));
        };
        // `https://bank.example@evil.example/` shows one host and goes to
        // another; and parsers disagree on where userinfo ends.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(reject(
                Violation::UrlHasUserinfo,
                "the url carries a user name or password before its host (user@host); remove it",
            ));
        }
        // A link back to this service would redirect to itself. Same host and
        // same (explicit or default) port is this service; another port on
        // the same host is another service.
        if self.own_hosts.contains(&url) {
            return Err(reject(
                Violation::UrlPointsToSelf,
                "the url points at this shortener itself",
            ));
        }
        let key = host_key(&host);
        if !self.allow_private && is_internal(&host) {
            return Err(reject(
                Violation::UrlTargetNotAllowed,
                format!("the url's host {key:?} is a loopback, private or link-local address"),
            ));
        }
        if self.blocklist.blocks_host(&key) {
            return Err(reject(
                Violation::UrlBlocked,
                format!("the host {key:?} is on this service's blocklist"),
            ));
        }
        let stored = String::from(url);
        if stored.len() > self.max_len {
            return Err(reject(
                Violation::UrlTooLong,
                format!(
                    "the url is {} bytes once encoded; the maximum is {}",
                    stored.len(),
                    self.max_len
                ),
            ));
        }
        Ok(stored)
    }
}

/// Checks a custom alias. Aliases share the code namespace, so an alias may
/// never look like a generated code (exactly 11 Base62 characters) nor take a
/// reserved word.
pub fn check_alias(alias: &str) -> Result<(), Rejection> {
    let len = alias.chars().count();
    if !(ALIAS_MIN..=ALIAS_MAX).contains(&len) {
        return Err(reject(
            Violation::InvalidAlias,
            format!("an alias is {ALIAS_MIN} to {ALIAS_MAX} characters, got {len}"),
        ));
    }
    if let Some(bad) = alias
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(reject(
            Violation::InvalidAlias,
            format!("an alias may contain only A-Z, a-z, 0-9, '_' and '-', not {bad:?}"),
        ));
    }
    if alias.starts_with('-') {
        return Err(reject(
            Violation::InvalidAlias,
            "an alias may not start with '-': command lines would read it as a flag",
        ));
    }
    if snowlink_id::codec::is_generated_shape(alias) {
        return Err(reject(
            Violation::AliasReserved,
            format!(
                "aliases of exactly {} letters and digits are reserved for generated codes; \
                 add a '-' or '_', or change the length",
                snowlink_id::CODE_LEN
            ),
        ));
    }
    if RESERVED_ALIASES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(alias))
    {
        return Err(reject(
            Violation::AliasReserved,
            format!("{alias:?} is a reserved word"),
        ));
    }
    Ok(())
}

/// Whether `s` could be a code at all (generated or alias). Anything else is
/// answered 404 without touching the cache or store.
pub fn is_code_syntax(s: &str) -> bool {
    (1..=ALIAS_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses an RFC 3339 expiry that must lie after `now_ms`.
pub fn parse_expiry(raw: &str, now_ms: i64) -> Result<i64, Rejection> {
    let at = DateTime::parse_from_rfc3339(raw).map_err(|e| {
        reject(
            Violation::InvalidExpiresAt,
            format!("expires_at must be an RFC 3339 time such as 2030-01-01T00:00:00Z: {e}"),
        )
    })?;
    let ms = at.timestamp_millis();
    if ms <= now_ms {
        return Err(reject(
            Violation::ExpiresInPast,
            "expires_at is in the past",
        ));
    }
    Ok(ms)
}

/// Most tags on one link.
pub const MAX_TAGS: usize = 10;

/// Tags: at most [`MAX_TAGS`], each 1 to 32 of `[a-z0-9_-]`. Duplicates are
/// folded; the order given is kept.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>, Rejection> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let valid = (1..=32).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(reject(
                Violation::InvalidTags,
                format!("tag {tag:?} must be 1 to 32 of a-z, 0-9, '-' and '_'"),
            ));
        }
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(reject(
            Violation::InvalidTags,
            format!("at most {MAX_TAGS} tags, not {}", out.len()),
        ));
    }
    Ok(out)
}

pub fn check_redirect(status: Option<u16>) -> Result<u16, Rejection> {
    match status {
        None => Ok(DEFAULT_REDIRECT),
        Some(s) if REDIRECT_STATUSES.contains(&s) => Ok(s),
        Some(s) => Err(reject(
            Violation::InvalidRedirect,
            format!("redirect must be one of 301, 302, 307, 308, not {s}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> UrlPolicy {
        UrlPolicy::new(2048, &Url::parse("https://sho.rt").unwrap())
    }

    #[test]
    fn urls() {
        let p = policy();
        assert_eq!(
            p.check("https://example.com").unwrap(),
            "https://example.com/",
            "stored as normalised"
        );
        assert_eq!(
            p.check("HTTPS://Example.COM:443/a/../b").unwrap(),
            "https://example.com/b"
        );
        assert_eq!(
            p.check("http://example.com/a?b=c#d").unwrap(),
            "http://example.com/a?b=c#d"
        );
        assert_eq!(
            p.check("https://example.com/a b").unwrap(),
            "https://example.com/a%20b"
        );
        let code = |u: &str| p.check(u).unwrap_err().code.as_str();
        assert_eq!(code("ftp://example.com/"), "url_scheme_not_allowed");
        assert_eq!(code("javascript:alert(1)"), "url_scheme_not_allowed");
        assert_eq!(code("/relative"), "invalid_url");
        assert_eq!(code("example.com"), "invalid_url");
        assert_eq!(code("https://SHO.RT/abc"), "url_points_to_self");
        assert_eq!(code("http://sho.rt./abc"), "url_points_to_self");
        assert!(p.check("https://sho.rt:8443/abc").is_ok());
        assert_eq!(code("https://paypal.com@evil.example/"), "url_has_userinfo");
        assert_eq!(code("https://user:pw@example.com/"), "url_has_userinfo");
        assert_eq!(code("https://x@sho.rt/"), "url_has_userinfo");
        // Other parsers read this as user "good.example\" at evil.example;
        // what is stored is what this parser saw, so every reader agrees.
        assert_eq!(
            p.check("https://good.example\\@evil.example/").unwrap(),
            "https://good.example/@evil.example/"
        );
        assert_eq!(
            code("http://169.254.169.254/latest"),
            "url_target_not_allowed"
        );
        assert_eq!(code("http://2130706433/"), "url_target_not_allowed");
        assert_eq!(code("http://[::ffff:127.0.0.1]/"), "url_target_not_allowed");
        assert_eq!(code("http://localhost:8080/"), "url_target_not_allowed");
        let open = UrlPolicy {
            allow_private: true,
            ..policy()
        };
        assert!(open.check("http://10.0.0.1/").is_ok());
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(code(&long), "url_too_long");
    }

    #[test]
    fn aliases() {
        assert!(check_alias("docs").is_ok());
        assert!(check_alias("my_link-2025").is_ok());
        assert!(
            check_alias("abcdefghij-").is_ok(),
            "11 chars with a dash is fine"
        );
        assert_eq!(
            check_alias("ab").unwrap_err().code.as_str(),
            "invalid_alias"
        );
        assert_eq!(
            check_alias(&"a".repeat(65)).unwrap_err().code.as_str(),
            "invalid_alias"
        );
        assert_eq!(
            check_alias("a/b").unwrap_err().code.as_str(),
            "invalid_alias"
        );
        assert_eq!(
            check_alias("héllo").unwrap_err().code.as_str(),
            "invalid_alias"
        );
        assert_eq!(
            check_alias("abcdefghijk").unwrap_err().code.as_str(),
            "alias_reserved"
        );
        assert_eq!(
            check_alias("API").unwrap_err().code.as_str(),
            "alias_reserved"
        );
        // A command line would read these as flags.
        for flag in ["--help", "-abc", "--by"] {
            assert_eq!(
                check_alias(flag).unwrap_err().code.as_str(),
                "invalid_alias",
                "{flag}"
            );
        }
        assert!(check_alias("a-b").is_ok() && check_alias("ab-").is_ok());
    }

    proptest! {
        /// No alias that passes the checks can ever equal a generated code,
        /// whatever the key or id.
        #[test]
        fn valid_aliases_never_collide_with_generated_codes(
            alias in "[A-Za-z0-9_-]{3,64}",
            id in any::<u64>(),
            secret in any::<[u8; 8]>(),
        ) {
            let keyed = snowlink_id::CodeCodec::keyed(&secret).encode(id);
            let sequential = snowlink_id::CodeCodec::sequential().encode(id);
            if check_alias(&alias).is_ok() {
                prop_assert!(!snowlink_id::codec::is_generated_shape(&alias));
                prop_assert_ne!(&alias, &keyed);
                prop_assert_ne!(&alias, &sequential);
            }
            prop_assert!(check_alias(&keyed).is_err());
        }
    }
}
