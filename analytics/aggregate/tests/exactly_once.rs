//! The real `snowlink-aggregate` on a spool and a local lake: killed with
//! SIGKILL at arbitrary moments and at each step of a commit, every
//! spooled event is in the Delta tables exactly once after a clean rerun,
//! as the lake crate, Python's `deltalake` and DuckDB read them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use snowlink_spool::ClickSpool;

fn lake_of(dir: &Path) -> String {
    dir.join("lake").display().to_string()
}

#[test]
fn killed_at_any_moment_then_rerun_gives_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), lake_of(dir.path()));
    const N: i64 = 60_000;
    fill_spool(&data, 0..N);

    let mut kills_mid_run = 0;
    for delay_ms in [200u64, 400, 700, 1_000, 1_400] {
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

    let summary = run_ok(&mut aggregate(
        &data,
        &lake,
        &["--once", "--batch-size", "1500"],
    ));
    assert!(summary.starts_with("aggregated "), "{summary}");
    assert_exactly_once(&lake, &[], 0..N);
    assert_rollups_fresh(&lake, &[]);

    // Nothing left; a rerun changes nothing.
    let summary = run_ok(&mut aggregate(&data, &lake, &["--once"]));
    assert!(
        summary.starts_with("aggregated 0 events into 0 files"),
        "{summary}"
    );
    assert_exactly_once(&lake, &[], 0..N);
    let spool = ClickSpool::open(snowlink_spool::path_in(&data)).unwrap();
    assert_eq!(spool.backlog().unwrap(), 0);
}

#[test]
fn every_tenth_commit_writes_a_checkpoint_that_readers_start_from() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), lake_of(dir.path()));
    let interval = snowlink_lake::CHECKPOINT_INTERVAL as i64;
    // One commit of clicks per run (version 0 creates the table).
    for run in 0..interval + 2 {
        fill_spool(&data, run * 100..(run + 1) * 100);
        run_ok(&mut aggregate(&data, &lake, &["--once"]));
    }
    let log = Path::new(&lake).join("clicks/_delta_log");
    let checkpoint = log.join(format!("{:020}.checkpoint.parquet", interval - 1));
    assert!(
        checkpoint.is_file() && log.join("_last_checkpoint").is_file(),
        "a checkpoint of version {}: {:?}",
        interval - 1,
        snowlink_testkit::files_under(&log)
    );
    // Every reader (this crate's, Python's deltalake, DuckDB over the
    // files it lists) sees every click once, through the checkpoint.
    assert_exactly_once(&lake, &[], 0..(interval + 2) * 100);
}

/// Starts a run that stops itself at `at` (a test hook of the engine),
/// waits until it says so, and kills it there with SIGKILL.
fn kill_at(data: &Path, lake: &str, at: &str, extra: &[&str]) {
    let mut child = aggregate(data, lake, extra)
        .env("SNOWLINK_AGGREGATE_PAUSE_AT", at)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(&format!("paused at {at}")) {
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run reached {at} and waits there: {seen}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGKILL during a batch's uploads, between the uploads and the commit,
/// and right after the commit: after a rerun, every event once. Uploaded
/// files no commit references are invisible, and vacuum deletes them.
#[test]
fn killed_at_each_step_of_a_commit_then_rerun_gives_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), lake_of(dir.path()));
    // Batches span three days: three files each.
    let args = ["--once", "--batch-size", "2000"];
    fill_spool(&data, 0..4_000);
    kill_at(&data, &lake, "upload", &args);
    assert!(
        lake_events(&lake, &[]).is_empty(),
        "an uncommitted upload is invisible"
    );
    kill_at(&data, &lake, "commit", &args);
    assert!(
        lake_events(&lake, &[]).is_empty(),
        "uploads without their commit are invisible"
    );
    let uploaded = count_parquet(&Path::new(&lake).join("clicks"));
    assert!(
        uploaded >= 4,
        "the killed runs left {uploaded} files behind"
    );
    kill_at(&data, &lake, "committed", &args);
    let visible = lake_events(&lake, &[]).len();
    assert!(
        visible > 0 && visible < 4_000,
        "the first batch is visible once committed, though its rows were never released: {visible}"
    );
    let spool = ClickSpool::open(snowlink_spool::path_in(&data)).unwrap();
    assert_eq!(spool.backlog().unwrap(), 4_000, "nothing was released");
    drop(spool);

    let summary = run_ok(&mut aggregate(&data, &lake, &args));
    assert!(
        summary.starts_with(&format!("aggregated {} events", 4_000 - visible)),
        "the committed batch is not written again: {summary}"
    );
    assert_exactly_once(&lake, &[], 0..4_000);
    assert_rollups_fresh(&lake, &[]);

    // Vacuum deletes what the killed runs uploaded, and nothing else.
    let out = run_ok(&mut aggregate(&data, &lake, &["vacuum", "--retain", "0s"]));
    assert!(out.starts_with("deleted "), "{out}");
    let deleted: usize = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(deleted >= uploaded, "{out}");
    assert_exactly_once(&lake, &[], 0..4_000);
}

/// Data files in a table's folder, committed or not (its Delta log's
/// checkpoints are not data).
fn count_parquet(table: &Path) -> usize {
    snowlink_testkit::files_under(table)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .filter(|p| !p.starts_with(table.join("_delta_log")))
        .count()
}

#[test]
fn tables_are_delta_partitioned_by_date_and_compaction_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), lake_of(dir.path()));
    const N: i64 = 9_000;
    fill_spool(&data, 0..N);
    run_ok(&mut aggregate(
        &data,
        &lake,
        &["--once", "--batch-size", "1000"],
    ));
    let root = Path::new(&lake);
    for table in ["clicks", "daily", "dims"] {
        assert!(
            root.join(table)
                .join("_delta_log/00000000000000000000.json")
                .is_file(),
            "{table} is a Delta table"
        );
    }
    let mut dates: Vec<String> = std::fs::read_dir(root.join("clicks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("date="))
        .collect();
    dates.sort();
    assert_eq!(
        dates,
        ["date=2026-11-20", "date=2026-11-21", "date=2026-11-22"]
    );
    assert_rollups_fresh(&lake, &[]);
    let before = count_parquet(&root.join("clicks"));
    assert!(before > 3, "several files per day before compaction");

    let out = run_ok(&mut aggregate(&data, &lake, &["compact"]));
    assert!(out.starts_with("compacted 3 days"), "{out}");
    assert_exactly_once(&lake, &[], 0..N);
    // Same clicks: the rollups are still fresh, not rebuilt.
    assert_rollups_fresh(&lake, &[]);
    let out = run_ok(&mut aggregate(&data, &lake, &["rollups"]));
    assert!(out.starts_with("rebuilt the rollups of 0 days"), "{out}");
    // Again: nothing to do.
    let out = run_ok(&mut aggregate(&data, &lake, &["compact"]));
    assert!(out.starts_with("compacted 0 days"), "{out}");

    // Late clicks for a complete day make its rollups stale, and the next
    // round rebuilds them.
    fill_spool(&data, N..N + 500);
    run_ok(&mut aggregate(&data, &lake, &["--once"]));
    assert_exactly_once(&lake, &[], 0..N + 500);
    assert_rollups_fresh(&lake, &[]);
}

#[test]
fn compaction_while_a_worker_appends_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lake) = (dir.path().join("data"), lake_of(dir.path()));
    fill_spool(&data, 0..6_000);
    run_ok(&mut aggregate(
        &data,
        &lake,
        &["--once", "--batch-size", "500"],
    ));
    fill_spool(&data, 6_000..40_000);
    let appender = aggregate(&data, &lake, &["--once", "--batch-size", "500"])
        .spawn()
        .unwrap();
    let mut compactions = 0;
    for _ in 0..3 {
        run_ok(&mut aggregate(&data, &lake, &["compact"]));
        compactions += 1;
    }
    let out = appender.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(compactions, 3);
    assert_exactly_once(&lake, &[], 0..40_000);
    assert_rollups_fresh(&lake, &[]);
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_of(dir.path());
    let out = aggregate(&dir.path().join("nope"), &lake, &["--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("does not exist"), "{err}");

    let out = aggregate(dir.path(), "gs://bucket/lake", &["--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown scheme \"gs\""), "{err}");

    let out = aggregate(dir.path(), &lake, &["--every", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Writes a lake of the layout before Delta tables: recorded click files
/// of a spool stream, one pre-ledger file without a stream, one file a
/// killed run wrote but never recorded, a stale rollup, and the ledger.
fn old_layout_lake(root: &Path) {
    use parquet::arrow::ArrowWriter;
    let write = |date: &str, name: &str, range: std::ops::Range<i64>| {
        let dir = root.join("clicks").join(format!("date={date}"));
        std::fs::create_dir_all(&dir).unwrap();
        let events: Vec<_> = range.map(event).collect();
        let batch = snowlink_events::arrow::to_record_batch(&events).unwrap();
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    };
    let name = |stream: Option<&str>, a: i64, b: i64| match stream {
        Some(s) => format!("clicks-{s}-{a:020}-{b:020}.parquet"),
        None => format!("clicks-{a:020}-{b:020}.parquet"),
    };
    write("2026-11-20", &name(None, 1, 100), 0..100);
    write("2026-11-20", &name(Some("spool.ab"), 101, 300), 100..300);
    write("2026-11-21", &name(Some("spool.ab"), 301, 500), 300..500);
    // Never recorded: at the ledger's position.
    write(
        "2026-11-21",
        &name(Some("spool.ab"), 501, 600),
        1_000..1_100,
    );
    std::fs::create_dir_all(root.join("daily/date=2026-11-20")).unwrap();
    std::fs::write(root.join("daily/date=2026-11-20/daily.parquet"), b"stale").unwrap();
    std::fs::create_dir_all(root.join("_ledger")).unwrap();
    let conn = rusqlite::Connection::open(root.join("_ledger/ledger.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE streams (stream TEXT PRIMARY KEY, next INTEGER NOT NULL);
         CREATE TABLE seen (stream TEXT NOT NULL, origin TEXT NOT NULL, max_seq INTEGER NOT NULL,
             PRIMARY KEY (stream, origin));
         CREATE TABLE dirty_days (day TEXT PRIMARY KEY);
         INSERT INTO streams VALUES ('spool.ab', 501);",
    )
    .unwrap();
}

#[test]
fn a_lake_of_the_old_layout_is_refused_then_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_of(dir.path());
    old_layout_lake(Path::new(&lake));
    fill_spool(&dir.path().join("data"), 0..10);
    let out = aggregate(&dir.path().join("data"), &lake, &["--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("snowlink-aggregate convert --lake"), "{err}");
    assert!(
        !Path::new(&lake).join("clicks/_delta_log").exists(),
        "nothing written on refusal"
    );

    let out = run_ok(&mut aggregate(dir.path(), &lake, &["convert"]));
    assert!(out.contains("3 click files (500 clicks)"), "{out}");
    assert!(out.contains("1 unrecorded files left out"), "{out}");
    assert_exactly_once(&lake, &[], 0..500);
    assert_rollups_fresh(&lake, &[]);
    // Converting again changes nothing.
    let out = run_ok(&mut aggregate(dir.path(), &lake, &["convert"]));
    assert!(out.contains("already converted"), "{out}");
    assert_exactly_once(&lake, &[], 0..500);
}
