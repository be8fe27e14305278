//! Findings of the security review, each shown against the real app or the
//! real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use snowlink_testkit::free_port;

use crate::helpers::{assert_error, spawn_app_with};
use crate::helpers::{create_key_cli as create_key, wait_ready};

const BIN: &str = env!("CARGO_BIN_EXE_snowlink");

fn get_with(app: &crate::helpers::TestApp, key: &str, client_ip: &str) -> reqwest::RequestBuilder {
    app.api(Method::GET, "/links", key)
        .header("X-Forwarded-For", client_ip)
}

/// Behind a proxy, failed keys are counted per client, and a key that exists
/// is never refused: one noisy client locks out nobody.
#[tokio::test]
async fn bad_keys_behind_a_proxy_lock_out_nobody_else() {
    let app = spawn_app_with(|s| {
        s.http.auth_failures_per_minute = 5;
        s.http.client_ip_header = Some("X-Forwarded-For".into());
    })
    .await;
    for _ in 0..5 {
        let r = get_with(&app, "sl_guess", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = get_with(&app, "sl_guess", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_error(r, 429, "rate_limited").await;
    // Another client behind the same proxy: its bad keys are its own count.
    let r = get_with(&app, "sl_guess", "198.51.100.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A valid key never used before works from another client...
    let r = get_with(&app, &app.api_key, "198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ...and even from the noisy one, long after its last success.
    let second = crate::helpers::create_key(&app.data_dir, "second").await;
    let r = get_with(&app, &second, "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An unknown key from the noisy client is still refused with 429.
    let r = get_with(&app, "sl_other_guess", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_error(r, 429, "rate_limited").await;
}

/// No client address reaches the logs, at any level, whether it came from
/// the peer or from the trusted header.
#[tokio::test]
async fn rejected_keys_leave_no_client_address_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let key = create_key(dir.path());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--client-ip-header", "X-Forwarded-For"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("SNOWLINK_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    wait_ready(&address).await;
    // The client connects from 127.0.0.3, an address nothing else prints.
    let http = reqwest::Client::builder()
        .local_address(Some("127.0.0.3".parse().unwrap()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (k, ip) in [
        ("sl_bad", "203.0.113.77"),
        ("sl_bad", "203.0.113.78"),
        (&key[..], "203.0.113.79"),
    ] {
        http.get(format!("{address}/api/v1/links"))
            .bearer_auth(k)
            .header("X-Forwarded-For", ip)
            .send()
            .await
            .unwrap();
    }
    let r = http
        .post(format!("{address}/api/v1/links"))
        .bearer_auth(&key)
        .header("X-Forwarded-For", "203.0.113.80")
        .json(&json!({"url": "https://example.com/logged"}))
        .send()
        .await
        .unwrap();
    let code = r.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    http.get(format!("{address}/{code}"))
        .header("X-Forwarded-For", "203.0.113.81")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("rejected API key"),
        "the rejection is logged: {text}"
    );
    for ip in ["127.0.0.3", "203.0.113."] {
        assert!(!text.contains(ip), "{ip} in the logs:\n{text}");
    }
}

/// Userinfo is refused; what is stored and served is the normalised URL, so
/// every parser downstream sees the host that was checked.
#[tokio::test]
async fn targets_are_normalised_and_userinfo_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    for url in [
        "https://paypal.com@evil.example/",
        "https://user:pass@example.com/",
        "http://x@sho.rt.test/",
    ] {
        let r = app.post_link(&json!({ "url": url })).await;
        assert_error(r, 400, "url_has_userinfo").await;
    }
    let link = app.create("https://good.example\\@evil.example/").await;
    assert_eq!(link["url"], "https://good.example/@evil.example/");
    let r = app.follow(link["code"].as_str().unwrap()).await;
    assert_eq!(
        crate::helpers::location(&r),
        "https://good.example/@evil.example/"
    );
    let link = app.create("HTTPS://Example.COM:443/a/./b").await;
    assert_eq!(link["url"], "https://example.com/a/b");
    // An edit is held to the same rules.
    let code = link["code"].as_str().unwrap();
    let r = app
        .api(Method::PATCH, &format!("/links/{code}"), &app.api_key)
        .json(&json!({"url": "https://a@b.example/"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "url_has_userinfo").await;
}

/// Every spelling of this service and of internal hosts is refused by
/// default; a setting lists other own names, another allows private targets.
#[tokio::test]
async fn own_and_internal_hosts_are_refused_in_every_spelling() {
    let app = spawn_app_with(|s| {
        s.targets.own_hosts = vec!["go.example.org".into(), "203.0.113.10:8080".into()];
    })
    .await;
    for (url, code) in [
        ("https://go.example.org/abc", "url_points_to_self"),
        ("https://GO.example.org./abc", "url_points_to_self"),
        ("http://203.0.113.10:8080/x", "url_points_to_self"),
        ("http://3405803786:8080/x", "url_points_to_self"),
        ("http://[::ffff:203.0.113.10]:8080/x", "url_points_to_self"),
        ("http://localhost:8080/x", "url_target_not_allowed"),
        ("http://127.0.0.1/x", "url_target_not_allowed"),
        ("http://2130706433/x", "url_target_not_allowed"),
        ("http://0x7f.1/x", "url_target_not_allowed"),
        ("http://[::ffff:127.0.0.1]/x", "url_target_not_allowed"),
        ("http://[::1]/x", "url_target_not_allowed"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "url_target_not_allowed",
        ),
        ("http://10.0.0.8/x", "url_target_not_allowed"),
        ("http://192.168.0.1/x", "url_target_not_allowed"),
    ] {
        let r = app.post_link(&json!({ "url": url })).await;
        assert_error(r, 400, code).await;
    }
    // Another port of an own host given with a port is another service.
    app.create("http://203.0.113.10:9090/x").await;
    let open = spawn_app_with(|s| s.targets.allow_private_targets = true).await;
    open.create("http://10.0.0.8/x").await;
    let r = open
        .post_link(&json!({"url": "http://sho.rt.test/x"}))
        .await;
    assert_error(r, 400, "url_points_to_self").await;
}

/// A blocklist file, reloaded when it changes, with suffix matching.
#[tokio::test]
async fn blocked_hosts_are_refused_and_their_links_stop_redirecting() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "# phishing\nphish.example\n").unwrap();
    let path = list.clone();
    let app = spawn_app_with(move |s| s.targets.blocklist = Some(path)).await;
    for url in ["https://phish.example/", "https://login.PHISH.example./x"] {
        let r = app.post_link(&json!({ "url": url })).await;
        assert_error(r, 400, "url_blocked").await;
    }
    let fine = app.create("https://later-bad.example/page").await;
    let code = fine["code"].as_str().unwrap();
    assert_eq!(app.follow(code).await.status(), 302);
    let other = app.create("https://fine.example/").await;
    let r = app
        .api(
            Method::PATCH,
            &format!("/links/{}", other["code"].as_str().unwrap()),
            &app.api_key,
        )
        .json(&json!({"url": "https://www.phish.example/"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "url_blocked").await;
    // Blocking the host later: the existing link answers 410 within seconds.
    std::fs::write(&list, "phish.example\nlater-bad.example\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.follow(code).await;
        if r.status() == 410 {
            assert_error(r, 410, "link_blocked").await;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change was never seen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.follow(other["code"].as_str().unwrap()).await.status(),
        302
    );
}

/// The rows of a data dir's spool.
fn spool_rows(data_dir: &std::path::Path) -> Vec<Vec<u8>> {
    let spool = snowlink_spool::ClickSpool::open(snowlink_spool::path_in(data_dir)).unwrap();
    let rows = spool.read_after(0, 10_000).unwrap();
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The spooled events of a data dir, as JSON.
fn spooled(data_dir: &std::path::Path) -> Vec<Value> {
    spool_rows(data_dir)
        .iter()
        .map(|row| {
            let event = snowlink_events::ClickEvent::parse_row(row, i64::MAX / 2).unwrap();
            serde_json::to_value(event).unwrap()
        })
        .collect()
}

async fn wait_spooled(data_dir: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = spooled(data_dir);
        if events.len() >= n {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} clicks spooled",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Referrers lose their query; the country header is only read when named;
/// the visitor-hash key is nowhere a spool reader looks, and private.
#[tokio::test]
async fn clicks_keep_no_secrets_and_trust_no_unnamed_header() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app_with(|_| {}).await;
    let code = app.create("https://example.com/clicked").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.client
        .get(format!("{}/{code}", app.address))
        .header(
            "Referer",
            "https://mail.example/reset?token=SECRET-RESET-TOKEN-123#frag",
        )
        .header("CF-IPCountry", "KP")
        .send()
        .await
        .unwrap();
    let events = wait_spooled(&app.data_dir, 1).await;
    assert_eq!(events[0]["referrer"], "https://mail.example/reset");
    assert_eq!(events[0]["referrer_host"], "mail.example");
    assert!(events[0]["country"].is_null(), "{}", events[0]);
    // The service writes binary rows, each starting with its layout's version.
    assert_eq!(spool_rows(&app.data_dir)[0][0], snowlink_events::ROW_V1);
    let raw = std::fs::read(snowlink_spool::path_in(&app.data_dir)).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("SECRET-RESET"));
    // The key is in its own private directory, not in the spool.
    let keys = app.data_dir.join("visitor-keys");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    let files: Vec<_> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    let conn = rusqlite::Connection::open(snowlink_spool::path_in(&app.data_dir)).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !tables
            .iter()
            .any(|t| t.contains("salt") || t.contains("key")),
        "{tables:?}"
    );

    // Named, the country header is read.
    let app = spawn_app_with(|s| s.http.country_header = Some("CF-IPCountry".into())).await;
    let code = app.create("https://example.com/country").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.client
        .get(format!("{}/{code}", app.address))
        .header("CF-IPCountry", "nz")
        .send()
        .await
        .unwrap();
    assert_eq!(wait_spooled(&app.data_dir, 1).await[0]["country"], "NZ");
}

/// With a shared store, the binary refuses a weak or published code secret
/// before it connects to anything.
#[test]
fn a_shared_store_with_a_weak_code_secret_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |secret: &str, extra: &[&str]| {
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--scylla-nodes",
                "127.0.0.1:1",
            ])
            .args(["--worker-id", "1", "--code-secret", secret])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env("SNOWLINK_LOG", "warn")
            .output()
            .unwrap()
    };
    for secret in ["short", "demo-only-change-me"] {
        let out = run(secret, &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("code_secret"), "{err}");
        assert!(
            !err.contains(secret) || secret == "demo-only-change-me",
            "{err}"
        );
    }
    // Allowed as a demo, it gets past the check (and fails on the store).
    let out = run("short", &["--allow-weak-code-secret"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("code_secret"), "{err}");
}

/// A small file system of its own, unmounted when dropped; `None` where
/// this process may not mount one (tmpfs needs root).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { path, _dir: dir })
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// On a full disk, creates answer 507 `storage_full` and readiness says
/// not ready with the same code; freeing space brings both back.
#[tokio::test]
#[ignore = "needs root, to mount a small tmpfs: ./scripts/test runs it"]
async fn a_full_disk_is_named_by_creates_and_by_readiness() {
    let disk = SmallDisk::mount(24).expect("cannot mount a tmpfs: the full-disk test needs root");
    let data = disk.path.join("data");
    let dir = data.clone();
    let mut app = spawn_app_with(move |s| s.base.data_dir = dir).await;
    app.api_key = crate::helpers::create_key(&data, "full").await;
    app.create("https://example.com/before-full").await;
    let ready =
        |app: &crate::helpers::TestApp| app.client.get(format!("{}/readyz", app.address)).send();
    assert_eq!(ready(&app).await.unwrap().status(), 200);
    let filler = disk.fill();
    let mut refused = None;
    for i in 0..50 {
        let r = app
            .post_link(&json!({"url": format!("https://example.com/full/{i}")}))
            .await;
        if r.status() != 201 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a create on a full disk fails");
    assert_error(r, 507, "storage_full").await;
    let r = ready(&app).await.unwrap();
    assert_error(r, 503, "storage_full").await;
    std::fs::remove_file(filler).unwrap();
    assert_eq!(ready(&app).await.unwrap().status(), 200);
    app.create("https://example.com/after-full").await;
}

/// SIGTERM while another process holds the spool's lock: the service stops
/// within its grace period, keeps the clicks it could not spool in the
/// rescue file, logs a bounded number of errors, and the next start moves
/// every one of those clicks into the spool.
#[tokio::test]
async fn sigterm_with_an_unwritable_spool_is_bounded_and_keeps_the_clicks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = create_key(&data);
    let start = |log: &str| {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .env("SNOWLINK_LOG", "info")
            .env("SNOWLINK_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    };
    let (mut child, address) = start("first.log");
    wait_ready(&address).await;
    let http = crate::helpers::client();
    let code = http
        .post(format!("{address}/api/v1/links"))
        .bearer_auth(&key)
        .json(&json!({"url": "https://example.com/held"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another process takes the spool's write lock and keeps it.
    let holder = rusqlite::Connection::open(snowlink_spool::path_in(&data)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    const CLICKS: usize = 300;
    for _ in 0..CLICKS {
        let r = http.get(format!("{address}/{code}")).send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Held, not spooled: the count of spooled clicks is what the spool has.
    let text = crate::helpers::metrics_text(&address).await;
    let sample = |name| crate::helpers::sample(&text, name);
    assert_eq!(
        sample("snowlink_clicks_enqueued_total"),
        Some(CLICKS as f64)
    );
    assert_eq!(sample("snowlink_clicks_spooled_total"), Some(0.0));
    assert_eq!(sample("snowlink_clicks_rescued_total"), Some(0.0));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Bounded: well past the 5 s grace, far short of forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running 60 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    drop(holder);
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    let errors = log.lines().filter(|l| l.contains("\"ERROR\"")).count();
    assert!(errors <= 10, "{errors} error lines:\n{log}");
    let rescued = std::fs::read(snowlink_spool::rescue_path(&snowlink_spool::path_in(&data)))
        .unwrap_or_else(|e| panic!("the held clicks are in the rescue file ({e}):\n{log}"));
    // Kept as the spool's own rows, behind the file's header.
    assert!(rescued.starts_with(snowlink_spool::RESCUE_HEADER));
    assert!(rescued[snowlink_spool::RESCUE_HEADER.len() + 4] == snowlink_events::ROW_V1);
    // The next start moves them into the spool: every click, once.
    let (mut child, address) = start("second.log");
    wait_ready(&address).await;
    let spooled = spooled(&data);
    let text = crate::helpers::metrics_text(&address).await;
    let counted = crate::helpers::sample(&text, "snowlink_clicks_spooled_total");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(spooled.len(), CLICKS);
    assert_eq!(
        counted,
        Some(CLICKS as f64),
        "counted as spooled once they are"
    );
    let ids: std::collections::HashSet<_> = spooled.iter().map(|e| e["event_id"].clone()).collect();
    assert_eq!(ids.len(), CLICKS);
    assert!(!snowlink_spool::rescue_path(&snowlink_spool::path_in(&data)).exists());
}

/// The data directory is this user's alone, and its databases (links, key
/// hashes, clicks) and their journals are readable by this user only, even
/// when they were made by a command run with a looser umask.
#[tokio::test]
async fn the_data_directory_and_its_databases_are_private() {
    use std::os::unix::fs::PermissionsExt;
    // A data directory anyone may read, as `mkdir` makes it.
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = data.clone();
    let mut app = spawn_app_with(move |s| s.base.data_dir = dir).await;
    app.api_key = crate::helpers::create_key(&data, "private").await;
    app.create("https://example.com/private").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("links.db") || name.starts_with("spool.db") {
            assert_eq!(mode(&path), 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "links.db and spool.db at least");
}
