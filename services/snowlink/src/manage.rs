//! One way to create, find, change and delete a link: the API routes, bulk
//! create and `snowlink import` all go through [`LinkService`], so a link
//! follows the same rules and meets the same outcomes whichever way it came.
//!
//! * Every field is checked before an id is drawn ([`NewLink::check`]).
//! * A generated code that is already taken is never overwritten: a new id
//!   is drawn, up to [`GENERATED_TRIES`] times, then the create answers
//!   `id_unavailable`. A taken generated code means two processes issue ids
//!   as the same worker, so each one is logged as an error.
//! * In a batch (bulk create, an import), an alias given twice goes to the
//!   first item that gives it ([`first_alias_wins`]).
//! * After a write, the link cache (when there is one) forgets what it held
//!   for the code, here and on every instance.

use std::sync::Arc;

use snowlink_id::CodeCodec;
use snowlink_store::{
    CodeKind, DeleteOutcome, Link, LinkQuery, LinkStore, LinkUpdate, StoreError, UpdateOutcome,
};

use crate::cache::LinkCache;
use crate::ids::{IdSource, IdUnavailable};
use crate::links::{
    check_alias, check_redirect, check_tags, is_code_syntax, parse_expiry, Rejection, UrlPolicy,
};

/// Ids drawn for one generated code before a create gives up.
pub const GENERATED_TRIES: usize = 3;

/// Why a link operation did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A field broke a rule.
    #[error("{}", .0.message)]
    Rejected(Rejection),
    /// An item of a batch is not a link at all.
    #[error("{0}")]
    Malformed(String),
    #[error("the alias {0:?} is already taken")]
    AliasTaken(String),
    #[error("no link {0:?}")]
    NotFound(String),
    #[error("the link {0:?} was deleted")]
    Deleted(String),
    #[error("no id can be issued: {0}")]
    IdUnavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<Rejection> for LinkError {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<IdUnavailable> for LinkError {
    fn from(e: IdUnavailable) -> Self {
        Self::IdUnavailable(e.to_string())
    }
}

/// Who acts on links: an owner, or an admin, who manages every owner's.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub owner: &'a str,
    pub admin: bool,
}

impl Actor<'_> {
    /// Whether the actor manages links of `owner`.
    pub fn manages(&self, owner: Option<&str>) -> bool {
        self.admin || owner == Some(self.owner)
    }
}

/// A link to create, as given (unchecked).
#[derive(Debug, Clone, Default)]
pub struct NewLink {
    pub url: String,
    pub alias: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub redirect: Option<u16>,
    pub tags: Vec<String>,
    pub public_stats: bool,
}

/// A link to create, checked: everything but its id and code.
#[derive(Debug, Clone)]
pub struct CheckedLink {
    pub url: String,
    pub alias: Option<String>,
    pub expires_at: Option<i64>,
    pub redirect: u16,
    pub tags: Vec<String>,
    pub public_stats: bool,
    pub created_at: i64,
}

impl NewLink {
    /// Checks every field against the rules, as of `now_ms`.
    pub fn check(self, policy: &UrlPolicy, now_ms: i64) -> Result<CheckedLink, Rejection> {
        let url = policy.check(&self.url)?;
        let tags = check_tags(&self.tags)?;
        let redirect = check_redirect(self.redirect)?;
        let expires_at = self
            .expires_at
            .as_deref()
            .map(|raw| parse_expiry(raw, now_ms))
            .transpose()?;
        if let Some(alias) = &self.alias {
            check_alias(alias)?;
        }
        Ok(CheckedLink {
            url,
            alias: self.alias,
            expires_at,
            redirect,
            tags,
            public_stats: self.public_stats,
            created_at: now_ms,
        })
    }
}

/// A change: absent fields stay; `expires_at: Some(None)` clears the expiry.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub url: Option<String>,
    pub expires_at: Option<Option<String>>,
    pub redirect: Option<u16>,
    pub tags: Option<Vec<String>>,
    pub public_stats: Option<bool>,
}

/// In input order, each item whose alias an earlier item already gave
/// becomes an [`LinkError::AliasTaken`]: the items of a batch are created
/// concurrently, so the order is settled before.
pub fn first_alias_wins<T>(
    items: Vec<Result<T, LinkError>>,
    alias: impl Fn(&T) -> Option<&str>,
) -> Vec<Result<T, LinkError>> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .map(|item| match item {
            Ok(t) => match alias(&t) {
                Some(a) if !seen.insert(a.to_owned()) => Err(LinkError::AliasTaken(a.to_owned())),
                _ => Ok(t),
            },
            e => e,
        })
        .collect()
}

/// Creates, finds, changes and deletes links.
#[derive(Clone)]
pub struct LinkService {
    store: Arc<dyn LinkStore>,
    ids: IdSource,
    codec: CodeCodec,
    policy: UrlPolicy,
    cache: Option<LinkCache>,
}

impl LinkService {
    /// `cache`, when given, learns of every write.
    pub fn new(
        store: Arc<dyn LinkStore>,
        ids: IdSource,
        codec: CodeCodec,
        policy: UrlPolicy,
        cache: Option<LinkCache>,
    ) -> Self {
        Self {
            store,
            ids,
            codec,
            policy,
            cache,
        }
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// Checks `new` and creates it for `owner`.
    pub async fn create(&self, owner: &str, new: NewLink) -> Result<Link, LinkError> {
        let checked = new.check(&self.policy, crate::now_ms())?;
        self.create_checked(owner, checked).await
    }

    /// Creates a checked link for `owner`: under its alias, or under a
    /// code made from a new id.
    pub async fn create_checked(&self, owner: &str, new: CheckedLink) -> Result<Link, LinkError> {
        for _ in 0..GENERATED_TRIES {
            let id = self.ids.next_id().await?;
            let (code, kind) = match &new.alias {
                Some(alias) => (alias.clone(), CodeKind::Alias),
                None => (self.codec.encode(id), CodeKind::Generated),
            };
            let link = Link {
                code,
                id: id as i64,
                kind,
                url: new.url.clone(),
                redirect: new.redirect,
                created_at: new.created_at,
                expires_at: new.expires_at,
                deleted_at: None,
                owner: Some(owner.to_owned()),
                tags: new.tags.clone(),
                public_stats: new.public_stats,
            };
            match self.store.create_link(&link).await {
                Ok(()) => {
                    if let Some(cache) = &self.cache {
                        // A negative entry may be cached, here or elsewhere,
                        // from before the link existed.
                        cache.created(&link).await;
                    }
                    tracing::info!(code = %link.code, "link created");
                    return Ok(link);
                }
                Err(StoreError::Conflict(code)) if kind == CodeKind::Alias => {
                    return Err(LinkError::AliasTaken(code));
                }
                Err(StoreError::Conflict(code)) => {
                    // Nothing was overwritten; a new id gets a new code.
                    tracing::error!(
                        %code,
                        worker_id = self.ids.worker_id(),
                        "a generated code is already taken: is this worker id used twice?"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LinkError::IdUnavailable(format!(
            "{GENERATED_TRIES} generated codes in a row were already taken: is worker id {} used twice?",
            self.ids.worker_id()
        )))
    }

    /// The link under `code` if the actor manages it: `NotFound` if it does
    /// not exist or belongs to another owner, `Deleted` if it was deleted.
    /// Read from the store, not the cache: management reads must be exact.
    pub async fn find(&self, actor: Actor<'_>, code: &str) -> Result<Link, LinkError> {
        let link = self.find_any_state(actor, code).await?;
        if link.deleted_at.is_some() {
            return Err(LinkError::Deleted(code.to_owned()));
        }
        Ok(link)
    }

    async fn find_any_state(&self, actor: Actor<'_>, code: &str) -> Result<Link, LinkError> {
        if !is_code_syntax(code) {
            return Err(LinkError::NotFound(code.to_owned()));
        }
        self.store
            .get_link(code)
            .await?
            .filter(|l| actor.manages(l.owner.as_deref()))
            .ok_or_else(|| LinkError::NotFound(code.to_owned()))
    }

    /// A page of links, as the query says.
    pub async fn list(&self, query: &LinkQuery) -> Result<Vec<Link>, LinkError> {
        Ok(self.store.list_links(query).await?)
    }

    /// Checks and applies a change to one of the actor's links.
    pub async fn change(
        &self,
        actor: Actor<'_>,
        code: &str,
        change: Change,
    ) -> Result<Link, LinkError> {
        let now = crate::now_ms();
        let update = LinkUpdate {
            url: change
                .url
                .as_deref()
                .map(|u| self.policy.check(u))
                .transpose()?,
            expires_at: change
                .expires_at
                .map(|e| e.as_deref().map(|raw| parse_expiry(raw, now)).transpose())
                .transpose()?,
            redirect: change
                .redirect
                .map(|r| check_redirect(Some(r)))
                .transpose()?,
            tags: change.tags.as_deref().map(check_tags).transpose()?,
            public_stats: change.public_stats,
        };
        // Ownership first: another owner's link is not there.
        self.find(actor, code).await?;
        let link = match self.store.update_link(code, &update).await? {
            UpdateOutcome::Updated(link) => link,
            UpdateOutcome::Deleted => return Err(LinkError::Deleted(code.to_owned())),
            UpdateOutcome::NotFound => return Err(LinkError::NotFound(code.to_owned())),
        };
        // Every instance stops serving the old target, as after a delete.
        if let Some(cache) = &self.cache {
            cache.changed(code, Some(&link)).await;
        }
        tracing::info!(%code, "link changed");
        Ok(link)
    }

    /// Deletes one of the actor's links: it answers 410 from then on, and
    /// its code is never reissued.
    pub async fn delete(&self, actor: Actor<'_>, code: &str) -> Result<(), LinkError> {
        self.find_any_state(actor, code).await?;
        let outcome = self.store.delete_link(code, crate::now_ms()).await?;
        if outcome != DeleteOutcome::NotFound {
            if let Some(cache) = &self.cache {
                // Every instance must stop redirecting: record the
                // tombstone in the shared cache and tell the others.
                let tombstone = self.store.get_link(code).await.ok().flatten();
                cache.changed(code, tombstone.as_ref()).await;
            }
        }
        match outcome {
            DeleteOutcome::Deleted => {
                tracing::info!(%code, "link deleted");
                Ok(())
            }
            DeleteOutcome::AlreadyDeleted => Err(LinkError::Deleted(code.to_owned())),
            DeleteOutcome::NotFound => Err(LinkError::NotFound(code.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_item_with_an_alias_gets_it() {
        let items: Vec<Result<Option<&str>, LinkError>> = vec![
            Ok(Some("a")),
            Ok(None),
            Err(LinkError::NotFound("x".into())),
            Ok(Some("a")),
            Ok(Some("b")),
            Ok(None),
        ];
        let out = first_alias_wins(items, |a| *a);
        let kinds: Vec<&str> = out
            .iter()
            .map(|r| match r {
                Ok(_) => "ok",
                Err(LinkError::AliasTaken(_)) => "taken",
                Err(_) => "other",
            })
            .collect();
        assert_eq!(kinds, ["ok", "ok", "other", "taken", "ok", "ok"]);
    }
}
