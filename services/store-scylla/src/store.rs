//! [`ScyllaStore`]: the link store over a session.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use snowlink_store::{
    tags_to_column, ApiKey, DeleteOutcome, Link, LinkQuery, LinkStore, LinkUpdate, Scope,
    StoreError, StoreResult, UpdateOutcome,
};

use crate::config::{connect, ScyllaConfig};
use crate::error::{backend, ScyllaError};
use crate::rows::{key_from_row, link_from_row, ttl_secs, KeyRow, LinkRow};
use crate::statements::{applied, Statements};

/// Links and API keys in ScyllaDB (or Cassandra).
pub struct ScyllaStore {
    session: Session,
    st: Statements,
}

impl ScyllaStore {
    /// Connects and prepares every statement. The schema must exist: run
    /// [`migrate`] (`snowlink migrate`) first.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, ScyllaError> {
        let session = connect(config).await?;
        Self::with_session(session, &config.keyspace).await
    }

    pub async fn with_session(session: Session, keyspace: &str) -> Result<Self, ScyllaError> {
        let st = Statements::prepare(&session, keyspace).await?;
        Ok(Self { session, st })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs a statement and returns its first row, if any.
    async fn first_row<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<Option<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<R>()
            .map_err(backend)
    }

    /// Runs a lightweight transaction; true if it applied.
    async fn conditional(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<bool> {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(backend)?;
        applied(result).map_err(backend)
    }
}

#[async_trait]
impl LinkStore for ScyllaStore {
    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        // Generated codes are unique by construction, and still conditional:
        // a reissued id (clock stepped back, lost lease) must be refused, not
        // silently replace a live link.
        let ttl = ttl_secs(link.expires_at, now_ms());
        // The owner's index entry goes first: a listing shows an entry only
        // when the link row agrees with it, so an entry whose link write then
        // fails (or loses the code to another) is never seen.
        if let Some(owner) = &link.owner {
            self.session
                .execute_unpaged(
                    &self.st.insert_owner_entry,
                    (owner, link.id, &link.code, ttl),
                )
                .await
                .map_err(backend)?;
        }
        let values = (
            &link.code,
            link.id,
            link.kind.as_str(),
            &link.url,
            link.redirect as i16,
            link.created_at,
            link.expires_at,
            link.deleted_at,
            &link.owner,
            tags_to_column(&link.tags),
            link.public_stats,
            ttl,
        );
        if self
            .conditional(&self.st.insert_link_if_absent, values)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict(link.code.clone()))
        }
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        let row: Option<LinkRow> = self.first_row(&self.st.get_link, (code,)).await?;
        Ok(row.and_then(link_from_row))
    }

    async fn delete_link(&self, code: &str, at_ms: i64) -> StoreResult<DeleteOutcome> {
        // The conditional update must not create a row for an unknown code,
        // so existence is checked first.
        let Some(link) = self.get_link(code).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if link.deleted_at.is_some() {
            return Ok(DeleteOutcome::AlreadyDeleted);
        }
        let ttl = ttl_secs(link.expires_at, now_ms());
        Ok(
            if self
                .conditional(&self.st.delete_link, (ttl, at_ms, code))
                .await?
            {
                DeleteOutcome::Deleted
            } else {
                DeleteOutcome::AlreadyDeleted
            },
        )
    }

    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>> {
        let mut found = Vec::new();
        let mut before = query.before_id.unwrap_or(i64::MAX);
        while found.len() < query.limit {
            let want = ((query.limit - found.len()) * 2).clamp(16, 1000);
            let entries: Vec<(i64, String)> = self
                .session
                .execute_iter(
                    self.st.list_owner_entries.clone(),
                    (&query.owner, before, want as i32),
                )
                .await
                .map_err(backend)?
                .rows_stream::<(i64, String)>()
                .map_err(backend)?
                .try_collect()
                .await
                .map_err(backend)?;
            let Some(&(last, _)) = entries.last() else {
                break;
            };
            before = last;
            let exhausted = entries.len() < want;
            // The link rows, read concurrently, in the entries' order.
            let links: Vec<StoreResult<Option<Link>>> = futures::stream::iter(entries)
                .map(|(id, code)| async move {
                    let link = self.get_link(&code).await?;
                    Ok(link.filter(|l| l.id == id))
                })
                .buffered(32)
                .collect()
                .await;
            for link in links {
                let Some(link) = link? else { continue };
                if link.owner.as_deref() == Some(query.owner.as_str()) && query.matches(&link) {
                    found.push(link);
                    if found.len() == query.limit {
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(found)
    }

    async fn update_link(&self, code: &str, update: &LinkUpdate) -> StoreResult<UpdateOutcome> {
        // Optimistic: read, change, write back on the condition that the row
        // is the one read and not deleted; on a lost race, read again.
        for _ in 0..5 {
            let Some(mut link) = self.get_link(code).await? else {
                return Ok(UpdateOutcome::NotFound);
            };
            if link.deleted_at.is_some() {
                return Ok(UpdateOutcome::Deleted);
            }
            let created_at = link.created_at;
            let expiry_changed = update.expires_at.is_some_and(|e| e != link.expires_at);
            update.apply(&mut link);
            let ttl = ttl_secs(link.expires_at, now_ms());
            if expiry_changed {
                if let Some(owner) = &link.owner {
                    self.session
                        .execute_unpaged(
                            &self.st.insert_owner_entry,
                            (owner, link.id, &link.code, ttl),
                        )
                        .await
                        .map_err(backend)?;
                }
            }
            let values = (
                ttl,
                link.id,
                link.kind.as_str(),
                &link.url,
                link.redirect as i16,
                link.created_at,
                link.expires_at,
                &link.owner,
                tags_to_column(&link.tags),
                link.public_stats,
                code,
                created_at,
            );
            if self.conditional(&self.st.update_link, values).await? {
                return Ok(UpdateOutcome::Updated(link));
            }
        }
        Err(StoreError::Backend(
            format!("link {code:?} kept changing under the update").into(),
        ))
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        if !self
            .conditional(&self.st.claim_key_name, (&key.name, &key.hash))
            .await?
        {
            return Err(StoreError::KeyNameTaken(key.name.clone()));
        }
        self.session
            .execute_unpaged(
                &self.st.insert_key,
                (
                    &key.name,
                    &key.hash,
                    &key.prefix,
                    key.created_at,
                    key.revoked_at,
                    &key.owner,
                    Scope::to_column(&key.scopes),
                    key.rate_limit.map(|r| r.min(i32::MAX as u32) as i32),
                ),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row: Option<KeyRow> = self.first_row(&self.st.find_key, (hash,)).await?;
        Ok(row.and_then(key_from_row))
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = self
            .session
            .execute_iter(self.st.list_keys.clone(), ())
            .await
            .map_err(backend)?
            .rows_stream::<KeyRow>()
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let mut keys: Vec<ApiKey> = rows.into_iter().filter_map(key_from_row).collect();
        keys.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, name: &str, at_ms: i64) -> StoreResult<bool> {
        let hash: Option<(Option<String>,)> = self.first_row(&self.st.key_name, (name,)).await?;
        let Some((Some(hash),)) = hash else {
            return Ok(false);
        };
        if self.find_api_key(&hash).await?.is_none() {
            return Ok(false);
        }
        self.conditional(&self.st.revoke_key, (at_ms, &hash)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.session
            .execute_unpaged(&self.st.ping, ())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn id_reservation(&self, worker: u16) -> StoreResult<i64> {
        let row: Option<(Option<i64>,)> = self
            .first_row(&self.st.get_reservation, (i32::from(worker),))
            .await?;
        Ok(row.and_then(|(v,)| v).unwrap_or(0))
    }

    async fn reserve_ids(&self, worker: u16, until_ms: i64) -> StoreResult<()> {
        self.session
            .execute_unpaged(
                &self.st.reserve_ids,
                (until_ms.saturating_mul(1000), until_ms, i32::from(worker)),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
