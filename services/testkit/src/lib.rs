//! Real servers for integration tests: `redis-server` and the `tansu`
//! Kafka-compatible broker, each on a free loopback port with its own
//! temporary folder, stopped when dropped (and killed with the test process
//! if it dies, via `PR_SET_PDEATHSIG`).
//!
//! `./scripts/test` installs both and sets `SNOWLINK_REQUIRE_SERVERS=1`: a
//! missing binary then fails the test. Run alone (plain `cargo test`), a test
//! whose server is missing says so and passes without checking anything.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether a missing server must fail the test (set by `./scripts/test`).
pub fn servers_required() -> bool {
    std::env::var("SNOWLINK_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
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
    if servers_required() {
        panic!("{name} is required (SNOWLINK_REQUIRE_SERVERS=1) but not installed: {install}");
    }
    say(&format!(
        "SKIPPED {test}: {name} is not installed ({install}; ./scripts/test does it)"
    ));
    None
}

/// A server process this test owns.
pub struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// `redis-server` with no persistence, or `None` (and a message) if it is
    /// not installed and not required.
    pub fn redis(test: &str) -> Option<Server> {
        let Some(program) = find_binary("redis-server") else {
            return missing("redis-server", test, "apt-get install redis-server");
        };
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        let mut server = Server {
            name: "redis-server",
            program,
            args,
            port,
            dir,
            child: None,
        };
        server.start();
        Some(server)
    }

    /// A `tansu` broker keeping its data in a SQLite file in its folder, so
    /// topics and messages survive [`Server::stop`] and [`Server::start`].
    pub fn tansu(test: &str) -> Option<Server> {
        let Some(program) = find_binary("tansu") else {
            return missing(
                "tansu",
                test,
                "cargo install tansu --locked --features dynostore,libsql",
            );
        };
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("tcp://127.0.0.1:{port}");
        let args = vec![
            "broker".into(),
            "--listener-url".into(),
            url.clone(),
            "--advertised-listener-url".into(),
            url,
            "--storage-engine".into(),
            "sqlite://kafka.db".into(),
        ];
        let mut server = Server {
            name: "tansu",
            program,
            args,
            port,
            dir,
            child: None,
        };
        server.start();
        Some(server)
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

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process (again, on the same port and folder) and waits
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
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // Die with the test process, however it ends.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} before listening; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within 30 s; log:\n{}",
                self.name,
                self.port,
                self.log()
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
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
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

    /// Creates a topic with `tansu topic create`.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.program)
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                &partitions.to_string(),
            ])
            .current_dir(self.dir.path())
            .output()
            .expect("running tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Produces click events to `topic` the way the service's forwarder does:
/// one JSON event per message, keyed by code, with the spool id and the
/// sequence number as headers. `items` are `(seq, event)`. Waits until every
/// message is acknowledged.
pub fn produce_clicks(
    bootstrap: &str,
    topic: &str,
    spool: &str,
    items: impl IntoIterator<Item = (i64, snowlink_events::ClickEvent)>,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .expect("a kafka producer");
    for (seq, event) in items {
        let json = event.to_json();
        let seq = seq.to_string();
        let mut record = BaseRecord::to(topic)
            .key(event.code.as_str())
            .payload(json.as_str())
            .headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: snowlink_events::kafka::HEADER_SPOOL,
                        value: Some(spool),
                    })
                    .insert(Header {
                        key: snowlink_events::kafka::HEADER_SEQ,
                        value: Some(seq.as_str()),
                    }),
            );
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
