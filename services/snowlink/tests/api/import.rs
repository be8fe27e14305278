//! `snowlink import`: the binary against a data directory, run twice.

use std::process::Command;

use serde_json::Value;

fn import(data_dir: &std::path::Path, file: &std::path::Path, owner: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snowlink"))
        .args(["import", file.to_str().unwrap(), "--owner", owner])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SNOWLINK_WORKER_ID")
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_import_is_idempotent_and_its_links_serve() {
    let app = crate::helpers::spawn_app().await;
    let csv = app.data_dir.join("export.csv");
    std::fs::write(
        &csv,
        "url,alias,tags,expires_at,clicks\n\
         https://example.com/a,imp-a,\"x,y\",,10\n\
         https://example.com/b,,launch,2099-01-01T00:00:00Z,3\n\
         https://example.com/c,,,,0\n\
         https://example.com/c,,,,0\n\
         javascript:alert(1),,,,0\n\
         https://example.com/d,imp-a,,,0\n",
    )
    .unwrap();
    let first = import(&app.data_dir, &csv, "test");
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("imported 3 links"), "{stdout}");
    assert!(stdout.contains("1 already there"), "{stdout}");
    assert!(stdout.contains("2 failed"), "{stdout}");
    assert!(
        stderr.contains("line 6:") && stderr.contains("line 7:"),
        "{stderr}"
    );
    // A rerun creates nothing.
    let second = import(&app.data_dir, &csv, "test");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("imported 0 links"), "{stdout}");
    assert!(stdout.contains("4 already there"), "{stdout}");
    // The links are the owner's, listed and served by the running service.
    let page: Value = app
        .api(reqwest::Method::GET, "/links?state=all", &app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let links = page["links"].as_array().unwrap();
    assert_eq!(links.len(), 3);
    let a = links.iter().find(|l| l["code"] == "imp-a").unwrap();
    assert_eq!(a["tags"], serde_json::json!(["x", "y"]));
    let b = links
        .iter()
        .find(|l| l["url"] == "https://example.com/b")
        .unwrap();
    assert_eq!(b["expires_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(b["code"].as_str().unwrap().len(), snowlink_id::CODE_LEN);
    let r = app.follow("imp-a").await;
    assert_eq!(r.status(), 302);
    assert_eq!(crate::helpers::location(&r), "https://example.com/a");
}

#[test]
fn a_file_without_a_url_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "link,alias\nhttps://example.com,a\n").unwrap();
    let out = import(dir.path(), &csv, "team");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no url column"), "{err}");
}
