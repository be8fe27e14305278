//! Plain data carried in and out of a [`crate::LinkStore`].
//!
//! [`Link`] has one serialised form (serde; the shared cache's entries) and
//! one column list ([`LINK_COLUMNS`]) that every backend's table uses.

use serde::{Deserialize, Serialize};

/// The columns of a link, in the order every backend reads and writes them.
pub const LINK_COLUMNS: &str =
    "code, id, kind, url, redirect, created_at, expires_at, deleted_at, owner";

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
    /// Name of the API key that created it.
    pub owner: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyDeleted,
    NotFound,
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
