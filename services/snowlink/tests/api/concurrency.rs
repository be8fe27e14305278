use std::collections::HashMap;

use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{client, location, spawn_app};

const CLIENTS: usize = 100;
const PER_CLIENT: usize = 100;

/// 10,000 creates from 100 clients at once: every code is distinct and
/// redirects to its own URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_creates_get_distinct_working_codes() {
    let app = spawn_app().await;
    let mut tasks = JoinSet::new();
    for c in 0..CLIENTS {
        let (address, key) = (app.address.clone(), app.api_key.clone());
        tasks.spawn(async move {
            let http = client();
            let mut made = Vec::with_capacity(PER_CLIENT);
            for i in 0..PER_CLIENT {
                let url = format!("https://example.com/c{c}/i{i}");
                let r = http
                    .post(format!("{address}/api/v1/links"))
                    .bearer_auth(&key)
                    .json(&json!({ "url": url }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let body: serde_json::Value = r.json().await.unwrap();
                made.push((body["code"].as_str().unwrap().to_owned(), url));
            }
            made
        });
    }
    let mut by_code: HashMap<String, String> = HashMap::new();
    while let Some(made) = tasks.join_next().await {
        for (code, url) in made.unwrap() {
            assert!(
                by_code.insert(code.clone(), url).is_none(),
                "duplicate code {code}"
            );
        }
    }
    assert_eq!(by_code.len(), CLIENTS * PER_CLIENT);

    let pairs: Vec<(String, String)> = by_code.into_iter().collect();
    let mut checks = JoinSet::new();
    for chunk in pairs.chunks(pairs.len() / CLIENTS) {
        let chunk = chunk.to_vec();
        let address = app.address.clone();
        checks.spawn(async move {
            let http = client();
            for (code, url) in chunk {
                let r = http.get(format!("{address}/{code}")).send().await.unwrap();
                assert_eq!(r.status(), 302, "{code}");
                assert_eq!(location(&r), url);
            }
        });
    }
    while let Some(done) = checks.join_next().await {
        done.unwrap();
    }
}
