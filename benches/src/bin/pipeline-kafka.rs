//! Pipeline through Kafka: events per second from a topic to Parquet with
//! `snowlink-aggregate`'s consumer, against a local Apache Kafka broker
//! (KRaft, one node, from `scripts/engines`) started for the run. Producing is not timed; consuming, writing Parquet and
//! committing are.
//!
//!   cargo run --release -p snowlink-benches --bin pipeline-kafka -- [EVENTS]

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use snowlink_aggregate::engine;
use snowlink_aggregate::kafka::{KafkaSettings, KafkaSource};
use snowlink_benches::ClickGen;
use snowlink_testkit::Server;

/// The allocator `snowlink-aggregate` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    snowlink_aggregate::keep_freed_memory();
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let Some(broker) = Server::kafka("pipeline-kafka") else {
        anyhow::bail!("Apache Kafka is not fetched: run scripts/engines fetch");
    };
    broker.create_topic("clicks", 3);
    let t0: i64 = 1_795_132_800_000;
    let produce_start = Instant::now();
    let events = ClickGen::new(7, n, 10_000, t0, 86_400_000).enumerate();
    snowlink_testkit::produce_clicks(
        &broker.bootstrap(),
        "clicks",
        "00000000000000be",
        events.map(|(i, e)| (i as i64 + 1, e)),
    );
    let produce_seconds = produce_start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake").display().to_string();
    let io = engine::LakeIo::open(&lake)?;
    let start = Instant::now();
    let mut source = KafkaSource::new(
        KafkaSettings {
            brokers: broker.bootstrap(),
            topic: "clicks".into(),
            group: "bench".into(),
            batch_wait: Duration::from_secs(2),
            session_timeout: Duration::from_secs(45),
            until_end: true,
        },
        io.clone(),
    )?;
    let summary = engine::run(
        &mut source,
        &io,
        engine::RunOptions {
            batch_size: 250_000,
            stop: &AtomicBool::new(false),
            bar: &indicatif::ProgressBar::hidden(),
            rollups_every: None,
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(summary.events == n, "moved {} of {n}", summary.events);
    println!(
        "{}",
        serde_json::json!({
            "bench": "pipeline_kafka_to_parquet",
            "events": n,
            "seconds": seconds,
            "events_per_sec": n as f64 / seconds,
            "produce_events_per_sec": n as f64 / produce_seconds,
            "parquet_bytes_per_event": summary.bytes as f64 / n as f64,
        })
    );
    Ok(())
}
