//! The store conformance suite and the migrations against a real CQL engine.
//!
//! With `SCYLLA_NODES=host:port[,host:port...]` it runs against that ScyllaDB
//! cluster; otherwise against the Apache Cassandra node the test kit starts
//! for this test binary (same CQL protocol, same driver). Each test works in
//! a keyspace of its own. Which engine answered is printed.

use std::sync::Arc;

use snowlink_store_scylla::{connect, migrate, ScyllaConfig, ScyllaStore, MIGRATIONS};
use snowlink_testkit::{say, shared_cassandra, unique_keyspace};

/// The nodes to test against and the engine's name.
fn engine(test: &str) -> Option<(Vec<String>, &'static str)> {
    if let Ok(nodes) = std::env::var("SCYLLA_NODES") {
        let nodes: Vec<String> = nodes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !nodes.is_empty() {
            return Some((nodes, "ScyllaDB (SCYLLA_NODES)"));
        }
    }
    let node = shared_cassandra(test)?;
    Some((vec![node.cql_node()], "Apache Cassandra 5.0 (test kit)"))
}

async fn migrated(test: &str) -> Option<(ScyllaConfig, scylla::client::session::Session)> {
    let (nodes, engine) = engine(test)?;
    let mut config = ScyllaConfig::new(nodes);
    config.keyspace = unique_keyspace(test);
    let session = connect(&config).await.expect("connect to the CQL engine");
    let first = migrate(&session, &config).await.expect("migrate");
    assert_eq!(first.applied.len(), MIGRATIONS.len());
    say(&format!(
        "{test}: running against {engine}, keyspace {}",
        config.keyspace
    ));
    Some((config, session))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Cassandra (or SCYLLA_NODES): ./scripts/test runs it"]
async fn scylla_store_passes_the_conformance_suite() {
    let Some((config, session)) = migrated("conformance").await else {
        return;
    };
    let store = ScyllaStore::with_session(session, &config.keyspace)
        .await
        .expect("prepare statements");
    snowlink_store::conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Cassandra (or SCYLLA_NODES): ./scripts/test runs it"]
async fn a_second_migrate_changes_nothing() {
    let Some((config, session)) = migrated("migrate_twice").await else {
        return;
    };
    let before = schema(&session, &config.keyspace).await;
    assert!(before.iter().any(|(t, c, _)| t == "links" && c == "url"));
    let again = migrate(&session, &config).await.expect("migrate again");
    assert!(again.applied.is_empty(), "a second migrate applies nothing");
    assert_eq!(again.already_applied.len(), MIGRATIONS.len());
    assert_eq!(schema(&session, &config.keyspace).await, before);
}

/// Every (table, column, type) of a keyspace, sorted.
async fn schema(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> Vec<(String, String, String)> {
    let rows = session
        .query_unpaged(
            "SELECT table_name, column_name, type FROM system_schema.columns WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut cols: Vec<(String, String, String)> = rows
        .rows::<(String, String, String)>()
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    cols.sort();
    cols
}
