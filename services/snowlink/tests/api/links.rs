use serde_json::json;

use crate::helpers::{assert_error, spawn_app, PUBLIC_URL};

#[tokio::test]
async fn create_answers_201_with_the_link() {
    let app = spawn_app().await;
    let r = app
        .post_link(&json!({"url": "https://example.com/a?b=1"}))
        .await;
    assert_eq!(r.status(), 201);
    let location = crate::helpers::location(&r);
    let body: serde_json::Value = r.json().await.unwrap();
    let code = body["code"].as_str().unwrap();
    assert_eq!(code.len(), snowlink_id::CODE_LEN);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(body["short_url"], format!("{PUBLIC_URL}/{code}"));
    assert_eq!(location, format!("{PUBLIC_URL}/{code}"));
    assert_eq!(body["url"], "https://example.com/a?b=1");
    assert_eq!(body["redirect"], 302);
    assert!(body["expires_at"].is_null());
    let created =
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - created.to_utc()).num_seconds().abs() < 60);
}

#[tokio::test]
async fn create_with_alias_expiry_and_redirect() {
    let app = spawn_app().await;
    let r = app
        .post_link(&json!({
            "url": "https://example.com/docs",
            "alias": "team-docs_1",
            "expires_at": "2099-01-02T03:04:05Z",
            "redirect": 307,
        }))
        .await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "team-docs_1");
    assert_eq!(body["redirect"], 307);
    assert_eq!(body["expires_at"], "2099-01-02T03:04:05.000Z");
    let r = app.follow("team-docs_1").await;
    assert_eq!(r.status(), 307);
    assert_eq!(crate::helpers::location(&r), "https://example.com/docs");
}

#[tokio::test]
async fn taken_alias_is_409() {
    let app = spawn_app().await;
    let body = json!({"url": "https://example.com/1", "alias": "taken"});
    assert_eq!(app.post_link(&body).await.status(), 201);
    let again = json!({"url": "https://example.com/2", "alias": "taken"});
    assert_error(app.post_link(&again).await, 409, "alias_taken").await;
    // The first link is untouched.
    let r = app.follow("taken").await;
    assert_eq!(crate::helpers::location(&r), "https://example.com/1");
}

#[tokio::test]
async fn deleted_alias_is_never_reissued() {
    let app = spawn_app().await;
    let body = json!({"url": "https://example.com/1", "alias": "once"});
    assert_eq!(app.post_link(&body).await.status(), 201);
    assert_eq!(app.delete_link("once").await.status(), 204);
    assert_error(app.post_link(&body).await, 409, "alias_taken").await;
}

#[tokio::test]
async fn get_answers_the_link_and_404_for_unknown() {
    let app = spawn_app().await;
    let created = app.create("https://example.com/get").await;
    let code = created["code"].as_str().unwrap();
    let r = app.get_link(code).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, created);
    assert_error(app.get_link("nosuchcode").await, 404, "link_not_found").await;
    assert_error(app.get_link("bad%20code").await, 404, "link_not_found").await;
}

#[tokio::test]
async fn delete_answers_204_then_redirect_is_410() {
    let app = spawn_app().await;
    let created = app.create("https://example.com/del").await;
    let code = created["code"].as_str().unwrap();
    // Warm the cache so the delete has something to invalidate.
    assert_eq!(app.follow(code).await.status(), 302);
    let r = app.delete_link(code).await;
    assert_eq!(r.status(), 204);
    assert_error(app.follow(code).await, 410, "link_deleted").await;
    assert_error(app.get_link(code).await, 410, "link_deleted").await;
    assert_error(app.delete_link(code).await, 410, "link_deleted").await;
    assert_error(app.delete_link("nosuchcode").await, 404, "link_not_found").await;
}
