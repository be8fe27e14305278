//! Pipeline: events per second from the spool to Parquet, and bytes per event
//! in the lake against the same events as JSON lines, in one run.
//!
//!   cargo run --release -p snowlink-benches --bin pipeline -- [EVENTS]

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use snowlink_aggregate::engine;
use snowlink_aggregate::spool::SpoolSource;
use snowlink_benches::ClickGen;
use snowlink_lake::Lake;
use snowlink_spool::ClickSpool;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let t0: i64 = 1_795_132_800_000;
    let events: Vec<String> = ClickGen::new(7, n as u64, 10_000, t0, 86_400_000)
        .map(|e| e.to_json())
        .collect();
    let json_bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let spool_path = dir.path().join("spool.db");
    let mut spool = ClickSpool::open(&spool_path)?;
    for chunk in events.chunks(50_000) {
        spool.append(chunk)?;
    }
    drop(events);
    let lake = Lake::new(dir.path().join("lake"));
    let start = Instant::now();
    let mut source = SpoolSource::new(spool, &spool_path, lake.root())?;
    let summary = engine::run(
        &mut source,
        &lake,
        250_000,
        &AtomicBool::new(false),
        &indicatif::ProgressBar::hidden(),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.events == n as u64,
        "moved {} of {n}",
        summary.events
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "pipeline_spool_to_parquet",
            "events": n,
            "seconds": seconds,
            "events_per_sec": n as f64 / seconds,
            "parquet_bytes_per_event": summary.bytes as f64 / n as f64,
            "json_bytes_per_event": json_bytes as f64 / n as f64,
        })
    );
    Ok(())
}
