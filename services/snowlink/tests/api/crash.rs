//! The real `snowlink` binary, killed with SIGKILL mid-load: every link it
//! acknowledged must be there after a restart.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use snowlink_testkit::free_port;

use crate::helpers::{client, create_key_cli as create_key, location, serve_with, wait_ready};

fn serve(data_dir: &Path, port: u16) -> Child {
    serve_with(data_dir, port, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path());
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut child = serve(dir.path(), port);
    wait_ready(&address).await;

    let acked: Arc<Mutex<Vec<(String, String)>>> = Default::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (address, key, acked) = (address.clone(), key.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                let url = format!("https://example.com/w{w}/{i}");
                let Ok(r) = http
                    .post(format!("{address}/api/v1/links"))
                    .bearer_auth(&key)
                    .json(&json!({ "url": url }))
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                if r.status() != 201 {
                    return;
                }
                let Ok(body) = r.json::<serde_json::Value>().await else {
                    return;
                };
                let code = body["code"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push((code, url));
            }
        }));
    }
    // Let a good number of creates land, then pull the plug mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 500 {
        assert!(Instant::now() < deadline, "creates too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 500);

    let mut child = serve(dir.path(), port);
    wait_ready(&address).await;
    let http = client();
    for (code, url) in &acked {
        let r = http.get(format!("{address}/{code}")).send().await.unwrap();
        assert_eq!(r.status(), 302, "acknowledged link {code} lost");
        assert_eq!(&location(&r), url);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut child = serve(dir.path(), port);
    wait_ready(&address).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "clean exit on SIGTERM, got {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
