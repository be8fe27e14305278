//! The real `snowlink-aggregate`, killed with SIGKILL at arbitrary moments:
//! after a final clean run, every spooled event is in the lake exactly once.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use snowlink_events::{ClickEvent, SCHEMA_VERSION};
use snowlink_store::ClickSpool;

const BIN: &str = env!("CARGO_BIN_EXE_snowlink-aggregate");
const DAY_MS: i64 = 86_400_000;
/// 2026-11-20T00:00:00Z
const T0: i64 = 1_795_132_800_000;

fn event(i: i64) -> ClickEvent {
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

fn fill_spool(data_dir: &Path, n: i64) {
    let mut spool = ClickSpool::open(data_dir.join("spool.db")).unwrap();
    let events: Vec<String> = (0..n).map(|i| event(i).to_json()).collect();
    for chunk in events.chunks(10_000) {
        spool.append(chunk).unwrap();
    }
}

fn aggregate(data_dir: &Path, lake: &Path, extra: &[&str]) -> Command {
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

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every event id in the clicks part of the lake, with repeats.
fn lake_event_ids(lake: &Path) -> Vec<i64> {
    let mut ids = Vec::new();
    for f in parquet_files(&lake.join("clicks")) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            for e in snowlink_events::arrow::from_record_batch(&batch.unwrap()).unwrap() {
                ids.push(e.event_id);
            }
        }
    }
    ids
}

fn daily_total(lake: &Path) -> i64 {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let mut total = 0;
    for f in parquet_files(&lake.join("daily")) {
        for batch in ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            total += batch
                .column_by_name("clicks")
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap())
                .sum::<i64>();
        }
    }
    total
}

fn assert_exactly_once(lake: &Path, n: i64) {
    let ids = lake_event_ids(lake);
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len() as i64, n, "every event present");
    assert_eq!(ids.len() as i64, n, "no event twice");
    assert_eq!(daily_total(lake), n, "daily rollups add up");
}

#[test]
fn killed_at_any_moment_then_rerun_gives_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    std::fs::create_dir_all(&data).unwrap();
    const N: i64 = 60_000;
    fill_spool(&data, N);

    let mut kills_mid_run = 0;
    for delay_ms in [40u64, 90, 150, 230, 320, 450] {
        let mut child = aggregate(&data, &lake, &["--once", "--batch-size", "1500"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            kills_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        kills_mid_run > 0,
        "at least one run was killed while working"
    );

    let out = aggregate(&data, &lake, &["--once", "--batch-size", "1500"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(summary.starts_with("aggregated "), "{summary}");
    assert_exactly_once(&lake, N);

    // Nothing left; a rerun changes nothing.
    let out = aggregate(&data, &lake, &["--once"]).output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("aggregated 0 events into 0 files"));
    assert_exactly_once(&lake, N);
    let spool = ClickSpool::open(data.join("spool.db")).unwrap();
    assert_eq!(spool.backlog().unwrap(), 0);
}

#[test]
fn files_are_deterministic_partitioned_and_compaction_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    std::fs::create_dir_all(&data).unwrap();
    const N: i64 = 9_000;
    fill_spool(&data, N);
    let out = aggregate(&data, &lake, &["--once", "--batch-size", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dates: Vec<String> = std::fs::read_dir(lake.join("clicks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(dates.len(), 3, "three days of events: {dates:?}");
    for d in &dates {
        assert!(d.starts_with("date=2026-11-2"), "{d}");
        assert!(lake.join("daily").join(d).join("daily.parquet").is_file());
    }
    let before = parquet_files(&lake.join("clicks"));
    assert!(before.len() > 3, "several files per day before compaction");
    for f in &before {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(snowlink_lake::parse_range(name).is_some(), "{name}");
    }
    let ids_before: HashSet<i64> = lake_event_ids(&lake).into_iter().collect();

    let out = aggregate(&data, &lake, &["compact"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = parquet_files(&lake.join("clicks"));
    assert_eq!(after.len(), 3, "one file per day: {after:?}");
    assert_exactly_once(&lake, N);
    assert_eq!(
        lake_event_ids(&lake).into_iter().collect::<HashSet<_>>(),
        ids_before
    );
    assert!(parquet_files(&lake.join("_staging")).is_empty());

    // Compaction again is a no-op; new events after it still land once.
    fill_spool(&data, 0);
    let out = aggregate(&data, &lake, &["compact"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(parquet_files(&lake.join("clicks")), after);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = aggregate(
        &dir.path().join("nope"),
        &dir.path().join("lake"),
        &["--once"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("does not exist"), "{err}");
    let out = aggregate(dir.path(), &dir.path().join("lake"), &["--every", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The Kafka path under the same abuse: Apache Kafka, events
/// produced with resends mixed in, the consumer killed with SIGKILL mid-run
/// several times, then run to the end.
#[test]
fn kafka_consumer_killed_at_any_moment_then_rerun_gives_every_event_once() {
    let Some(kafka) = snowlink_testkit::Server::kafka(
        "kafka_consumer_killed_at_any_moment_then_rerun_gives_every_event_once",
    ) else {
        return;
    };
    kafka.create_topic("clicks", 3);
    const N: i64 = 3_000;
    // Every event once, then the last 300 again: a forwarder's resend.
    let sends = (0..N).chain(N - 300..N).map(|i| (i + 1, event(i)));
    snowlink_testkit::produce_clicks(&kafka.bootstrap(), "clicks", "00000000000000aa", sends);

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let consume = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["--kafka-brokers", &kafka.bootstrap()])
            .args(["--group", "kill-test", "--topic", "clicks"])
            .arg("--lake")
            .arg(&lake)
            .args(["--once", "--batch-size", "100", "--batch-wait", "200ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut kills_mid_run = 0;
    for delay_ms in [150u64, 400, 700] {
        let mut child = consume().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            kills_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let out = consume().output().unwrap();
    assert!(
        out.status.success(),
        "final run: {}\nbroker log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        kafka
            .log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(kills_mid_run > 0, "at least one kill landed mid-run");
    assert_exactly_once(&lake, N);
}

/// A Kafka run killed after writing its files but before recording them,
/// then a compaction, then a rerun: every event once. The compaction must
/// not merge files the lake's state does not record.
#[test]
fn compaction_after_an_unrecorded_kafka_batch_duplicates_nothing() {
    let Some(kafka) = snowlink_testkit::Server::kafka(
        "compaction_after_an_unrecorded_kafka_batch_duplicates_nothing",
    ) else {
        return;
    };
    kafka.create_topic("clicks", 2);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let consume = |group: &str| {
        let out = Command::new(BIN)
            .args(["--kafka-brokers", &kafka.bootstrap()])
            .args(["--group", group, "--topic", "clicks"])
            .arg("--lake")
            .arg(&lake)
            .args(["--once", "--batch-size", "200", "--batch-wait", "200ms"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let state = lake.join("_kafka/state.db");
    snowlink_testkit::produce_clicks(
        &kafka.bootstrap(),
        "clicks",
        "00000000000000cc",
        (0..1_000).map(|i| (i + 1, event(i))),
    );
    consume("compact-test");
    // The state as it was before the next batch was recorded.
    let saved = dir.path().join("state-after-first-run");
    std::fs::create_dir_all(&saved).unwrap();
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::copy(lake.join("_kafka").join(f), saved.join(f));
    }
    snowlink_testkit::produce_clicks(
        &kafka.bootstrap(),
        "clicks",
        "00000000000000cc",
        (1_000..2_000).map(|i| (i + 1, event(i))),
    );
    consume("compact-test");
    // A crash between writing the second run's files and recording them:
    // the files are there, the state does not know them, and the group's
    // offsets were not committed either (they follow the state): the rerun
    // below uses a group with no commits.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(lake.join("_kafka").join(f));
        if saved.join(f).exists() {
            std::fs::copy(saved.join(f), lake.join("_kafka").join(f)).unwrap();
        }
    }
    assert!(state.exists());
    let out = Command::new(BIN)
        .args(["compact", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    consume("compact-test-rerun");
    let ids = lake_event_ids(&lake);
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 2_000, "every event is in the lake");
    assert_eq!(ids.len(), 2_000, "no event twice");
}

/// A spool that the service forwards to Kafka is refused to the lake path
/// (both would advance the same checkpoint), with an error that says what
/// to do; a drained spool can be released and handed over.
#[test]
fn a_spool_forwarded_to_kafka_is_not_drained_into_a_lake_too() {
    let dir = tempfile::tempdir().unwrap();
    fill_spool(dir.path(), 10);
    {
        let mut spool = ClickSpool::open(dir.path().join("spool.db")).unwrap();
        spool.claim(snowlink_store::CONSUMER_KAFKA).unwrap();
    }
    let lake = dir.path().join("lake");
    let out = aggregate(dir.path(), &lake, &["--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kafka-brokers"), "{err}");
    assert!(
        lake_event_ids(&lake).is_empty(),
        "nothing was taken from the spool"
    );
    let mut spool = ClickSpool::open(dir.path().join("spool.db")).unwrap();
    assert_eq!(spool.backlog().unwrap(), 10);
    // Not drained: the owner cannot be replaced.
    assert!(spool.release().is_err());

    // A spool drained into a lake and released may go to Kafka.
    let dir = tempfile::tempdir().unwrap();
    fill_spool(dir.path(), 10);
    let lake = dir.path().join("lake");
    let out = aggregate(dir.path(), &lake, &["--once", "--release-spool"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lake_event_ids(&lake).len(), 10);
    let mut spool = ClickSpool::open(dir.path().join("spool.db")).unwrap();
    assert_eq!(spool.consumer().unwrap(), None);
    spool.claim(snowlink_store::CONSUMER_KAFKA).unwrap();
    assert!(matches!(
        spool.claim(snowlink_store::CONSUMER_LAKE),
        Err(snowlink_store::ClaimError::Owned { .. })
    ));
}
