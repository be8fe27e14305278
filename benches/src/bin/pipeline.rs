//! Pipeline: events per second from the spool to Parquet, and bytes per event
//! in the lake against the same events as JSON lines, in one run.
//!
//!   cargo run --release -p snowlink-benches --bin pipeline -- [EVENTS]

use std::time::Instant;

use rand::distributions::Distribution;
use rand::{Rng, SeedableRng};
use snowlink_events::{ClickEvent, SCHEMA_VERSION};
use snowlink_lake::Lake;
use snowlink_store::ClickSpool;

const AGENTS: &[(&str, &str, &str, &str, bool)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "Windows 10", "desktop", false),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "Safari", "iPhone", "mobile", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "Safari", "Mac OSX", "desktop", false),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox", "Linux", "desktop", false),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "Android", "mobile", false),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "UNKNOWN", "bot", true),
];
const COUNTRIES: &[&str] = &["US", "FR", "DE", "JP", "GB", "BR", "IN", "CA", "ES", "IT"];

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let zipf = rand_distr::Zipf::new(10_000, 1.0)?;
    let t0: i64 = 1_795_132_800_000;
    let events: Vec<String> = (0..n)
        .map(|i| {
            let (ua, browser, os, device, bot) = AGENTS[rng.gen_range(0..AGENTS.len())];
            let referrer_host =
                (rng.gen_bool(0.6)).then(|| format!("site{}.example.com", rng.gen_range(0..50)));
            ClickEvent {
                schema_version: SCHEMA_VERSION,
                event_id: 1 << 40 | i as i64,
                code: format!("c{:010}", zipf.sample(&mut rng) as u64),
                ts: t0 + (i as i64 * 86_400_000 / n as i64),
                referrer: referrer_host
                    .as_ref()
                    .map(|h| format!("https://{h}/post/{}", rng.gen_range(0..1000))),
                referrer_host,
                user_agent: Some(ua.to_owned()),
                browser: Some(browser.to_owned()),
                os: Some(os.to_owned()),
                device: Some(device.to_owned()),
                is_bot: bot,
                country: Some(COUNTRIES[rng.gen_range(0..COUNTRIES.len())].to_owned()),
                visitor_id: format!(
                    "{:016x}",
                    rng.gen_range(0..100_000u64)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ),
            }
            .to_json()
        })
        .collect();
    let json_bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut spool = ClickSpool::open(dir.path().join("spool.db"))?;
    for chunk in events.chunks(50_000) {
        spool.append(chunk)?;
    }
    drop(events);
    let lake = Lake::new(dir.path().join("lake"));
    let start = Instant::now();
    let (summary, _) = snowlink_aggregate::run_once(&mut spool, &lake, 250_000, false)?;
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
