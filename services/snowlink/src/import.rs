//! `snowlink import FILE.csv`: loads links from another shortener's export
//! through the store, with the rules of the API.
//!
//! The file has a header naming its columns: `url` (required), `alias`,
//! `tags` (separated by `,`, `;` or spaces) and `expires_at` (RFC 3339);
//! other columns are ignored. A rerun creates nothing twice: a row whose
//! alias already holds the same URL for the same owner, or (without an
//! alias) whose URL the owner already has, is counted as already there.
//!
//! Links are created through the same link service as the API's
//! ([`crate::manage`]), with ids issued as the service issues them: the
//! worker id given, else one leased from Redis, else one no other process
//! on the data directory holds, behind the same persisted id fence. So an
//! import running beside the service never reissues one of its ids.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use snowlink_id::CodeCodec;
use snowlink_store::{LinkQuery, LinkStore, StateFilter};

use crate::components::Components;
use crate::configuration::Settings;
use crate::ids::IdSource;
use crate::manage::{first_alias_wins, CheckedLink, LinkError, LinkService, NewLink};
use crate::shared_cache::SharedCache;

/// Creates in flight at once: enough to fill the store's group commits.
const CONCURRENCY: usize = 64;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub created: u64,
    pub already_there: u64,
    /// `(line, why)` of each row refused.
    pub failed: Vec<(u64, String)>,
}

struct Row {
    line: u64,
    url: String,
    alias: Option<String>,
    tags: Vec<String>,
    expires_at: Option<String>,
}

enum Outcome {
    Created,
    AlreadyThere,
    Failed(u64, String),
}

/// A row checked, in file order, against the rows before it and the
/// owner's links: to create, or already settled.
enum Prepared {
    Create(u64, CheckedLink),
    Settled(Outcome),
}

/// Imports `path` for `owner` into the store the settings select.
pub async fn import(
    path: &Path,
    owner: &str,
    store: Arc<dyn LinkStore>,
    settings: &Settings,
    codec: CodeCodec,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let rows = read_rows(path)?;
    let policy = settings.url_policy()?;
    let prepared = prepare(rows, &policy, owner_urls(&*store, owner).await?);
    let shared = match settings.redis.client()? {
        Some(client) => Some(SharedCache::new(
            client,
            settings.cache.ttl(),
            settings.cache.negative_ttl(),
        )?),
        None => None,
    };
    let parts = Components::default();
    let ids = IdSource::start(settings, store.clone(), shared.as_ref(), &|part| {
        parts.push(part)
    })
    .await;
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => {
            parts.shutdown().await;
            return Err(e.context("issuing ids"));
        }
    };
    tracing::info!(worker_id = ids.worker_id(), "importing");
    let links = LinkService::new(store.clone(), ids, codec, policy, None);
    let progress = indicatif::ProgressBar::new(prepared.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    let outcomes: Vec<Outcome> = futures::stream::iter(prepared)
        .map(|row| {
            let (links, store, progress) = (&links, &store, &progress);
            async move {
                let outcome = match row {
                    Prepared::Create(line, link) => {
                        create(links, &**store, owner, line, link).await
                    }
                    Prepared::Settled(outcome) => outcome,
                };
                progress.inc(1);
                outcome
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    progress.finish_and_clear();
    parts.shutdown().await;
    let mut report = ImportReport::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Created => report.created += 1,
            Outcome::AlreadyThere => report.already_there += 1,
            Outcome::Failed(line, why) => report.failed.push((line, why)),
        }
    }
    report.failed.sort();
    tracing::info!(
        created = report.created,
        already_there = report.already_there,
        failed = report.failed.len(),
        secs = started.elapsed().as_secs_f64(),
        "import finished"
    );
    Ok(report)
}

/// Checks every row, in file order: a row that breaks a rule fails; a
/// later row with an alias an earlier row gave fails; a row without an
/// alias whose URL an earlier row or one of the owner's links has is
/// already there.
fn prepare(
    rows: Vec<Row>,
    policy: &crate::links::UrlPolicy,
    mut urls: HashSet<String>,
) -> Vec<Prepared> {
    let now = crate::now_ms();
    let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
    let checked: Vec<Result<CheckedLink, LinkError>> = rows
        .into_iter()
        .map(|row| {
            NewLink {
                url: row.url,
                alias: row.alias,
                expires_at: row.expires_at,
                redirect: None,
                tags: row.tags,
                public_stats: false,
            }
            .check(policy, now)
            .map_err(LinkError::from)
        })
        .collect();
    first_alias_wins(checked, |link: &CheckedLink| link.alias.as_deref())
        .into_iter()
        .zip(lines)
        .map(|(row, line)| match row {
            Ok(link) => {
                if link.alias.is_none() && !urls.insert(link.url.clone()) {
                    Prepared::Settled(Outcome::AlreadyThere)
                } else {
                    Prepared::Create(line, link)
                }
            }
            Err(LinkError::AliasTaken(alias)) => Prepared::Settled(Outcome::Failed(
                line,
                format!("the alias {alias:?} appears earlier in the file"),
            )),
            Err(e) => Prepared::Settled(Outcome::Failed(line, e.to_string())),
        })
        .collect()
}

/// Creates one row's link. A rerun creates nothing twice: an alias that
/// already holds the same URL for the same owner is already there.
async fn create(
    links: &LinkService,
    store: &dyn LinkStore,
    owner: &str,
    line: u64,
    link: CheckedLink,
) -> Outcome {
    let url = link.url.clone();
    match links.create_checked(owner, link).await {
        Ok(_) => Outcome::Created,
        Err(LinkError::AliasTaken(code)) => match store.get_link(&code).await {
            Ok(Some(existing))
                if existing.url == url
                    && existing.owner.as_deref() == Some(owner)
                    && existing.deleted_at.is_none() =>
            {
                Outcome::AlreadyThere
            }
            Ok(_) => Outcome::Failed(line, format!("the alias {code:?} is already taken")),
            Err(e) => Outcome::Failed(line, e.to_string()),
        },
        Err(e) => Outcome::Failed(line, e.to_string()),
    }
}

/// The URLs the owner's links already point at (any state but deleted).
async fn owner_urls(store: &dyn LinkStore, owner: &str) -> anyhow::Result<HashSet<String>> {
    let mut urls = HashSet::new();
    let mut query = LinkQuery {
        owner: owner.to_owned(),
        before_id: None,
        limit: 1000,
        q: None,
        tag: None,
        state: StateFilter::All,
        now_ms: crate::now_ms(),
    };
    loop {
        let page = store.list_links(&query).await?;
        let Some(last) = page.last() else { break };
        query.before_id = Some(last.id);
        urls.extend(
            page.into_iter()
                .filter(|l| l.deleted_at.is_none())
                .map(|l| l.url),
        );
    }
    Ok(urls)
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let url = column("url").with_context(|| {
        format!(
            "{} has no url column (its header is: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        )
    })?;
    let (alias, tags, expires_at) = (column("alias"), column("tags"), column("expires_at"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        let get = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        rows.push(Row {
            line,
            url: get(Some(url)).unwrap_or_default(),
            alias: get(alias),
            tags: get(tags)
                .map(|t| {
                    t.split([',', ';', ' '])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            expires_at: get(expires_at),
        });
    }
    Ok(rows)
}
