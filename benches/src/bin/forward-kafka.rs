//! The service's forwarder, spool → Apache Kafka: events per second from a
//! filled click spool until every one is in a committed Kafka transaction
//! (batches of 20,000, acks=all, lz4), against a local broker (KRaft, one node, from
//! `scripts/engines`) started for the run. Filling the spool is not timed.
//!
//!   cargo run --release -p snowlink-benches --bin forward-kafka -- [EVENTS]

use std::time::{Duration, Instant};

use snowlink_benches::ClickGen;
use snowlink_clicks::{Forwarder, KafkaSettings};
use snowlink_spool::ClickSpool;
use snowlink_testkit::Server;

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500_000);
    let Some(broker) = Server::kafka("forward-kafka") else {
        anyhow::bail!("Apache Kafka is not fetched: run scripts/engines fetch");
    };
    broker.create_topic("clicks", 6);
    let dir = tempfile::tempdir()?;
    let spool_path = snowlink_spool::path_in(dir.path());
    {
        let mut spool = ClickSpool::open(&spool_path)?;
        let events: Vec<Vec<u8>> = ClickGen::new(
            11,
            n,
            10_000,
            1_795_132_800_000,
            snowlink_events::MS_PER_DAY,
        )
        .map(|e| e.to_row())
        .collect();
        // One spool row per batch of 256, as the service writes them.
        for batch in events.chunks(256) {
            spool.append_batch(batch)?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let forwarder = Forwarder::start(
        &spool_path,
        KafkaSettings {
            topic: "clicks".into(),
            message_timeout_ms: 30_000,
            ..KafkaSettings::new(broker.bootstrap())
        },
    )?;
    let metrics = forwarder.metrics();
    while metrics.forwarded.get() < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "only {} of {n} forwarded in 10 minutes",
            metrics.forwarded.get()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = start.elapsed().as_secs_f64();
    runtime.block_on(forwarder.shutdown());
    println!(
        "{}",
        serde_json::json!({
            "bench": "forward_spool_to_kafka",
            "events": n,
            "seconds": seconds,
            "events_per_sec": n as f64 / seconds,
        })
    );
    Ok(())
}
