//! Pipeline through Kafka: events per second from a topic to the Delta
//! lake with `snowlink-aggregate`'s consumer, against a local Apache Kafka
//! broker (KRaft, one node, from `scripts/engines`) started for the run.
//! Producing is not timed; joining the group, consuming, writing Parquet
//! and committing are.
//!
//! In one run, over the same topic (PARTITIONS partitions, default 4):
//! one worker writing a lake on a local folder, one worker writing a lake
//! on the S3 server (versitygw, also from `scripts/engines`), and WORKERS
//! workers (default 2) sharing a consumer group, writing one lake on the
//! S3 server. Each pass reads the whole topic under a new group.
//!
//!   cargo run --release -p snowlink-benches --bin pipeline-kafka -- [EVENTS] [WORKERS] [PARTITIONS]
//!
//! Then the bare consumer with the same settings, copying each payload as
//! the worker does: the ceiling of one consumer on this machine.
//!
//! `PIPELINE_ONLY=local|s3|workers|raw` runs that pass only (to profile it).

use std::time::{Duration, Instant};

use snowlink_aggregate::engine;
use snowlink_aggregate::kafka::{KafkaSettings, KafkaSource};
use snowlink_benches::{arg, ClickGen};
use snowlink_testkit::Server;

/// The allocator `snowlink-aggregate` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What one worker moved.
struct Moved {
    events: u64,
    bytes: u64,
}

/// One worker: reads the topic under `group` to the end it sees at
/// assignment, into `lake`.
fn worker(brokers: &str, group: &str, lake: &str) -> anyhow::Result<Moved> {
    let io = engine::LakeIo::open(lake)?;
    let mut source = KafkaSource::new(
        KafkaSettings {
            brokers: brokers.into(),
            topic: "clicks".into(),
            group: group.into(),
            batch_wait: Duration::from_secs(2),
            session_timeout: Duration::from_secs(45),
            until_end: true,
        },
        io.clone(),
    )?;
    let summary = snowlink_benches::drain(&mut source, &io)?;
    Ok(Moved {
        events: summary.events,
        bytes: summary.bytes,
    })
}

/// `workers` workers at once on one group and one lake: (events/s,
/// Parquet bytes per event).
fn pass(
    brokers: &str,
    group: &str,
    lake: &str,
    workers: usize,
    n: u64,
) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let moved: Vec<Moved> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| worker(brokers, group, lake)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let events: u64 = moved.iter().map(|m| m.events).sum();
    let bytes: u64 = moved.iter().map(|m| m.bytes).sum();
    anyhow::ensure!(events == n, "{group}: moved {events} of {n}");
    eprintln!("{group}: {n} events in {seconds:.2} s");
    Ok((n as f64 / seconds, bytes as f64 / n as f64))
}

/// The bare consumer, for comparison: messages per second from the first
/// message to the `n`th, read with the worker's consumer settings, each
/// payload copied as the worker copies it.
fn raw_rate(brokers: &str, group: &str, n: u64) -> anyhow::Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()?;
    consumer.subscribe(&["clicks"])?;
    let (mut got, mut bytes) = (0u64, 0usize);
    let mut first = None;
    while got < n {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        first.get_or_insert_with(Instant::now);
        bytes += message.payload().map_or(0, |p| p.to_vec().len());
        got += 1;
    }
    anyhow::ensure!(bytes > 0, "read nothing");
    Ok(n as f64 / first.map_or(f64::NAN, |f| f.elapsed().as_secs_f64()))
}

/// Asks the broker for a group's coordinator once, so that the internal
/// offsets topic exists before any pass is timed: a new cluster creates it
/// at the first group's first request, once, and that is no worker's cost.
fn warm_coordinator(brokers: &str) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "warm-up")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("clicks", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(_) => return Ok(()),
            // Not ready while the offsets topic is being made.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    snowlink_aggregate::keep_freed_memory();
    let n = arg(1, 1_000_000)?;
    let workers = arg(2, 2)? as usize;
    let partitions = arg(3, 4)? as i32;
    let only = std::env::var("PIPELINE_ONLY").ok();
    let runs = |pass: &str| only.as_deref().is_none_or(|o| o == pass);

    let Some(broker) = Server::kafka("pipeline-kafka") else {
        anyhow::bail!("Apache Kafka is not fetched: run scripts/engines fetch");
    };
    let Some(s3) = Server::s3("pipeline-kafka") else {
        anyhow::bail!("versitygw is not built: run scripts/engines fetch");
    };
    snowlink_benches::use_s3(&s3);
    broker.create_topic("clicks", partitions);
    // Clicks of today (UTC), the open day a running worker writes: no
    // day's rollup is due at the end of a pass (the spool bench's clicks
    // are of a past day, and its figure includes that day's rollup).
    let t0 = snowlink_benches::today_ms();
    let produce_start = Instant::now();
    let events = ClickGen::new(7, n, 10_000, t0, 43_200_000).enumerate();
    snowlink_testkit::produce_clicks(
        &broker.bootstrap(),
        "clicks",
        "00000000000000be",
        events.map(|(i, e)| (i as i64 + 1, e)),
    );
    let produce_seconds = produce_start.elapsed().as_secs_f64();
    let brokers = broker.bootstrap();
    warm_coordinator(&brokers)?;
    let dir = tempfile::tempdir()?;
    let local_lake = dir.path().join("lake").display().to_string();

    let mut out = serde_json::json!({
        "bench": "pipeline_kafka_to_delta",
        "events": n,
        "partitions": partitions,
        "workers": workers,
        "produce_events_per_sec": n as f64 / produce_seconds,
    });
    if runs("local") {
        let (rate, bytes) = pass(&brokers, "local", &local_lake, 1, n)?;
        out["local_events_per_sec"] = rate.into();
        out["parquet_bytes_per_event"] = bytes.into();
    }
    if runs("s3") {
        let (rate, _) = pass(&brokers, "s3-one", "s3://snowlink/one", 1, n)?;
        out["s3_events_per_sec"] = rate.into();
    }
    if runs("workers") {
        let (rate, _) = pass(&brokers, "s3-workers", "s3://snowlink/workers", workers, n)?;
        out["s3_workers_events_per_sec"] = rate.into();
    }
    if runs("raw") {
        out["raw_payload_per_sec"] = raw_rate(&brokers, "raw-payload", n)?.into();
    }
    println!("{out}");
    Ok(())
}
