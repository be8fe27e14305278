//! Several real `snowlink-aggregate` workers sharing a Kafka topic (four
//! partitions, one consumer group) and writing one lake on an S3 server
//! (versitygw), killed, paused and joined mid-run, the S3 server killed
//! mid-run: every click counted exactly once, as Python's `deltalake` and
//! DuckDB read it back from S3.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use snowlink_testkit::Server;

const LAKE: &str = "s3://snowlink/lake";
const TOPIC: &str = "clicks";

/// Kafka with the four-partition topic, and the S3 server; `None` when the
/// engines are missing and not required.
fn engines(test: &str) -> Option<(Server, Server)> {
    let kafka = Server::kafka(test)?;
    kafka.create_topic(TOPIC, 4);
    let s3 = Server::s3(test)?;
    Some((kafka, s3))
}

/// Events `range` into the topic, each once, from one forwarding spool.
fn produce(kafka: &Server, range: std::ops::Range<i64>) {
    snowlink_testkit::produce_clicks(
        &kafka.bootstrap(),
        TOPIC,
        "00000000000000aa",
        range.map(|i| (i + 1, event(i))),
    );
}

/// A long-running worker of the group, logging to a file.
struct Worker {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(kafka: &Server, s3: &Server, name: &str, env: &[(&str, &str)]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["--kafka-brokers", &kafka.bootstrap()])
            .args(["--group", "lake-workers", "--topic", TOPIC])
            .args(["--lake", LAKE])
            .args(["--every", "2s", "--session-timeout", "6s"])
            .args(["--batch-size", "3000", "--batch-wait", "300ms"])
            .envs(s3.s3_env())
            .env("SNOWLINK_LOG", "snowlink_aggregate=info,warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Worker {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to a child this test started.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then a wait for the exit.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "a worker did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the lake holds at least `n` clicks; fails on more than
/// `max`, or after `within`.
fn wait_for_clicks(s3: &Server, n: usize, max: usize, within: Duration, workers: &[&Worker]) {
    let deadline = Instant::now() + within;
    let logs = || {
        workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    loop {
        let have = lake_events(LAKE, &s3.s3_env()).len();
        assert!(
            have <= max,
            "{have} clicks in the lake, more than the {max} sent; logs:\n{}",
            logs()
        );
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {n} clicks after {within:?}; logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs Apache Kafka, versitygw (S3): ./scripts/test runs it"]
fn workers_joining_leaving_and_killed_count_every_click_once() {
    let Some((kafka, s3)) = engines("workers_joining_leaving_and_killed_count_every_click_once")
    else {
        return;
    };
    produce(&kafka, 0..20_000);
    let w1 = Worker::start(&kafka, &s3, "w1", &[]);
    let w2 = Worker::start(&kafka, &s3, "w2", &[]);
    wait_for_clicks(&s3, 3_000, 20_000, Duration::from_secs(120), &[&w1, &w2]);
    // A third joins while the first two work.
    let w3 = Worker::start(&kafka, &s3, "w3", &[]);
    produce(&kafka, 20_000..40_000);
    std::thread::sleep(Duration::from_secs(3));
    // The first dies without a word, and another joins.
    w1.kill();
    let w4 = Worker::start(&kafka, &s3, "w4", &[]);
    produce(&kafka, 40_000..60_000);
    wait_for_clicks(
        &s3,
        60_000,
        60_000,
        Duration::from_secs(240),
        &[&w2, &w3, &w4],
    );
    let logs: Vec<String> = [w2, w3, w4].into_iter().map(Worker::stop).collect();
    let committed = logs
        .iter()
        .filter(|l| l.contains("partitions assigned"))
        .count();
    assert!(committed >= 2, "several workers held partitions: {logs:?}");
    assert_exactly_once(LAKE, &s3.s3_env(), 0..60_000);
    assert_rollups_fresh(LAKE, &s3.s3_env());
}

/// A worker stopped (SIGSTOP) between its uploads and its commit for longer
/// than the session timeout loses its partitions; another worker commits
/// them; resumed (SIGCONT), its late commit is refused and nothing is
/// doubled.
#[test]
#[ignore = "needs Apache Kafka, versitygw (S3): ./scripts/test runs it"]
fn a_paused_worker_is_refused_and_nothing_is_doubled() {
    let Some((kafka, s3)) = engines("a_paused_worker_is_refused_and_nothing_is_doubled") else {
        return;
    };
    produce(&kafka, 0..12_000);
    let sleeper = Worker::start(
        &kafka,
        &s3,
        "sleeper",
        &[("SNOWLINK_AGGREGATE_STOP_AT", "commit")],
    );
    // It stops itself at its first commit, files uploaded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sleeper.log().contains("stopping at commit") {
        assert!(Instant::now() < deadline, "{}", sleeper.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let other = Worker::start(&kafka, &s3, "other", &[]);
    // Longer than the session timeout: the other takes every partition and
    // commits all of them, the sleeper's uploaded batch included.
    wait_for_clicks(
        &s3,
        12_000,
        12_000,
        Duration::from_secs(180),
        &[&other, &sleeper],
    );
    sleeper.signal(libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sleeper.log().contains("commit refused") {
        assert!(
            Instant::now() < deadline,
            "the late commit was not refused: {}",
            sleeper.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        lake_events(LAKE, &s3.s3_env()).len(),
        12_000,
        "nothing doubled"
    );
    // Both work on afterwards.
    produce(&kafka, 12_000..15_000);
    wait_for_clicks(
        &s3,
        15_000,
        15_000,
        Duration::from_secs(180),
        &[&other, &sleeper],
    );
    let _ = other.stop();
    let _ = sleeper.stop();
    assert_exactly_once(LAKE, &s3.s3_env(), 0..15_000);
}

/// The S3 server killed mid-run and started again: the workers say what is
/// wrong meanwhile, then resume with nothing lost or doubled.
#[test]
#[ignore = "needs Apache Kafka, versitygw (S3): ./scripts/test runs it"]
fn the_s3_server_lost_mid_run_loses_and_doubles_nothing() {
    let Some((kafka, mut s3)) = engines("the_s3_server_lost_mid_run_loses_and_doubles_nothing")
    else {
        return;
    };
    produce(&kafka, 0..20_000);
    let w1 = Worker::start(&kafka, &s3, "w1", &[]);
    let w2 = Worker::start(&kafka, &s3, "w2", &[]);
    wait_for_clicks(&s3, 2_000, 20_000, Duration::from_secs(120), &[&w1, &w2]);
    s3.kill();
    produce(&kafka, 20_000..30_000);
    std::thread::sleep(Duration::from_secs(25));
    let said = format!("{}{}", w1.log(), w2.log());
    assert!(
        said.contains("the storage server cannot be reached"),
        "the workers say what is wrong: {said}"
    );
    s3.start();
    wait_for_clicks(&s3, 30_000, 30_000, Duration::from_secs(240), &[&w1, &w2]);
    let _ = w1.stop();
    let _ = w2.stop();
    assert_exactly_once(LAKE, &s3.s3_env(), 0..30_000);
}

/// Compaction while workers append: one optimize commit per day, no click
/// lost or doubled.
#[test]
#[ignore = "needs Apache Kafka, versitygw (S3): ./scripts/test runs it"]
fn compaction_on_s3_while_workers_append() {
    let Some((kafka, s3)) = engines("compaction_on_s3_while_workers_append") else {
        return;
    };
    produce(&kafka, 0..30_000);
    let w1 = Worker::start(&kafka, &s3, "w1", &[]);
    let w2 = Worker::start(&kafka, &s3, "w2", &[]);
    wait_for_clicks(&s3, 3_000, 30_000, Duration::from_secs(120), &[&w1, &w2]);
    for _ in 0..3 {
        let out = Command::new(BIN)
            .args(["compact", "--lake", LAKE])
            .envs(s3.s3_env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for_clicks(&s3, 30_000, 30_000, Duration::from_secs(240), &[&w1, &w2]);
    let _ = w1.stop();
    let _ = w2.stop();
    assert_exactly_once(LAKE, &s3.s3_env(), 0..30_000);
}

/// Bad S3 settings: a clear error naming the problem, a non-zero exit,
/// nothing written, and never the secret key.
#[test]
#[ignore = "needs versitygw (S3): ./scripts/test runs it"]
fn bad_s3_settings_are_clear_errors() {
    let Some(s3) = Server::s3("bad_s3_settings_are_clear_errors") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    fill_spool(dir.path(), 0..10);
    let run = |lake: &str, env: Vec<(String, String)>| {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--lake", lake, "--once"])
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{lake} must fail");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run("s3://no-such-bucket/lake", s3.s3_env());
    assert!(err.contains("the bucket does not exist"), "{err}");
    let mut wrong = s3.s3_env();
    wrong[1].1 = "not-the-secret".into();
    let err = run(LAKE, wrong);
    assert!(err.contains("the credentials were refused"), "{err}");
    assert!(
        !err.contains("not-the-secret"),
        "the secret is never printed: {err}"
    );
    let err = run("ftp://host/lake", s3.s3_env());
    assert!(err.contains("unknown scheme"), "{err}");
    let bucket = s3.dir().join("s3/root/snowlink");
    let written: Vec<_> = snowlink_testkit::files_under(&bucket);
    assert!(written.is_empty(), "nothing written: {written:?}");
    // The spool still holds every click.
    let spool = snowlink_spool::ClickSpool::open(snowlink_spool::path_in(dir.path())).unwrap();
    assert_eq!(spool.backlog().unwrap(), 10);
}

/// A server that overwrites an object written with `If-None-Match: *`
/// (moto 4.2, from before S3 had conditional writes) would let two
/// workers commit the same version: the worker refuses it at start, says
/// why, writes nothing and keeps the spool.
#[test]
#[ignore = "needs moto (S3): ./scripts/test runs it"]
fn a_server_that_overwrites_conditional_writes_is_refused() {
    let Some(s3) = Server::s3_overwriting("a_server_that_overwrites_conditional_writes_is_refused")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    fill_spool(dir.path(), 0..10);
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--lake", LAKE, "--once"])
        .envs(s3.s3_env())
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "must fail: {err}");
    assert!(
        err.contains("overwrote an object written with If-None-Match: *"),
        "{err}"
    );
    let listing = s3.s3_plain_request("GET", "/snowlink?list-type=2");
    assert!(listing.starts_with("HTTP/1.1 200"), "{listing}");
    assert!(!listing.contains("<Key>"), "nothing written: {listing}");
    let spool = snowlink_spool::ClickSpool::open(snowlink_spool::path_in(dir.path())).unwrap();
    assert_eq!(spool.backlog().unwrap(), 10);
}
