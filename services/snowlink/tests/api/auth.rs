use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn management_routes_need_a_valid_key() {
    let app = spawn_app().await;
    let created = app.create("https://example.com/k").await;
    let code = created["code"].as_str().unwrap().to_owned();
    let url = |p: &str| format!("{}{p}", app.address);
    let body = json!({"url": "https://example.com/"});
    let links = url("/api/v1/links");
    let one = url(&format!("/api/v1/links/{code}"));

    for (header, expected) in [
        (None, "missing_api_key"),
        (Some("Basic abc".to_owned()), "missing_api_key"),
        (Some("Bearer sl_wrong".to_owned()), "invalid_api_key"),
        (Some(format!("Bearer {}x", app.api_key)), "invalid_api_key"),
    ] {
        let with = |rb: reqwest::RequestBuilder| match &header {
            Some(h) => rb.header("authorization", h),
            None => rb,
        };
        let r = with(app.client.post(&links).json(&body))
            .send()
            .await
            .unwrap();
        assert_error(r, 401, expected).await;
        let r = with(app.client.get(&one)).send().await.unwrap();
        assert_error(r, 401, expected).await;
        let r = with(app.client.delete(&one)).send().await.unwrap();
        assert_error(r, 401, expected).await;
    }
    // Nothing was deleted by the unauthenticated attempts.
    assert_eq!(app.follow(&code).await.status(), 302);
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let app = spawn_app().await;
    let store = snowlink_store::SqliteStore::open(app.data_dir.join("links.db")).unwrap();
    let key = crate::helpers::create_key(&app.data_dir, "short-lived").await;
    use snowlink_store::LinkStore;
    assert!(store.revoke_api_key("short-lived", 1).await.unwrap());
    let r = app
        .client
        .post(format!("{}/api/v1/links", app.address))
        .bearer_auth(&key)
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "invalid_api_key").await;
}

#[tokio::test]
async fn repeated_bad_keys_are_rate_limited_but_good_keys_still_work() {
    let app = spawn_app_with(|s| s.http.auth_failures_per_minute = 3).await;
    // The good key is verified once before the flood, as a real client's is.
    app.create("https://example.com/before").await;
    for _ in 0..3 {
        let r = app
            .client
            .get(format!("{}/api/v1/links/whatever", app.address))
            .bearer_auth("sl_guess")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .client
        .get(format!("{}/api/v1/links/whatever", app.address))
        .bearer_auth("sl_guess")
        .send()
        .await
        .unwrap();
    assert_error(r, 429, "rate_limited").await;
    app.create("https://example.com/after").await;
}
