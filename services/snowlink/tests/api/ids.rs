//! Ids across restarts of the real binary: a restart whose clock reads
//! behind the last reservation never reissues an id; it answers 503
//! `id_unavailable` until the clock catches up, then issues ids past it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snowlink_id::{CodeCodec, IdParts, DEFAULT_EPOCH_MS};

use crate::helpers::client;
use crate::helpers::{create_key_cli as create_key, serve_with, wait_ready};

async fn create(address: &str, key: &str, i: usize) -> reqwest::Response {
    client()
        .post(format!("{address}/api/v1/links"))
        .bearer_auth(key)
        .json(&json!({ "url": format!("https://example.com/{i}") }))
        .send()
        .await
        .unwrap()
}

fn id_of(body: &Value) -> u64 {
    CodeCodec::sequential()
        .decode(body["code"].as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_behind_the_last_reservation_never_reissues_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = snowlink_testkit::free_port();
    let address = format!("http://127.0.0.1:{port}");
    let key = create_key(dir.path());

    let mut first = serve_with(dir.path(), port, &["--sequential-codes"]);
    wait_ready(&address).await;
    let mut before = Vec::new();
    for i in 0..50 {
        let r = create(&address, &key, i).await;
        assert_eq!(r.status(), 201);
        before.push(id_of(&r.json().await.unwrap()));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // The run that was killed had reserved ids up to here: as if its clock
    // read 8 s ahead of the clock the restart sees (an NTP step back).
    let reservation = snowlink::now_ms() + 8_000;
    std::fs::write(dir.path().join("ids/worker-0"), reservation.to_string()).unwrap();
    let stepped_back_at = Instant::now();
    let mut second = serve_with(dir.path(), port, &["--sequential-codes"]);
    wait_ready(&address).await;
    // Redirects and reads work; creates are refused, never a reissued id.
    let r = create(&address, &key, 100).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "id_unavailable");
    let link = before[0];
    let code = CodeCodec::sequential().encode(link);
    let r = client()
        .get(format!("{address}/{code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "redirects never wait for ids");

    // As soon as the clock passes the reservation, ids flow again, all past it.
    let after = loop {
        let r = create(&address, &key, 101).await;
        if r.status() == 201 {
            break id_of(&r.json().await.unwrap());
        }
        assert_eq!(r.status(), 503);
        assert!(
            stepped_back_at.elapsed() < Duration::from_secs(8 + 5),
            "creates stayed unavailable well past the clock's catch-up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ms = IdParts::from_id(after, DEFAULT_EPOCH_MS).unix_ms as i64;
    assert!(
        ms > reservation,
        "the first id after the restart is past the reservation"
    );
    assert!(!before.contains(&after));
    assert!(after > *before.iter().max().unwrap());
    second.kill().unwrap();
    second.wait().unwrap();
}
