use crate::helpers::{sample, spawn_app};

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = spawn_app().await;
    for path in ["healthz", "readyz"] {
        let r = app
            .client
            .get(format!("{}/{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["status"].is_string());
    }
}

#[tokio::test]
async fn unknown_route_and_method_are_json_errors() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/a/b/c", app.address))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(r, 404, "not_found").await;
    let r = app
        .client
        .put(format!("{}/api/v1/links", app.address))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn metrics_count_requests_cache_lookups_store_latency_and_the_spool() {
    let app = spawn_app().await;
    let code = app.create("https://example.com/metrics").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.follow(&code).await.status(), 302);
    }
    assert_eq!(app.follow("NoSuchCode1").await.status(), 404);
    assert_eq!(app.follow("readyz").await.status(), 200);
    let r = app.follow("metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let at =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        at(r#"snowlink_http_requests_total{route="redirect",status="3xx"}"#),
        3.0
    );
    assert_eq!(
        at(r#"snowlink_http_requests_total{route="redirect",status="4xx"}"#),
        1.0
    );
    assert_eq!(
        at(r#"snowlink_http_requests_total{route="api",status="2xx"}"#),
        1.0
    );
    assert!(at(r#"snowlink_http_requests_total{route="health",status="2xx"}"#) >= 1.0);
    assert_eq!(
        at(r#"snowlink_http_request_duration_seconds_count{route="redirect"}"#),
        4.0
    );
    assert_eq!(
        at(r#"snowlink_http_request_duration_seconds_bucket{le="+Inf",route="redirect"}"#),
        4.0
    );
    // The created link was kept in the in-process cache: its three
    // redirects hit it; the unknown code was the one miss.
    assert_eq!(
        at(r#"snowlink_cache_lookups_total{tier="local",result="hit"}"#),
        3.0
    );
    assert_eq!(
        at(r#"snowlink_cache_lookups_total{tier="local",result="miss"}"#),
        1.0
    );
    assert!(at(r#"snowlink_store_operation_duration_seconds_count{op="get_link"}"#) >= 1.0);
    assert_eq!(
        at(r#"snowlink_store_operation_duration_seconds_count{op="create_link"}"#),
        1.0
    );
    assert!(sample(&text, "snowlink_spool_depth").is_some(), "{text}");
    assert!(
        sample(&text, "snowlink_clicks_enqueued_total").is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_address() {
    let port = snowlink_testkit::free_port();
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    crate::helpers::assert_error(app.follow("metrics").await, 404, "not_found").await;
    let text = crate::helpers::metrics_text(&format!("http://127.0.0.1:{port}")).await;
    assert!(text.contains("snowlink_http_requests_total"), "{text}");
}
