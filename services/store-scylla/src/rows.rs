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

/// The columns of `links` (the store's one list), in the order of [`LinkRow`].
pub(crate) use snowlink_store::LINK_COLUMNS;

pub(crate) type LinkRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

/// The columns of `api_keys`, in the order of [`KeyRow`].
pub(crate) const KEY_COLUMNS: &str =
    "hash, name, prefix, created_at, revoked_at, owner, scopes, rate_limit";

pub(crate) type KeyRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
);

pub(crate) fn link_from_row(row: LinkRow) -> Option<Link> {
    let (
        code,
        id,
        kind,
        url,
        redirect,
        created_at,
        expires_at,
        deleted_at,
        owner,
        tags,
        public_stats,
    ) = row;
    Some(Link {
        code,
        id: id?,
        kind: CodeKind::parse(kind.as_deref()?)?,
        url: url?,
        redirect: u16::try_from(redirect?).ok()?,
        created_at: created_at?,
        expires_at,
        deleted_at,
        owner,
        tags: tags_from_column(tags.as_deref()),
        public_stats: public_stats.unwrap_or(false),
    })
}

pub(crate) fn key_from_row(row: KeyRow) -> Option<ApiKey> {
    let (hash, name, prefix, created_at, revoked_at, owner, scopes, rate_limit) = row;
    let name = name?;
    Some(ApiKey {
        owner: owner.unwrap_or_else(|| name.clone()),
        name,
        hash,
        prefix: prefix.unwrap_or_default(),
        created_at: created_at?,
        revoked_at,
        scopes: Scope::from_column(scopes.as_deref()),
        rate_limit: rate_limit.and_then(|r| u32::try_from(r).ok()),
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
        let full: LinkRow = (
            "abc".into(),
            Some(1),
            Some("alias".into()),
            Some("https://example.com".into()),
            Some(302),
            Some(5),
            None,
            None,
            None,
            Some("a,b".into()),
            None,
        );
        assert_eq!(link_from_row(full.clone()).unwrap().tags, ["a", "b"]);
        let mut partial = full;
        partial.3 = None;
        assert!(link_from_row(partial).is_none());
    }
}
