//! `snowlink import FILE.csv`: loads links from another shortener's export
//! through the store, with the rules of the API.
//!
//! The file has a header naming its columns: `url` (required), `alias`,
//! `tags` (separated by `,`, `;` or spaces) and `expires_at` (RFC 3339);
//! other columns are ignored. A rerun creates nothing twice: a row whose
//! alias already holds the same URL for the same owner, or (without an
//! alias) whose URL the owner already has, is counted as already there.
//!
//! Generated codes are issued as their own Snowflake worker (1023 unless
//! `--worker-id` says otherwise), behind the same persisted id fence as the
//! service, so an import never reissues a service's id.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use snowlink_id::{CodeCodec, Generator, GeneratorConfig};
use snowlink_store::{CodeKind, Link, LinkQuery, LinkStore, StateFilter, StoreError};

use crate::configuration::Settings;
use crate::links::{check_alias, check_redirect, check_tags, parse_expiry, UrlPolicy};

/// The worker id imports issue ids as, unless one is given.
pub const IMPORT_WORKER_ID: u64 = 1023;
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

/// What earlier rows (and, for URLs, the owner's links) already hold.
struct Claimed {
    urls: HashSet<String>,
    aliases: HashSet<String>,
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
    let worker = settings.ids.worker_id.unwrap_or(IMPORT_WORKER_ID);
    let generator = Arc::new(Generator::new(
        GeneratorConfig::new(worker)?
            .with_epoch_ms(settings.ids.epoch.timestamp_millis() as u64)
            .with_max_clock_wait(Duration::from_millis(settings.ids.max_clock_wait_ms)),
    ));
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let fence = crate::ids::IdFence::open(&settings.data_dir, generator.clone(), store.clone())
        .await
        .context("reserving ids")?;
    let renewing = fence.spawn();
    let policy = settings.url_policy()?;
    let known = Mutex::new(Claimed {
        urls: owner_urls(&*store, owner).await?,
        aliases: HashSet::new(),
    });
    let progress = indicatif::ProgressBar::new(rows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    let outcomes: Vec<Outcome> = futures::stream::iter(rows)
        .map(|row| {
            let (store, generator, codec, policy, known, progress) =
                (&store, &generator, &codec, &policy, &known, &progress);
            async move {
                let outcome =
                    import_row(row, owner, &**store, generator, codec, policy, known).await;
                progress.inc(1);
                outcome
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    progress.finish_and_clear();
    renewing.abort();
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

async fn import_row(
    row: Row,
    owner: &str,
    store: &dyn LinkStore,
    generator: &Generator,
    codec: &CodeCodec,
    policy: &UrlPolicy,
    known: &Mutex<Claimed>,
) -> Outcome {
    let line = row.line;
    let fail = |why: String| Outcome::Failed(line, why);
    let now = crate::now_ms();
    let url = match policy.check(&row.url) {
        Ok(url) => url,
        Err(r) => return fail(r.message),
    };
    let checked = check_tags(&row.tags)
        .and_then(|tags| check_redirect(None).map(|redirect| (tags, redirect)))
        .and_then(|(tags, redirect)| {
            row.expires_at
                .as_deref()
                .map(|raw| parse_expiry(raw, now))
                .transpose()
                .map(|expires_at| (tags, redirect, expires_at))
        })
        .and_then(|t| match &row.alias {
            Some(alias) => check_alias(alias).map(|()| t),
            None => Ok(t),
        });
    let (tags, redirect, expires_at) = match checked {
        Ok(t) => t,
        Err(r) => return fail(r.message),
    };
    {
        // Claimed before the first await, so rows are claimed in file order:
        // a later row with the same alias fails, one with the same URL (and
        // no alias) is already there.
        let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
        match &row.alias {
            Some(alias) if !known.aliases.insert(alias.clone()) => {
                return fail(format!("the alias {alias:?} appears earlier in the file"));
            }
            Some(_) => {}
            None if !known.urls.insert(url.clone()) => return Outcome::AlreadyThere,
            None => {}
        }
    }
    // A generated code that is taken (another writer on this worker id) is
    // never overwritten: a new id is drawn.
    for _ in 0..3 {
        let id = match generator.next_id_async().await {
            Ok(id) => id,
            Err(e) => return fail(format!("no id available: {e}")),
        };
        let (code, kind) = match &row.alias {
            Some(alias) => (alias.clone(), CodeKind::Alias),
            None => (codec.encode(id), CodeKind::Generated),
        };
        let link = Link {
            code: code.clone(),
            id: id as i64,
            kind,
            url: url.clone(),
            redirect,
            created_at: now,
            expires_at,
            deleted_at: None,
            owner: Some(owner.to_owned()),
            tags: tags.clone(),
            public_stats: false,
        };
        match store.create_link(&link).await {
            Ok(()) => return Outcome::Created,
            Err(StoreError::Conflict(_)) if kind == CodeKind::Alias => {
                return match store.get_link(&code).await {
                    Ok(Some(existing))
                        if existing.url == url
                            && existing.owner.as_deref() == Some(owner)
                            && existing.deleted_at.is_none() =>
                    {
                        Outcome::AlreadyThere
                    }
                    Ok(_) => fail(format!("the alias {code:?} is already taken")),
                    Err(e) => fail(e.to_string()),
                };
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return fail(e.to_string()),
        }
    }
    fail("no free code after three tries: is this worker id used by a running service?".into())
}
