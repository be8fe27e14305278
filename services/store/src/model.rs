//! Plain data carried in and out of a [`crate::LinkStore`].
//!
//! [`Link`] has one serialised form (serde; the shared cache's entries) and
//! one column list ([`LINK_COLUMNS`]) that every backend's table uses; API
//! keys have theirs ([`KEY_COLUMNS`]).

use serde::{Deserialize, Serialize};

/// The columns of a link, in the order every backend reads and writes them.
pub const LINK_COLUMNS: &str =
    "code, id, kind, url, redirect, created_at, expires_at, deleted_at, owner, tags, public_stats";

/// The columns of an API key, in the order every backend reads and writes
/// them.
pub const KEY_COLUMNS: &str =
    "name, hash, prefix, created_at, revoked_at, owner, scopes, rate_limit";

/// How a code came to be. Generated codes come from the id generator and are
/// unique by construction; aliases are chosen by users and may collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    Generated,
    Alias,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Generated => "generated",
            CodeKind::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generated" => Some(CodeKind::Generated),
            "alias" => Some(CodeKind::Alias),
            _ => None,
        }
    }
}

/// A short link. Timestamps are milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub code: String,
    /// The Snowflake id minted for this link, aliases included.
    pub id: i64,
    pub kind: CodeKind,
    pub url: String,
    /// HTTP status of the redirect: 301, 302, 307 or 308.
    pub redirect: u16,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// The owner of the key that created it; keys of the same owner manage
    /// the same links.
    pub owner: Option<String>,
    /// Labels to group and find links by, each `[a-z0-9_-]{1,32}`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether anyone may see its statistics page, `/{code}+`.
    #[serde(default)]
    pub public_stats: bool,
}

impl Link {
    /// Whether the link should still redirect at `now_ms`.
    pub fn state_at(&self, now_ms: i64) -> LinkState {
        if self.deleted_at.is_some() {
            LinkState::Deleted
        } else if self.expires_at.is_some_and(|e| e <= now_ms) {
            LinkState::Expired
        } else {
            LinkState::Active
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Active,
    Expired,
    Deleted,
}

/// Which links a listing returns, by state at the listing's `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    #[default]
    Active,
    Expired,
    Deleted,
    All,
}

impl StateFilter {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "expired" => Self::Expired,
            "deleted" => Self::Deleted,
            "all" => Self::All,
            _ => return None,
        })
    }

    pub fn admits(self, state: LinkState) -> bool {
        match self {
            Self::All => true,
            Self::Active => state == LinkState::Active,
            Self::Expired => state == LinkState::Expired,
            Self::Deleted => state == LinkState::Deleted,
        }
    }
}

/// One page of an owner's links, newest (highest id) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkQuery {
    pub owner: String,
    /// Only links with a smaller id: the last id of the previous page.
    pub before_id: Option<i64>,
    pub limit: usize,
    /// A substring of the code or the URL, compared case-insensitively.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub state: StateFilter,
    /// The time states are judged at.
    pub now_ms: i64,
}

impl LinkQuery {
    /// Whether `link` belongs in the answer (owner and id aside).
    pub fn matches(&self, link: &Link) -> bool {
        self.state.admits(link.state_at(self.now_ms))
            && self.tag.as_ref().is_none_or(|t| link.tags.contains(t))
            && self.q.as_ref().is_none_or(|q| {
                let q = q.to_lowercase();
                link.code.to_lowercase().contains(&q) || link.url.to_lowercase().contains(&q)
            })
    }
}

/// A change to a link; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkUpdate {
    pub url: Option<String>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<i64>>,
    pub redirect: Option<u16>,
    pub tags: Option<Vec<String>>,
    pub public_stats: Option<bool>,
}

impl LinkUpdate {
    pub fn apply(&self, link: &mut Link) {
        if let Some(url) = &self.url {
            link.url = url.clone();
        }
        if let Some(expires_at) = self.expires_at {
            link.expires_at = expires_at;
        }
        if let Some(redirect) = self.redirect {
            link.redirect = redirect;
        }
        if let Some(tags) = &self.tags {
            link.tags = tags.clone();
        }
        if let Some(public_stats) = self.public_stats {
            link.public_stats = public_stats;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated(Link),
    Deleted,
    NotFound,
}

/// Tags as one column: comma-separated (tags never hold a comma).
pub fn tags_to_column(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| tags.join(","))
}

pub fn tags_from_column(column: Option<&str>) -> Vec<String> {
    column
        .map(|c| {
            c.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyDeleted,
    NotFound,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    LinksRead,
    LinksWrite,
    StatsRead,
    /// Every owner's links.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::LinksRead,
        Scope::LinksWrite,
        Scope::StatsRead,
        Scope::Admin,
    ];
    /// What a key gets unless told otherwise, and what keys from before
    /// scopes existed have.
    pub const DEFAULT: [Scope; 3] = [Scope::LinksRead, Scope::LinksWrite, Scope::StatsRead];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LinksRead => "links:read",
            Scope::LinksWrite => "links:write",
            Scope::StatsRead => "stats:read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Scopes as one column: comma-separated; empty or missing means the
    /// default ones.
    pub fn to_column(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn from_column(column: Option<&str>) -> Vec<Scope> {
        let parsed: Vec<Scope> = column
            .unwrap_or_default()
            .split(',')
            .filter_map(|s| Scope::parse(s.trim()))
            .collect();
        if parsed.is_empty() {
            Self::DEFAULT.to_vec()
        } else {
            parsed
        }
    }
}

/// An API key as stored: only its SHA-256 hash, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    /// Lowercase hex SHA-256 of the full key.
    pub hash: String,
    /// The first characters of the key, enough to recognise it in a list.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Whose links the key manages; keys from before owners existed are
    /// their own owner (their name).
    pub owner: String,
    pub scopes: Vec<Scope>,
    /// Requests per minute; `None` uses the service's default.
    pub rate_limit: Option<u32>,
}

impl ApiKey {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serialised_kind_is_the_stored_one() {
        for kind in [CodeKind::Generated, CodeKind::Alias] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(CodeKind::parse(kind.as_str()), Some(kind));
        }
    }
}
