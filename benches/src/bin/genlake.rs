//! Writes a synthetic lake for the query benchmark: N clicks spread evenly
//! over D days, L links with a Zipf(1.0) popularity, one file per day (as
//! after `snowlink-aggregate compact`), committed to the Delta tables, and
//! the daily rollups. `--out` is a folder or an s3:// URL.
//!
//!   cargo run --release -p snowlink-benches --bin genlake -- --out LAKE \
//!       [--clicks 10000000] [--days 30] [--links 100000]
//!
//! Prints one JSON object: what was written, and the hottest code.

use std::time::Instant;

use clap::Parser;
use snowlink_benches::{code_of_rank, ClickGen};
use snowlink_lake::{Lake, TableKind};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    out: String,
    #[arg(long, default_value_t = 10_000_000)]
    clicks: u64,
    #[arg(long, default_value_t = 30)]
    days: u64,
    #[arg(long, default_value_t = 100_000)]
    links: u64,
    /// First day, UTC midnight, in ms since the epoch (2026-10-01).
    #[arg(long, default_value_t = 1_790_812_800_000)]
    start_ms: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.days > 0 && args.clicks >= args.days,
        "need at least one click per day"
    );
    let lake = Lake::open(&args.out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let per_day = args.clicks / args.days;
    let mut bytes = 0u64;
    let mut written = 0u64;
    runtime.block_on(async {
        let mut clicks = lake.table(TableKind::Clicks).await?;
        let mut daily = lake.table(TableKind::Daily).await?;
        let mut dims = lake.table(TableKind::Dims).await?;
        for day in 0..args.days {
            let n = if day + 1 == args.days {
                args.clicks - per_day * (args.days - 1)
            } else {
                per_day
            };
            let t0 = args.start_ms + day as i64 * snowlink_events::MS_PER_DAY;
            let events: Vec<_> =
                ClickGen::new(1000 + day, n, args.links, t0, snowlink_events::MS_PER_DAY).collect();
            let date = events[0].date();
            let first = written as i64 + 1;
            let last = (written + n) as i64;
            let size =
                snowlink_benches::append_file(&lake, &mut clicks, &events, "genlake", first, last)
                    .await?;
            drop(events);
            bytes += size;
            written += n;
            let state = snowlink_lake::day_states(&clicks, None, None)?
                .remove(&date)
                .expect("the day just written");
            snowlink_lake::rebuild_day(&lake, &date, &state, &mut daily, &mut dims).await?;
            eprintln!("{date}: {n} clicks, {size} bytes");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "clicks": written,
            "days": args.days,
            "links": args.links,
            "bytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
            "hot_code": code_of_rank(1),
            "first_day": snowlink_events::date_of_ms(args.start_ms),
        })
    );
    Ok(())
}
