//! Durable creates per second at the store, SQLite against the ScyllaDB
//! backend on a CQL engine, in one run: `concurrency` tasks each creating
//! links through `LinkStore::create_link` (what `POST /api/v1/links` does
//! after validation). On the CQL engine, also a plain `INSERT` of the same
//! rows, to show what the `IF NOT EXISTS` that every create pays costs.
//!
//! The CQL engine is the Apache Cassandra node the test kit starts (one
//! node, commit log synced in groups of 5 ms before acknowledging), or the ScyllaDB cluster in
//! SCYLLA_NODES.
//!
//!   cargo run --release -p snowlink-benches --bin store-creates -- [CREATES] [CONCURRENCY]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use snowlink_id::CodeCodec;
use snowlink_store::{CodeKind, Link, LinkStore, SqliteStore};
use snowlink_store_scylla::{connect, migrate, ScyllaConfig, ScyllaStore};

/// The codec of the bench's codes, a keyed one as in production.
static CODEC: std::sync::LazyLock<CodeCodec> =
    std::sync::LazyLock::new(|| CodeCodec::keyed(b"store-creates bench"));

/// The `i`-th link of run `run`: its own id, and the code that id encodes to.
fn link(i: u64, run: u64) -> Link {
    let id = (run << 24) | i;
    Link {
        code: CODEC.encode(id),
        id: id as i64,
        kind: CodeKind::Generated,
        url: format!("https://example.com/some/path/{i}"),
        redirect: 302,
        created_at: 1_795_132_800_000,
        expires_at: None,
        deleted_at: None,
        owner: Some("bench".into()),
        tags: vec![],
        public_stats: false,
    }
}

/// Writes per second with `concurrency` tasks sharing `n` writes; `write`
/// writes the `i`-th row.
async fn measure_writes<F, Fut>(n: u64, concurrency: usize, write: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let write = write.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    write(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Creates per second through `LinkStore::create_link`.
async fn measure(store: Arc<dyn LinkStore>, n: u64, concurrency: usize) -> anyhow::Result<f64> {
    let run = rand::random::<u32>() as u64 >> 1;
    measure_writes(n, concurrency, move |i| {
        let store = store.clone();
        async move { Ok(store.create_link(&link(i, run)).await?) }
    })
    .await
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let (nodes, engine, _node) = match std::env::var("SCYLLA_NODES") {
        Ok(nodes) => (
            nodes.split(',').map(str::to_owned).collect::<Vec<_>>(),
            "ScyllaDB (SCYLLA_NODES)",
            None,
        ),
        Err(_) => {
            let Some(node) = snowlink_testkit::Server::cassandra("store-creates") else {
                anyhow::bail!("Apache Cassandra is not fetched: run scripts/engines fetch");
            };
            (
                vec![node.cql_node()],
                "Apache Cassandra 5.0.6, one node",
                Some(node),
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        // Opened as the service opens it: generated links found by id.
        let scheme = snowlink::startup::code_scheme(CODEC.clone());
        let sqlite: Arc<dyn LinkStore> = Arc::new(SqliteStore::open_with_scheme(
            dir.path().join("links.db"),
            scheme,
        )?);
        // Warm-up, then the measured runs.
        measure(sqlite.clone(), n / 10, concurrency).await?;
        let sqlite_rate = measure(sqlite, n, concurrency).await?;

        let mut config = ScyllaConfig::new(nodes);
        config.keyspace = snowlink_testkit::unique_keyspace("bench_creates");
        let session = connect(&config).await?;
        migrate(&session, &config).await?;
        let store = Arc::new(ScyllaStore::with_session(session, &config.keyspace).await?);
        measure(store.clone(), n / 10, concurrency).await?;
        let cql_rate = measure(store.clone(), n, concurrency).await?;

        // The same rows with a plain INSERT, which could overwrite a link.
        let plain = store
            .session()
            .prepare(format!(
                "INSERT INTO {}.links (code, id, kind, url, redirect, created_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                config.keyspace
            ))
            .await?;
        let plain = Arc::new(plain);
        let run = rand::random::<u32>() as u64 >> 1;
        let plain_rate = measure_writes(n, concurrency, move |i| {
            let (store, plain) = (store.clone(), plain.clone());
            async move {
                let l = link(i, run);
                store
                    .session()
                    .execute_unpaged(
                        &plain,
                        (&l.code, l.id, "generated", &l.url, 302i16, l.created_at, &l.owner),
                    )
                    .await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "{}",
            serde_json::json!({
                "bench": "store_creates",
                "engine": engine,
                "creates": n,
                "concurrency": concurrency,
                "sqlite_per_sec": sqlite_rate,
                "cql_per_sec": cql_rate,
                "cql_plain_insert_per_sec": plain_rate,
            })
        );
        Ok(())
    })
}
