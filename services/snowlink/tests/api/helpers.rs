use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use reqwest::{Client, Response};
use serde_json::{json, Value};
use snowlink::configuration::{LogFormat, Settings};
use snowlink::startup::Application;
use snowlink_store::{LinkStore, SqliteStore};
use tempfile::TempDir;

static LOGS: Once = Once::new();

/// Public URL the test apps believe they serve; links to it are refused.
pub const PUBLIC_URL: &str = "http://sho.rt.test";

/// The service, running on its own thread and runtime over a temporary
/// data directory. Dropping it stops the service, waits until every part
/// has stopped (the spooler has drained, the id fence is released), and
/// only then removes the directory.
pub struct TestApp {
    pub address: String,
    pub api_key: String,
    pub client: Client,
    pub data_dir: PathBuf,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The stop is sent now; the service's own runtime carries it out.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.base.data_dir = dir.to_path_buf();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.http.public_url = PUBLIC_URL.parse().unwrap();
    s.http.workers = Some(2);
    // Tests that make thousands of requests with one key are not about the
    // rate limit; those that are set their own.
    s.http.key_rate_limit = 1_000_000;
    s
}

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Creates an API key straight in the database, as `snowlink keys create` does.
pub async fn create_key(data_dir: &std::path::Path, name: &str) -> String {
    create_key_with(data_dir, snowlink::keys::KeySpec::named(name)).await
}

pub async fn create_key_with(data_dir: &std::path::Path, spec: snowlink::keys::KeySpec) -> String {
    let store = SqliteStore::open(data_dir.join("links.db")).unwrap();
    let (key, record) = snowlink::keys::mint_key(&spec, snowlink::now_ms());
    store.create_api_key(&record).await.unwrap();
    key
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            snowlink::telemetry::init(LogFormat::Pretty, "info");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    let (started, built) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Application::build(settings).await.expect("app builds");
            started.send((app.port(), app.handle())).unwrap();
            let _ = app.run_until_stopped().await;
        });
    });
    let (port, handle) = built.recv().expect("the app starts");
    let api_key = create_key(dir.path(), "test").await;
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        api_key,
        client: client(),
        data_dir: dir.path().to_path_buf(),
        handle,
        thread: Some(thread),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_link(&self, body: &Value) -> Response {
        self.client
            .post(format!("{}/api/v1/links", self.address))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a link that must succeed; returns the response body.
    pub async fn create(&self, url: &str) -> Value {
        let r = self.post_link(&json!({ "url": url })).await;
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn get_link(&self, code: &str) -> Response {
        self.client
            .get(format!("{}/api/v1/links/{code}", self.address))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_link(&self, code: &str) -> Response {
        self.client
            .delete(format!("{}/api/v1/links/{code}", self.address))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap()
    }

    /// A request to `/api/v1{path}` with `key`.
    pub fn api(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1{path}", self.address))
            .bearer_auth(key)
    }

    pub async fn follow(&self, code: &str) -> Response {
        self.client
            .get(format!("{}/{code}", self.address))
            .send()
            .await
            .unwrap()
    }
}

/// The `/metrics` text of the service at `base` (`http://host:port`).
pub async fn metrics_text(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (metric name and labels exactly as
/// exposed) in a `/metrics` text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Asserts the JSON error body and its machine code.
pub async fn assert_error(response: Response, status: u16, code: &str) {
    assert_eq!(response.status(), status, "status for expected {code}");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message present: {body}"
    );
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

#[allow(dead_code)]
pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

/// The `snowlink` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_snowlink");

/// `snowlink serve` on `port` over `data_dir`, with `extra` flags.
pub fn serve_with(data_dir: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("SNOWLINK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("snowlink starts")
}

/// Waits until `address` answers `/readyz` with 200, at most 30 s.
pub async fn wait_ready(address: &str) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{address}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "service did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key made by `snowlink keys create`, as a user makes one: only the key
/// is printed on standard output.
pub fn create_key_cli(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create", "--name", "crash"])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key.trim().to_owned();
    assert!(
        key.starts_with("sl_") && !key.contains('\n'),
        "only the key on stdout"
    );
    key
}
