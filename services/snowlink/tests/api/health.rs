use crate::helpers::spawn_app;

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
