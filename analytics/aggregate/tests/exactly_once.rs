//! The real `snowlink-aggregate`, killed with SIGKILL at arbitrary moments:
//! after a final clean run, every spooled event is in the lake exactly once.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use snowlink_events::{ClickEvent, SCHEMA_VERSION};
use snowlink_spool::ClickSpool;

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

/// Event `i` as the spool holds it: a binary row, as the service writes,
/// except every fifth, JSON, as spools written before rows were binary hold
/// them (a spool that crossed an upgrade holds both).
fn spool_row(i: i64) -> Vec<u8> {
    if i % 5 == 4 {
        event(i).to_json().into_bytes()
    } else {
        event(i).to_row()
    }
}

fn fill_spool(data_dir: &Path, n: i64) {
    let mut spool = ClickSpool::open(data_dir.join("spool.db")).unwrap();
    let events: Vec<Vec<u8>> = (0..n).map(spool_row).collect();
    // As the service spools them (one row per batch, batches of every
    // size), with stretches of one row per event (older spools) between.
    let sizes = [1, 700, 37, 2_000, 2, 9_000];
    for (i, chunk) in events.chunks(10_000).enumerate() {
        if i % 3 == 2 {
            spool.append(chunk).unwrap();
            continue;
        }
        let mut chunk = chunk;
        for &size in sizes.iter().cycle() {
            if chunk.is_empty() {
                break;
            }
            let (batch, tail) = chunk.split_at(size.min(chunk.len()));
            spool.append_batch(batch).unwrap();
            chunk = tail;
        }
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

/// The two sources of the one engine, for the tests that run on both.
enum Source {
    Spool { data: PathBuf },
    Kafka { kafka: snowlink_testkit::Server },
}

impl Source {
    fn spool(dir: &Path) -> Self {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        Source::Spool { data }
    }

    fn kafka(test: &str) -> Option<Self> {
        let kafka = snowlink_testkit::Server::kafka(test)?;
        kafka.create_topic("clicks", 2);
        Some(Source::Kafka { kafka })
    }

    /// Adds events `range` (each once) to the source.
    fn feed(&self, range: std::ops::Range<i64>) {
        match self {
            Source::Spool { data } => {
                let mut spool = ClickSpool::open(data.join("spool.db")).unwrap();
                let events: Vec<Vec<u8>> = range.map(spool_row).collect();
                spool.append_batch(&events).unwrap();
            }
            Source::Kafka { kafka } => snowlink_testkit::produce_clicks(
                &kafka.bootstrap(),
                "clicks",
                "00000000000000cc",
                range.map(|i| (i + 1, event(i))),
            ),
        }
    }

    /// One complete `--once` run into `lake`, in consumer group `group`
    /// (Kafka only).
    fn consume(&self, lake: &Path, group: &str) {
        let mut cmd = Command::new(BIN);
        match self {
            Source::Spool { data } => cmd.arg("--data-dir").arg(data),
            Source::Kafka { kafka } => cmd.args(["--kafka-brokers", &kafka.bootstrap()]).args([
                "--group",
                group,
                "--topic",
                "clicks",
                "--batch-wait",
                "200ms",
            ]),
        };
        let out = cmd
            .arg("--lake")
            .arg(lake)
            .args(["--once", "--batch-size", "200"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The source's own record of what it may forget.
    fn own_state(&self) -> Option<PathBuf> {
        match self {
            Source::Spool { data } => Some(data.join("spool.db")),
            Source::Kafka { .. } => None,
        }
    }
}

/// Copies a SQLite database with its WAL files into `to`, or back.
fn copy_db(db: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("{}{suffix}", db.file_name().unwrap().to_str().unwrap());
        let _ = std::fs::remove_file(to.join(&name));
        let _ = std::fs::copy(db.with_file_name(&name), to.join(&name));
    }
}

fn restore_db(saved: &Path, db: &Path) {
    copy_db(&saved.join(db.file_name().unwrap()), db.parent().unwrap());
}

/// A run killed after writing a batch's files but before recording them in
/// the ledger, then a compaction, then a rerun: every event once. The
/// compaction must not merge files the ledger does not record.
fn compaction_after_an_unrecorded_batch(source: Source, dir: &Path) {
    let lake = dir.join("lake");
    let ledger = lake.join("_ledger/ledger.db");
    source.feed(0..1_000);
    source.consume(&lake, "compact-test");
    source.feed(1_000..2_000);
    // Everything as it was before the second batch was recorded.
    let saved = dir.join("saved");
    copy_db(&ledger, &saved);
    if let Some(own) = source.own_state() {
        copy_db(&own, &saved);
    }
    source.consume(&lake, "compact-test");
    // The crash: the files are there; neither the ledger nor the source
    // knows they were written.
    restore_db(&saved, &ledger);
    if let Some(own) = source.own_state() {
        restore_db(&saved, &own);
    }
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
    source.consume(&lake, "compact-test-rerun");
    let ids = lake_event_ids(&lake);
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 2_000, "every event is in the lake");
    assert_eq!(ids.len(), 2_000, "no event twice");
    assert_eq!(daily_total(&lake), 2_000, "daily rollups add up");
}

/// A run killed after recording a batch but before its source could
/// forget it: the rerun is offered the batch again and writes nothing twice.
fn recorded_but_unacknowledged_batch(source: Source, dir: &Path) {
    let lake = dir.join("lake");
    source.feed(0..1_500);
    let saved = dir.join("saved");
    if let Some(own) = source.own_state() {
        copy_db(&own, &saved);
    }
    source.consume(&lake, "ack-test");
    if let Some(own) = source.own_state() {
        restore_db(&saved, &own);
    }
    // A group with no commits: only the ledger knows what was written.
    source.consume(&lake, "ack-test-rerun");
    source.feed(1_500..2_000);
    source.consume(&lake, "ack-test-rerun");
    assert_exactly_once(&lake, 2_000);
    if let Source::Spool { data } = &source {
        let spool = ClickSpool::open(data.join("spool.db")).unwrap();
        assert_eq!(spool.backlog().unwrap(), 0, "the spool was released");
    }
}

#[test]
fn spool_compaction_after_an_unrecorded_batch_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    compaction_after_an_unrecorded_batch(Source::spool(dir.path()), dir.path());
}

#[test]
fn kafka_compaction_after_an_unrecorded_batch_duplicates_nothing() {
    let Some(source) =
        Source::kafka("kafka_compaction_after_an_unrecorded_batch_duplicates_nothing")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    compaction_after_an_unrecorded_batch(source, dir.path());
}

#[test]
fn spool_batch_recorded_but_not_released_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    recorded_but_unacknowledged_batch(Source::spool(dir.path()), dir.path());
}

#[test]
fn kafka_batch_recorded_but_not_committed_is_written_once() {
    let Some(source) = Source::kafka("kafka_batch_recorded_but_not_committed_is_written_once")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    recorded_but_unacknowledged_batch(source, dir.path());
}

/// A lake filled by an earlier version (spool files named without a
/// stream, the batch state kept in the spool, a batch left half-written)
/// is taken over by the ledger without losing or repeating an event.
#[test]
fn a_lake_from_before_the_ledger_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    std::fs::create_dir_all(&data).unwrap();
    fill_spool(&data, 1_000);
    // As the earlier version left it: rows 1..=600 in the lake under
    // stream-less names and released; 601..=800 pending, half written.
    let lake_handle = snowlink_lake::Lake::new(&lake);
    let lock = lake_handle.lock().unwrap();
    let mut by_day: std::collections::BTreeMap<String, Vec<ClickEvent>> = Default::default();
    for e in (0..600).map(event) {
        by_day.entry(e.date()).or_default().push(e);
    }
    for (day, events) in by_day {
        snowlink_lake::write_clicks(&lake_handle, &day, None, 1, 600, &events).unwrap();
    }
    let mut partial: Vec<ClickEvent> = (600..650).map(event).collect();
    let day = partial[0].date();
    partial.retain(|e| e.date() == day);
    snowlink_lake::write_clicks(&lake_handle, &day, None, 601, 800, &partial).unwrap();
    drop(lock);
    {
        let mut spool = ClickSpool::open(data.join("spool.db")).unwrap();
        spool.release_through(600).unwrap();
    }
    rusqlite::Connection::open(data.join("spool.db"))
        .unwrap()
        .execute_batch(
            "UPDATE progress SET pending_first = 601, pending_last = 800 WHERE id = 1;
             INSERT INTO dirty_days (day) VALUES ('2026-11-20');",
        )
        .unwrap();
    let out = aggregate(&data, &lake, &["--once", "--batch-size", "300"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&lake, 1_000);
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
        spool.claim(snowlink_spool::CONSUMER_KAFKA).unwrap();
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
    spool.claim(snowlink_spool::CONSUMER_KAFKA).unwrap();
    assert!(matches!(
        spool.claim(snowlink_spool::CONSUMER_LAKE),
        Err(snowlink_spool::ClaimError::Owned { .. })
    ));
}

/// Forged messages on the topic (not an event, an absurd time, a sequence
/// number far ahead) are rejected and counted; they silence nothing, and
/// every real event of the same spool still reaches the lake once.
#[test]
fn forged_kafka_messages_silence_nothing() {
    let Some(kafka) = snowlink_testkit::Server::kafka("forged_kafka_messages_silence_nothing")
    else {
        return;
    };
    kafka.create_topic("clicks", 1);
    let spool = "00000000000000bb";
    let forged = |payload: Vec<u8>, seq: i64| snowlink_testkit::RawMessage {
        key: "code0".into(),
        payload,
        spool: Some(spool.into()),
        seq: Some(seq.to_string()),
    };
    let mut absurd = event(0);
    absurd.ts = 253_402_300_799_000; // 9999-12-31
    let mut bad_code = event(1);
    bad_code.code = "\u{1b}[2J".into();
    snowlink_testkit::produce_raw(
        &kafka.bootstrap(),
        "clicks",
        [
            forged(b"not an event".to_vec(), i64::MAX),
            forged(vec![0xff, 0xfe], i64::MAX - 1),
            forged(absurd.to_json().into_bytes(), i64::MAX - 2),
            forged(bad_code.to_json().into_bytes(), i64::MAX - 3),
        ],
    );
    const N: i64 = 500;
    snowlink_testkit::produce_clicks(
        &kafka.bootstrap(),
        "clicks",
        spool,
        (0..N).map(|i| (i + 1, event(i))),
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = Command::new(BIN)
        .args(["--kafka-brokers", &kafka.bootstrap()])
        .args(["--group", "forged", "--topic", "clicks"])
        .arg("--lake")
        .arg(&lake)
        .args(["--once", "--batch-wait", "200ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_exactly_once(&lake, N);
    let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        text.contains("4 invalid events skipped"),
        "the summary counts them: {text}"
    );
}
