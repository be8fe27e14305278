//! Real servers for integration tests: `redis-server`, Apache Kafka (KRaft,
//! one node) and Apache Cassandra (one node, the CQL engine the ScyllaDB
//! backend is tested against), each on free loopback ports with its own
//! temporary folder, stopped when dropped (and killed with the test process
//! if it dies, via `PR_SET_PDEATHSIG`).
//!
//! Kafka and Cassandra run from Maven Central jars that `scripts/engines
//! fetch` keeps in a cache outside the repository; `scripts/engines` also
//! writes their configuration and starts them, so tests, benches and
//! `scripts/stack` run the engines the same way.
//!
//! A test that needs one of these servers is `#[ignore]`d with the reason,
//! so plain `cargo test` reports it as ignored, never as passed; run with
//! `--include-ignored` (as `./scripts/test` does, after installing and
//! fetching everything), a missing server fails it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 and localhost
/// signed by it (`server.crt`, `server.key`) in `dir`, made with the
/// `openssl` command.
pub fn make_test_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=snowlink test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Writes to the process's stderr directly, past the harness's capture.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// `name` on `PATH` or in `~/.cargo/bin`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn missing(name: &str, test: &str, install: &str) -> Option<Server> {
    panic!(
        "{test} needs {name}, which is not installed ({install}; ./scripts/test does it). \
         Tests that need a server are #[ignore]d: plain `cargo test` leaves them out, \
         `cargo test -- --include-ignored` (as ./scripts/test runs it) needs the servers."
    )
}

/// The repository root (for `scripts/engines`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// `scripts/engines`, which fetches and runs Kafka and Cassandra.
pub fn engines_script() -> PathBuf {
    repo_root().join("scripts/engines")
}

/// Whether `scripts/engines fetch` has fetched `engine`.
fn engine_ready(engine: &str) -> bool {
    Command::new(engines_script())
        .args(["ready", engine])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A keyspace name no other test uses: `prefix` plus a random suffix.
pub fn unique_keyspace(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    format!("t_{clean}_{:012x}", rand_u64() & 0xffff_ffff_ffff)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A server process this test owns.
pub struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Longest wait for the port to answer after a start.
    ready_within: Duration,
    /// Extra environment of the process.
    env: Vec<(String, String)>,
}

/// The bucket of [`Server::s3`].
pub const S3_BUCKET: &str = "snowlink";
/// The access key of [`Server::s3`] (a test credential).
pub const S3_ACCESS_KEY: &str = "snowlink-test";
/// The secret key of [`Server::s3`] (a test credential).
pub const S3_SECRET_KEY: &str = "snowlink-test-secret";

impl Server {
    fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
        ready_within: Duration,
    ) -> Server {
        Server {
            name,
            program,
            args,
            port,
            dir,
            child: None,
            ready_within,
            env: Vec::new(),
        }
    }

    /// `redis-server` with no persistence, or `None` (and a message) if it is
    /// not installed and not required.
    pub fn redis(test: &str) -> Option<Server> {
        Self::redis_with(test, |_, _| Vec::new(), false)
    }

    /// `redis-server` that takes only TLS connections, with a certificate
    /// for 127.0.0.1 signed by a fresh CA ([`Server::redis_ca`]), and
    /// requires `password` (AUTH). Connect with [`Server::rediss_url`].
    pub fn redis_tls(test: &str, password: &str) -> Option<Server> {
        let password = password.to_owned();
        Self::redis_with(
            test,
            move |dir, port| {
                make_test_certificates(dir);
                let file = |n: &str| dir.join(n).display().to_string();
                vec![
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    file("server.crt"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.crt"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--requirepass".into(),
                    password.clone(),
                ]
            },
            true,
        )
    }

    fn redis_with(
        test: &str,
        extra: impl FnOnce(&Path, u16) -> Vec<String>,
        tls: bool,
    ) -> Option<Server> {
        let Some(program) = find_binary("redis-server") else {
            return missing("redis-server", test, "apt-get install redis-server");
        };
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let plain_port = if tls { 0 } else { port };
        let mut args = extra(dir.path(), port);
        args.extend([
            "--port".into(),
            plain_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ]);
        let mut server = Server::new(
            "redis-server",
            program,
            args,
            port,
            dir,
            Duration::from_secs(30),
        );
        server.start();
        Some(server)
    }

    /// An Apache Kafka broker (KRaft, broker and controller in one node)
    /// keeping its log in its folder, so topics and messages survive
    /// [`Server::kill`] and [`Server::start`].
    pub fn kafka(test: &str) -> Option<Server> {
        if !engine_ready("kafka") {
            return missing("Apache Kafka", test, "scripts/engines fetch");
        }
        let port = free_port();
        let controller = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "kafka".into(),
            dir.path().join("kafka").display().to_string(),
            port.to_string(),
            controller.to_string(),
        ];
        let mut server = Server::new(
            "kafka",
            engines_script(),
            args,
            port,
            dir,
            Duration::from_secs(90),
        );
        server.start();
        Some(server)
    }

    /// An Apache Cassandra node of this test's own (for tests that kill it).
    /// Tests that only need a CQL database share [`shared_cassandra`].
    pub fn cassandra(test: &str) -> Option<Server> {
        if !engine_ready("cassandra") {
            return missing("Apache Cassandra", test, "scripts/engines fetch");
        }
        let port = free_port();
        let storage = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "cassandra".into(),
            dir.path().join("cassandra").display().to_string(),
            port.to_string(),
            storage.to_string(),
        ];
        let mut server = Server::new(
            "cassandra",
            engines_script(),
            args,
            port,
            dir,
            Duration::from_secs(180),
        );
        server.start();
        Some(server)
    }

    /// An S3-compatible server (versitygw on a folder) with one bucket,
    /// [`S3_BUCKET`], keys [`S3_ACCESS_KEY`] and [`S3_SECRET_KEY`]. Objects
    /// survive [`Server::kill`] and [`Server::start`].
    pub fn s3(test: &str) -> Option<Server> {
        if !engine_ready("s3") {
            return missing("versitygw (S3)", test, "scripts/engines fetch");
        }
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "s3".into(),
            dir.path().join("s3").display().to_string(),
            port.to_string(),
            S3_BUCKET.into(),
        ];
        let mut server = Server::new(
            "versitygw",
            engines_script(),
            args,
            port,
            dir,
            Duration::from_secs(30),
        );
        server.env = vec![
            ("S3_ACCESS_KEY".into(), S3_ACCESS_KEY.into()),
            ("S3_SECRET_KEY".into(), S3_SECRET_KEY.into()),
        ];
        server.start();
        Some(server)
    }

    /// moto's S3 server (4.2, in memory, any credentials), which predates
    /// conditional writes: it overwrites an object written with
    /// `If-None-Match: *`. A lake must refuse it. Its bucket
    /// [`S3_BUCKET`] is created.
    pub fn s3_overwriting(test: &str) -> Option<Server> {
        if !engine_ready("moto") {
            return missing("moto (S3)", test, "scripts/engines fetch");
        }
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server::new(
            "moto",
            engines_script(),
            vec!["moto".into(), port.to_string()],
            port,
            dir,
            Duration::from_secs(30),
        );
        server.start();
        let answer = server.s3_plain_request("PUT", &format!("/{S3_BUCKET}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating the bucket: {answer}"
        );
        Some(server)
    }

    /// One unsigned request to an S3 server that takes them (moto): the
    /// whole answer.
    pub fn s3_plain_request(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("read");
        answer
    }

    /// The S3 endpoint of [`Server::s3`].
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a lake client needs for [`Server::s3`]: the AWS
    /// variables, path-style through the endpoint.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.s3_endpoint()),
        ]
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS URL of a [`Server::redis_tls`], with its password.
    pub fn rediss_url(&self, password: &str) -> String {
        format!("rediss://:{password}@127.0.0.1:{}", self.port)
    }

    /// The CA certificate (PEM) that signed a [`Server::redis_tls`]'s.
    pub fn redis_ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers` or CQL `known_nodes`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` of a CQL node.
    pub fn cql_node(&self) -> String {
        self.bootstrap()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (again, on the same ports and folder) and waits
    /// until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        #[cfg(target_os = "linux")]
        // SAFETY: the hook runs in the child before exec and only calls
        // prctl, which touches no state shared with the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // Die with the thread that started it, however it ends.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + self.ready_within;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "{} exited with {status} before listening; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within {:?}; log:\n{}",
                self.name,
                self.port,
                self.ready_within,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL: no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM, as an operator would, and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill only sends a signal to a process this one started.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last 60 lines of the log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Creates a Kafka topic (one replica) and waits until the broker knows
    /// its leaders.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(&self.bootstrap(), name, partitions);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates `name` with `partitions` partitions on the Kafka at `bootstrap`
/// (an existing topic is fine) and waits until every partition has a leader.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a kafka admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
        .expect("create_topics answered");
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("creating topic {t}: {e}"),
        }
    }
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a kafka client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = consumer
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics().iter().find(|t| t.name() == name).map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} has no leaders after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One Cassandra node for the whole test binary, started on first use and
/// killed when the binary exits. Give each test its own keyspace
/// ([`unique_keyspace`]). `None` (and a message) when Cassandra is not
/// fetched and not required.
pub fn shared_cassandra(test: &str) -> Option<&'static Server> {
    static NODE: OnceLock<Option<&'static Server>> = OnceLock::new();
    let node = NODE.get_or_init(|| {
        // The parent-death signal fires when the *thread* that started the
        // process ends, so a long-lived thread starts it and then parks.
        let (tx, rx) = std::sync::mpsc::channel();
        let test = test.to_owned();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| Server::cassandra(&test));
            match result {
                Ok(server) => {
                    let _ = tx.send(Ok(server.map(|s| &*Box::leak(Box::new(s)))));
                }
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let _ = tx.send(Err(msg));
                }
            }
            loop {
                std::thread::park();
            }
        });
        match rx.recv().expect("the cassandra starter answers") {
            Ok(server) => server,
            Err(msg) => panic!("starting the shared cassandra: {msg}"),
        }
    });
    if node.is_none() {
        say(&format!(
            "SKIPPED {test}: Apache Cassandra is not fetched (scripts/engines fetch)"
        ));
    }
    *node
}

/// Produces click events to `topic` the way the service's forwarder does:
/// one JSON event per message, keyed by code, with the spool id and the
/// sequence number as its origin. `items` are `(seq, event)`. Waits until
/// every message is acknowledged.
pub fn produce_clicks(
    bootstrap: &str,
    topic: &str,
    spool: &str,
    items: impl IntoIterator<Item = (i64, snowlink_events::ClickEvent)>,
) {
    use snowlink_events::kafka;
    produce_raw(
        bootstrap,
        topic,
        items.into_iter().map(|(seq, event)| {
            let origin = kafka::Origin {
                spool: spool.to_owned(),
                seq,
            };
            RawMessage {
                payload: kafka::message(event.as_ref(), Some(&origin)),
                key: event.code,
            }
        }),
    );
}

/// One message as anyone with write access to the topic could send it.
pub struct RawMessage {
    pub key: String,
    pub payload: Vec<u8>,
}

/// Produces `messages` in order and waits until every one is acknowledged.
pub fn produce_raw(bootstrap: &str, topic: &str, messages: impl IntoIterator<Item = RawMessage>) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .expect("a kafka producer");
    for m in messages {
        let mut record = BaseRecord::to(topic)
            .key(m.key.as_str())
            .payload(m.payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(600))
        .expect("every message acknowledged");
}

/// Runs a Python script that uses the independent readers (pyarrow, duckdb,
/// confluent-kafka) and returns its standard output. When Python or a
/// module is missing, says so and returns `None`, unless `./scripts/test`
/// (which installs them) set `SNOWLINK_REQUIRE_PY_READERS`: then it fails.
pub fn python_readers(script: &str, args: &[&str]) -> Option<String> {
    python_readers_env(script, args, &[])
}

/// [`python_readers`] with extra environment.
pub fn python_readers_env(script: &str, args: &[&str], env: &[(String, String)]) -> Option<String> {
    let required = std::env::var_os("SNOWLINK_REQUIRE_PY_READERS").is_some();
    match Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
    {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8(out.stdout).expect("UTF-8 output"))
        }
        Ok(out)
            if !required
                && String::from_utf8_lossy(&out.stderr).contains("ModuleNotFoundError") =>
        {
            say("skipped: pyarrow, duckdb, deltalake or confluent-kafka is not installed (scripts/test installs them)");
            None
        }
        Ok(out) => panic!(
            "the independent reader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if !required => {
            say(&format!("skipped: no python3 ({e})"));
            None
        }
        Err(e) => panic!("python3: {e}"),
    }
}

/// Every click event in `topic`, as Kafka's own client library sees it
/// (confluent-kafka, `read_committed`, from the beginning of every
/// partition to its end): `(event_id, code)` per message, repeats included.
pub fn topic_clicks_read_independently(bootstrap: &str, topic: &str) -> Option<Vec<(i64, String)>> {
    const SCRIPT: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
bootstrap, topic = sys.argv[1], sys.argv[2]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "independent-reader",
              "enable.auto.commit": False, "isolation.level": "read_committed",
              "enable.partition.eof": True})
parts = list(c.list_topics(topic, timeout=30).topics[topic].partitions)
c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
done, deadline = set(), time.time() + 120
while len(done) < len(parts):
    assert time.time() < deadline, "timed out reading the topic"
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF:
            done.add(m.partition())
            continue
        raise Exception(m.error())
    e = json.loads(m.value())
    print(e["event_id"], e["code"])
c.close()
"#;
    let out = python_readers(SCRIPT, &[bootstrap, topic])?;
    Some(
        out.lines()
            .map(|l| {
                let (id, code) = l.split_once(' ').expect("event_id code");
                (id.parse().expect("an event id"), code.to_owned())
            })
            .collect(),
    )
}

/// Every click of a Delta lake as readers nobody here wrote see it:
/// `(event_id, code)` per row from Python's `deltalake`, and the row count
/// DuckDB finds in the files the Delta log lists (read through pyarrow's
/// S3 filesystem when the lake is on S3). `env` holds the S3 settings
/// ([`Server::s3_env`]), if any.
pub fn delta_clicks_read_independently(
    lake_uri: &str,
    env: &[(String, String)],
) -> Option<(Vec<(i64, String)>, u64)> {
    const SCRIPT: &str = r#"
import os, sys
import duckdb, pyarrow.dataset as ds, pyarrow.fs as pafs
from deltalake import DeltaTable
uri = sys.argv[1].rstrip("/") + "/clicks"
opts = {}
fs = None
if uri.startswith("s3://"):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    opts = {"AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "AWS_REGION": os.environ["AWS_REGION"], "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    fs = pafs.S3FileSystem(access_key=opts["AWS_ACCESS_KEY_ID"], secret_key=opts["AWS_SECRET_ACCESS_KEY"],
                           endpoint_override=endpoint, scheme="http", region=opts["AWS_REGION"])
dt = DeltaTable(uri, storage_options=opts)
t = dt.to_pyarrow_table(columns=["event_id", "code"])
files = dt.file_uris()
if fs is not None:
    files = [f[len("s3://"):] for f in files]
arrow = ds.dataset(files, format="parquet", filesystem=fs).to_table(columns=["event_id"])
n = duckdb.sql("SELECT COUNT(*) FROM arrow").fetchall()[0][0] if files else 0
print(n)
for i, c in zip(t.column("event_id").to_pylist(), t.column("code").to_pylist()):
    print(i, c)
"#;
    let out = python_readers_env(SCRIPT, &[lake_uri], env)?;
    let mut lines = out.lines();
    let duckdb_rows = lines
        .next()
        .expect("duckdb count")
        .parse()
        .expect("a count");
    let rows = lines
        .map(|l| {
            let (id, code) = l.split_once(' ').expect("event_id code");
            (id.parse().expect("an event id"), code.to_owned())
        })
        .collect();
    Some((rows, duckdb_rows))
}

/// Every file below `dir`, at any depth (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
