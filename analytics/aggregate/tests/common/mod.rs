//! What the aggregate's tests share: events, a spool to fill, the binary,
//! and the lake read back through its Delta log.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};

use snowlink_events::{ClickEvent, SCHEMA_VERSION};
use snowlink_lake::{Lake, TableKind};
use snowlink_spool::ClickSpool;

pub const BIN: &str = env!("CARGO_BIN_EXE_snowlink-aggregate");
pub const DAY_MS: i64 = snowlink_events::MS_PER_DAY;
/// 2026-11-20T00:00:00Z
pub const T0: i64 = 1_795_132_800_000;

pub fn event(i: i64) -> ClickEvent {
    ClickEvent {
        schema_version: SCHEMA_VERSION,
        event_id: 1_000_000 + i,
        code: format!("code{}", i % 37),
        ts: T0 + (i * 7_919_001) % (3 * DAY_MS),
        referrer: (i % 3 == 0).then(|| "https://news.example.com/".to_owned()),
        referrer_host: (i % 3 == 0).then(|| "news.example.com".to_owned()),
        user_agent: Some("Mozilla/5.0".into()),
        browser: Some("Firefox".into()),
        os: Some("Linux".into()),
        device: Some("desktop".into()),
        is_bot: i % 10 == 0,
        country: Some(["FR", "US", "JP"][(i % 3) as usize].into()),
        visitor_id: format!("{:016x}", i % 101),
    }
}

/// Events `range` into the spool of `data_dir`, as the service spools
/// them: batches of many sizes.
pub fn fill_spool(data_dir: &Path, range: std::ops::Range<i64>) {
    std::fs::create_dir_all(data_dir).unwrap();
    let mut spool = ClickSpool::open(snowlink_spool::path_in(data_dir)).unwrap();
    let events: Vec<Vec<u8>> = range.map(|i| event(i).to_row()).collect();
    let sizes = [1, 700, 37, 2_000, 2, 9_000];
    let mut chunk = &events[..];
    for &size in sizes.iter().cycle() {
        if chunk.is_empty() {
            break;
        }
        let (batch, tail) = chunk.split_at(size.min(chunk.len()));
        spool.append_batch(batch).unwrap();
        chunk = tail;
    }
}

/// The aggregate on the spool of `data_dir`, into `lake`.
pub fn aggregate(data_dir: &Path, lake: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--lake")
        .arg(lake)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to success, returning its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every event of the lake's `clicks` table at its latest version, with
/// repeats, read through the lake crate (`env`: the S3 settings, if any).
pub fn lake_events(lake: &str, env: &[(String, String)]) -> Vec<ClickEvent> {
    let lake = Lake::open_with(lake, env).unwrap();
    runtime()
        .block_on(snowlink_lake::read_all_clicks(&lake))
        .unwrap()
}

/// Per date, the clicks the `daily` rollup counts and the clicks the
/// `clicks` table holds.
pub fn rollup_vs_clicks(lake: &str, env: &[(String, String)]) -> Vec<(String, i64, i64)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let lake = Lake::open_with(lake, env).unwrap();
    runtime().block_on(async {
        let clicks = lake.load(TableKind::Clicks).await.unwrap().unwrap();
        let daily = lake.load(TableKind::Daily).await.unwrap().unwrap();
        let days = snowlink_lake::day_states(&clicks, Some(&daily), None).unwrap();
        let mut out = Vec::new();
        for (date, day) in days {
            let mut total = 0;
            for f in &day.daily_files {
                let bytes = lake.read(TableKind::Daily, &f.path).await.unwrap();
                for batch in
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap()
                        .build()
                        .unwrap()
                {
                    total += batch
                        .unwrap()
                        .column_by_name("clicks")
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .sum::<i64>();
                }
            }
            out.push((date, total, day.clicks));
        }
        out
    })
}

/// Clicks per code.
pub fn per_code<'a>(codes: impl Iterator<Item = &'a String>) -> HashMap<String, u64> {
    let mut m: HashMap<String, u64> = HashMap::new();
    for c in codes {
        *m.entry(c.clone()).or_default() += 1;
    }
    m
}

/// What events `range` count per code.
pub fn expected_per_code(range: std::ops::Range<i64>) -> HashMap<String, u64> {
    let events: Vec<ClickEvent> = range.map(event).collect();
    per_code(events.iter().map(|e| &e.code))
}

/// Every event of `range` is in the lake exactly once: read through the
/// lake crate, and by Python's `deltalake` and DuckDB (when installed),
/// with per-code counts equal to what was sent. Complete days' rollups
/// (all the test's days are complete) add up to the clicks.
pub fn assert_exactly_once(lake: &str, env: &[(String, String)], range: std::ops::Range<i64>) {
    let n = range.end - range.start;
    let events = lake_events(lake, env);
    let ids: HashSet<i64> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(events.len() as i64, n, "every event once (lake crate)");
    assert_eq!(ids.len() as i64, n, "no event twice (lake crate)");
    let want = expected_per_code(range.clone());
    assert_eq!(per_code(events.iter().map(|e| &e.code)), want);
    if let Some((rows, duckdb)) = snowlink_testkit::delta_clicks_read_independently(lake, env) {
        assert_eq!(rows.len() as i64, n, "python deltalake: every event once");
        let ids: HashSet<i64> = rows.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids.len() as i64, n, "python deltalake: no event twice");
        assert_eq!(
            per_code(rows.iter().map(|(_, c)| c)),
            want,
            "python deltalake per code"
        );
        assert_eq!(duckdb as i64, n, "DuckDB over the files the log lists");
    }
}

/// The daily rollup of every day adds up to the day's clicks.
pub fn assert_rollups_fresh(lake: &str, env: &[(String, String)]) {
    for (date, rolled, clicks) in rollup_vs_clicks(lake, env) {
        assert_eq!(rolled, clicks, "daily rollup of {date}");
    }
}
