use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_bodies_are_400_naming_the_problem() {
    let app = spawn_app_with(|s| s.http.max_url_length = 100).await;
    let cases = [
        (
            json!({"url": "https://example.com", "extra": 1}),
            "invalid_body",
        ),
        (json!({"alias": "abc"}), "invalid_body"),
        (json!({"url": 5}), "invalid_body"),
        (
            json!({"url": "ftp://example.com/f"}),
            "url_scheme_not_allowed",
        ),
        (
            json!({"url": "javascript:alert(1)"}),
            "url_scheme_not_allowed",
        ),
        (json!({"url": "/relative/path"}), "invalid_url"),
        (json!({"url": "example.com"}), "invalid_url"),
        (json!({"url": "http://"}), "invalid_url"),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(100))}),
            "url_too_long",
        ),
        (
            json!({"url": "http://sho.rt.test/abc"}),
            "url_points_to_self",
        ),
        (
            json!({"url": "https://example.com", "alias": "ab"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://example.com", "alias": "with space"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://example.com", "alias": "--help"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://example.com", "alias": "Abcdefghij1"}),
            "alias_reserved",
        ),
        (
            json!({"url": "https://example.com", "alias": "healthz"}),
            "alias_reserved",
        ),
        (
            json!({"url": "https://example.com", "redirect": 303}),
            "invalid_redirect",
        ),
        (
            json!({"url": "https://example.com", "redirect": 200}),
            "invalid_redirect",
        ),
        (
            json!({"url": "https://example.com", "expires_at": "tomorrow"}),
            "invalid_expires_at",
        ),
        (
            json!({"url": "https://example.com", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_in_past",
        ),
    ];
    for (body, code) in cases {
        let r = app.post_link(&body).await;
        assert_error(r, 400, code).await;
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for raw in ["{", "not json", "", "[]"] {
        let r = app
            .client
            .post(format!("{}/api/v1/links", app.address))
            .bearer_auth(&app.api_key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{raw:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("invalid_"));
    }
}

#[tokio::test]
async fn huge_body_is_413() {
    let app = spawn_app().await;
    let big = json!({"url": format!("https://example.com/{}", "a".repeat(200_000))});
    assert_error(app.post_link(&big).await, 413, "payload_too_large").await;
}
