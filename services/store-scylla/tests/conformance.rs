//! The store conformance suite against a real ScyllaDB (or Cassandra)
//! cluster. Set `SCYLLA_NODES=host:port[,host:port...]` to run it; without
//! it the test says that it skipped and why, and passes.

use std::io::Write;
use std::sync::Arc;

use snowlink_store_scylla::{connect, migrate, ScyllaConfig, ScyllaStore, MIGRATIONS};

fn nodes() -> Option<Vec<String>> {
    let nodes = std::env::var("SCYLLA_NODES").ok()?;
    let nodes: Vec<String> = nodes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

fn say(msg: &str) {
    // Written to the process's stderr directly, so it shows even though the
    // test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store_passes_the_conformance_suite() {
    let Some(nodes) = nodes() else {
        say(
            "SKIPPED scylla_store_passes_the_conformance_suite: SCYLLA_NODES is not set \
             (no ScyllaDB node to run against; set SCYLLA_NODES=host:9042 to run it)",
        );
        return;
    };
    let mut config = ScyllaConfig::new(nodes);
    config.keyspace =
        std::env::var("SCYLLA_KEYSPACE").unwrap_or_else(|_| "snowlink_conformance".into());
    let session = connect(&config).await.expect("connect to SCYLLA_NODES");

    let first = migrate(&session, &config).await.expect("migrate");
    assert_eq!(
        first.applied.len() + first.already_applied.len(),
        MIGRATIONS.len()
    );
    let again = migrate(&session, &config).await.expect("migrate again");
    assert!(again.applied.is_empty(), "a second migrate applies nothing");
    assert_eq!(again.already_applied.len(), MIGRATIONS.len());

    let store = ScyllaStore::with_session(session, &config.keyspace)
        .await
        .expect("prepare statements");
    snowlink_store::conformance::run_all(Arc::new(store)).await;
    say("scylla conformance suite: passed");
}
