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

/// The worker id behind a generated code, from `snowlink decode`.
fn worker_of(data_dir: &std::path::Path, code: &str) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_snowlink"))
        .args(["decode", code, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Value = serde_json::from_slice(&out.stdout).unwrap();
    decoded["worker_id"].as_u64().unwrap()
}

/// An import beside the running service on the same data directory issues
/// its ids as another worker than the service's, as a second service
/// would: never a fixed one, never the service's own.
#[tokio::test]
async fn an_import_beside_the_service_issues_ids_as_another_worker() {
    let app = crate::helpers::spawn_app().await;
    let made = app.create("https://example.com/by-the-api").await;
    let service_worker = worker_of(&app.data_dir, made["code"].as_str().unwrap());
    let csv = app.data_dir.join("export.csv");
    let rows: String = (0..50)
        .map(|i| format!("https://example.com/imported/{i}\n"))
        .collect();
    std::fs::write(&csv, format!("url\n{rows}")).unwrap();
    let out = import(&app.data_dir, &csv, "test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = app
        .api(reqwest::Method::GET, "/links?limit=1000", &app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let imported: Vec<&str> = page["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["url"].as_str().unwrap().contains("/imported/"))
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(imported.len(), 50);
    let import_worker = worker_of(&app.data_dir, imported[0]);
    assert_ne!(import_worker, service_worker);
    assert_ne!(import_worker, 1023, "not a fixed worker id");
    // Still the service's after the import has ended.
    let after = app.create("https://example.com/after").await;
    assert_eq!(
        worker_of(&app.data_dir, after["code"].as_str().unwrap()),
        service_worker
    );
}
