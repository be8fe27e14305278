//! Pipeline: events per second from the spool to the Delta lake on a local
//! folder, in one run over the same events spooled two ways: as the service
//! spools them (binary rows, one spool row per batch of `EVENTS_PER_ROW`),
//! and one binary row per event. Also bytes per event in the spool and in
//! the lake, against the events' JSON (their form on Kafka).
//!
//!   cargo run --release -p snowlink-benches --bin pipeline -- [EVENTS] [EVENTS_PER_ROW]
//!
//! `PIPELINE_NO_BASELINES=1` runs the first pass only (to profile it).

use std::time::Instant;

use snowlink_aggregate::engine;
use snowlink_aggregate::spool::SpoolSource;
use snowlink_benches::ClickGen;
use snowlink_spool::ClickSpool;

/// The allocator `snowlink-aggregate` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One spool → Parquet run over `rows`, spooled `per_row` to a spool row
/// (1: one row each): (events/s, lake bytes per event, spool bytes per
/// event).
fn run(rows: &[Vec<u8>], per_row: usize) -> anyhow::Result<(f64, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let spool_path = snowlink_spool::path_in(dir.path());
    let mut spool = ClickSpool::open(&spool_path)?;
    if per_row > 1 {
        for batch in rows.chunks(per_row) {
            spool.append_batch(batch)?;
        }
    } else {
        for chunk in rows.chunks(50_000) {
            spool.append(chunk)?;
        }
    }
    let spool_bytes = std::fs::metadata(&spool_path)?.len()
        + std::fs::metadata(spool_path.with_extension("db-wal")).map_or(0, |m| m.len());
    let lake = dir.path().join("lake").display().to_string();
    let io = engine::LakeIo::open(&lake)?;
    let start = Instant::now();
    let mut source = SpoolSource::new(spool, &spool_path, &lake)?;
    let summary = snowlink_benches::drain(&mut source, &io)?;
    let seconds = start.elapsed().as_secs_f64();
    let n = rows.len();
    anyhow::ensure!(
        summary.events == n as u64,
        "moved {} of {n}",
        summary.events
    );
    Ok((
        n as f64 / seconds,
        summary.bytes as f64 / n as f64,
        spool_bytes as f64 / n as f64,
    ))
}

fn main() -> anyhow::Result<()> {
    snowlink_aggregate::keep_freed_memory();
    let n = snowlink_benches::arg(1, 1_000_000)? as usize;
    let per_row = snowlink_benches::arg(2, 256)? as usize;
    let t0: i64 = 1_795_132_800_000;
    let events: Vec<_> =
        ClickGen::new(7, n as u64, 10_000, t0, snowlink_events::MS_PER_DAY).collect();
    let rows: Vec<Vec<u8>> = events.iter().map(|e| e.to_row()).collect();
    let json_bytes: usize = events
        .iter()
        .map(|e| snowlink_events::kafka::message(e.as_ref(), None).len())
        .sum();
    drop(events);
    // As the service spools them, then one binary row per event, in the
    // same run.
    let (rate, lake_bytes, spool_bytes) = run(&rows, per_row)?;
    if std::env::var_os("PIPELINE_NO_BASELINES").is_some() {
        // For a profiler: the service's rows only.
        println!("{rate:.0} events/s");
        return Ok(());
    }
    let (single_rate, _, single_spool_bytes) = run(&rows, 1)?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "pipeline_spool_to_parquet",
            "events": n,
            "events_per_sec": rate,
            "events_per_row": per_row,
            "single_rows_events_per_sec": single_rate,
            "single_spool_bytes_per_event": single_spool_bytes,
            "parquet_bytes_per_event": lake_bytes,
            "json_bytes_per_event": json_bytes as f64 / n as f64,
            "spool_bytes_per_event": spool_bytes,
        })
    );
    Ok(())
}
