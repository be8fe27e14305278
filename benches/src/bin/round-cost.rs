//! The cost of an aggregate round against the size of the day it writes
//! to: two lakes whose current day (UTC) already holds SMALL and BIG clicks
//! (written straight to the `clicks` table, a million to a file), then,
//! alternating between them, ROUNDS rounds that each move ROUND new clicks
//! of the same day from a spool into the lake, as `snowlink-aggregate
//! --once` does: open the lake, resume, append, commit, refresh the
//! rollups. Each round is timed whole; the median of each lake is
//! reported, and their ratio.
//!
//!   cargo run --release -p snowlink-benches --bin round-cost -- \
//!       [BIG 10000000] [SMALL 100000] [ROUND 100000] [ROUNDS 3] [s3|local]
//!
//! On `s3` (the default) both lakes are on the S3 server (versitygw, from
//! `scripts/engines`), started for the run.

use std::time::Instant;

use snowlink_aggregate::engine;
use snowlink_aggregate::spool::SpoolSource;
use snowlink_benches::{arg, ClickGen};
use snowlink_lake::{Lake, TableKind};
use snowlink_spool::ClickSpool;
use snowlink_testkit::Server;

/// The allocator `snowlink-aggregate` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_MS: i64 = snowlink_events::MS_PER_DAY;

/// Fills `lake`'s day starting at `t0` with `n` clicks, a million to a
/// file, each file its own commit.
fn fill(lake: &str, n: u64, t0: i64) -> anyhow::Result<()> {
    let lake = Lake::open(lake)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut clicks = lake.table(TableKind::Clicks).await?;
        let mut written = 0u64;
        let mut seed = 100;
        while written < n {
            let k = (n - written).min(1_000_000);
            seed += 1;
            let events: Vec<_> = ClickGen::new(seed, k, 10_000, t0, DAY_MS / 2).collect();
            let (first, last) = (written as i64 + 1, (written + k) as i64);
            snowlink_benches::append_file(&lake, &mut clicks, &events, "fill", first, last).await?;
            written += k;
        }
        Ok::<_, anyhow::Error>(())
    })
}

/// One round: ROUND new clicks of the day, spooled as the service spools
/// them, moved into `lake` by a fresh engine run. Seconds, whole.
fn round(lake: &str, n: u64, t0: i64, seed: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let spool_path = snowlink_spool::path_in(dir.path());
    let mut spool = ClickSpool::open(&spool_path)?;
    let rows: Vec<Vec<u8>> = ClickGen::new(seed, n, 10_000, t0, DAY_MS / 2)
        .map(|e| e.to_row())
        .collect();
    for batch in rows.chunks(256) {
        spool.append_batch(batch)?;
    }
    drop(rows);
    let start = Instant::now();
    let io = engine::LakeIo::open(lake)?;
    let mut source = SpoolSource::new(spool, &spool_path, lake)?;
    let summary = snowlink_benches::drain(&mut source, &io)?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(summary.events == n, "moved {} of {n}", summary.events);
    Ok(seconds)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    snowlink_aggregate::keep_freed_memory();
    let (big, small, per_round, rounds) = (
        arg(1, 10_000_000)?,
        arg(2, 100_000)?,
        arg(3, 100_000)?,
        arg(4, 3)?,
    );
    let on_s3 = std::env::args().nth(5).as_deref() != Some("local");
    let dir = tempfile::tempdir()?;
    let s3 = if on_s3 {
        let Some(s3) = Server::s3("round-cost") else {
            anyhow::bail!("versitygw is not built: run scripts/engines fetch");
        };
        snowlink_benches::use_s3(&s3);
        Some(s3)
    } else {
        None
    };
    let lake_at = |name: &str| match &s3 {
        Some(_) => format!("s3://snowlink/{name}"),
        None => dir.path().join(name).display().to_string(),
    };
    let (big_lake, small_lake) = (lake_at("big"), lake_at("small"));
    // Today, UTC: an open day, as the day a running worker writes to.
    let t0 = snowlink_benches::today_ms();
    let filling = Instant::now();
    fill(&big_lake, big, t0)?;
    fill(&small_lake, small, t0)?;
    eprintln!(
        "filled the day with {big} and {small} clicks in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let (mut big_times, mut small_times) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        small_times.push(round(&small_lake, per_round, t0, 500 + r)?);
        big_times.push(round(&big_lake, per_round, t0, 500 + r)?);
        eprintln!(
            "round {r}: {:.3} s on the small day, {:.3} s on the big day",
            small_times[r as usize], big_times[r as usize]
        );
    }
    let (b, s) = (median(big_times.clone()), median(small_times.clone()));
    println!(
        "{}",
        serde_json::json!({
            "bench": "aggregate_round_cost",
            "storage": if on_s3 { "s3" } else { "local" },
            "big_day_clicks": big,
            "small_day_clicks": small,
            "round_clicks": per_round,
            "big_round_seconds": b,
            "small_round_seconds": s,
            "big_rounds": big_times,
            "small_rounds": small_times,
            "ratio": b / s,
        })
    );
    Ok(())
}
