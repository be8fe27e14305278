//! How links and keys are laid out in rows, and how long a row lives.

use snowlink_store::{tags_from_column, ApiKey, CodeKind, Link, Scope};

/// How long an expired link keeps answering 410 Gone before its row expires.
pub const EXPIRED_GRACE_SECS: i64 = 30 * 86_400;
/// The largest TTL CQL accepts (20 years).
pub const MAX_TTL_SECS: i64 = 630_720_000;
/// The last second a TTL may end at on every engine we run on: Cassandra
/// (before `storage_compatibility_mode: NONE`) stores expiry as a 32-bit
/// count of seconds and rejects writes whose TTL ends after 2038-01-19.
pub const TTL_HORIZON_SECS: i64 = i32::MAX as i64;

/// The TTL, in seconds, to write a link with: its remaining life plus the
/// grace period, or 0 (no TTL: the row is kept) when the link never expires
/// or when that TTL would end past [`TTL_HORIZON_SECS`] or exceed
/// [`MAX_TTL_SECS`]. Such a row is never dropped by the database; it answers
/// 410 Gone after `expires_at` like any other, and its code stays taken.
/// Clamping instead would drop a live link before it expires.
pub fn ttl_secs(expires_at: Option<i64>, now_ms: i64) -> i32 {
    let Some(at) = expires_at else {
        return 0;
    };
    let remaining = (at.saturating_sub(now_ms)).max(0).div_euclid(1000) + 1;
    let ttl = remaining.saturating_add(EXPIRED_GRACE_SECS);
    let ends = now_ms.div_euclid(1000).saturating_add(ttl);
    if ttl > MAX_TTL_SECS || ends > TTL_HORIZON_SECS {
        0
    } else {
        ttl as i32
    }
}

/// The columns of `links` and `api_keys`: the store's lists, whose names
/// the rows below are read by.
pub(crate) use snowlink_store::{KEY_COLUMNS, LINK_COLUMNS};

/// A row of `links`; every column but the key may be missing.
#[derive(Debug, Clone, scylla::DeserializeRow)]
pub(crate) struct LinkRow {
    pub code: String,
    pub id: Option<i64>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub redirect: Option<i16>,
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub owner: Option<String>,
    pub tags: Option<String>,
    pub public_stats: Option<bool>,
}

/// A row of `api_keys`.
#[derive(Debug, Clone, scylla::DeserializeRow)]
pub(crate) struct KeyRow {
    pub name: Option<String>,
    pub hash: String,
    pub prefix: Option<String>,
    pub created_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub owner: Option<String>,
    pub scopes: Option<String>,
    pub rate_limit: Option<i32>,
}

pub(crate) fn link_from_row(row: LinkRow) -> Option<Link> {
    Some(Link {
        code: row.code,
        id: row.id?,
        kind: CodeKind::parse(row.kind.as_deref()?)?,
        url: row.url?,
        redirect: u16::try_from(row.redirect?).ok()?,
        created_at: row.created_at?,
        expires_at: row.expires_at,
        deleted_at: row.deleted_at,
        owner: row.owner,
        tags: tags_from_column(row.tags.as_deref()),
        public_stats: row.public_stats.unwrap_or(false),
    })
}

pub(crate) fn key_from_row(row: KeyRow) -> Option<ApiKey> {
    let name = row.name?;
    Some(ApiKey {
        owner: row.owner.unwrap_or_else(|| name.clone()),
        name,
        hash: row.hash,
        prefix: row.prefix.unwrap_or_default(),
        created_at: row.created_at?,
        revoked_at: row.revoked_at,
        scopes: Scope::from_column(row.scopes.as_deref()),
        rate_limit: row.rate_limit.and_then(|r| u32::try_from(r).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(ttl_secs(None, 0), 0);
        let now = 1_000_000;
        assert_eq!(
            ttl_secs(Some(now + 60_000), now),
            (61 + EXPIRED_GRACE_SECS) as i32
        );
        // Already expired: still kept for the grace period.
        assert_eq!(
            ttl_secs(Some(now - 5_000), now),
            (1 + EXPIRED_GRACE_SECS) as i32
        );
        // Past CQL's 20-year maximum or Cassandra's 2038 limit: no TTL.
        assert_eq!(ttl_secs(Some(i64::MAX / 2), 0), 0);
        let nov_2026 = 1_795_000_000_000;
        let in_2040 = 2_208_988_800_000;
        assert_eq!(ttl_secs(Some(in_2040), nov_2026), 0);
        let in_2030 = 1_893_456_000_000;
        let ttl = ttl_secs(Some(in_2030), nov_2026);
        assert!(ttl > 0 && (nov_2026 / 1000 + ttl as i64) < TTL_HORIZON_SECS);
    }

    #[test]
    fn rows_missing_required_columns_are_not_links() {
        let full = LinkRow {
            code: "abc".into(),
            id: Some(1),
            kind: Some("alias".into()),
            url: Some("https://example.com".into()),
            redirect: Some(302),
            created_at: Some(5),
            expires_at: None,
            deleted_at: None,
            owner: None,
            tags: Some("a,b".into()),
            public_stats: None,
        };
        assert_eq!(link_from_row(full.clone()).unwrap().tags, ["a", "b"]);
        let mut partial = full;
        partial.url = None;
        assert!(link_from_row(partial).is_none());
    }
}
