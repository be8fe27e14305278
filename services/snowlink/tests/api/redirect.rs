use serde_json::json;

use crate::helpers::{assert_error, location, spawn_app};

#[tokio::test]
async fn redirect_sends_location_with_default_302() {
    let app = spawn_app().await;
    let created = app.create("https://example.com/landing?utm=1").await;
    let r = app.follow(created["code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "https://example.com/landing?utm=1");
    assert_eq!(r.headers()["cache-control"], "private, no-store");
}

#[tokio::test]
async fn every_redirect_status_is_honoured() {
    let app = spawn_app().await;
    for status in [301u16, 302, 307, 308] {
        let r = app
            .post_link(&json!({"url": format!("https://example.com/{status}"), "redirect": status}))
            .await;
        let body: serde_json::Value = r.json().await.unwrap();
        let r = app.follow(body["code"].as_str().unwrap()).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(location(&r), format!("https://example.com/{status}"));
    }
}

#[tokio::test]
async fn unknown_and_invalid_codes_are_404_never_500() {
    let app = spawn_app().await;
    for code in [
        "abc",
        "zzzzzzzzzzz",
        "zzzzzzzzzzzzzzzzzzzzzzzz",
        "%F0%9F%92%A9",
        "a.b",
        "%00",
        "..%2F..%2Fetc",
        &"x".repeat(65),
        &"y".repeat(5000),
    ] {
        let r = app.follow(code).await;
        assert_error(r, 404, "link_not_found").await;
    }
}

#[tokio::test]
async fn expired_link_is_410() {
    let app = spawn_app().await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = app
        .post_link(&json!({"url": "https://example.com/soon", "expires_at": expires.to_rfc3339()}))
        .await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    let code = body["code"].as_str().unwrap();
    if chrono::Utc::now() < expires - chrono::Duration::milliseconds(500) {
        assert_eq!(app.follow(code).await.status(), 302);
    }
    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    assert_error(app.follow(code).await, 410, "link_expired").await;
}

#[tokio::test]
async fn a_code_looked_up_before_it_existed_redirects_once_created() {
    let app = spawn_app().await;
    // Caches "unknown" for the alias.
    assert_eq!(app.follow("later").await.status(), 404);
    let r = app
        .post_link(&json!({"url": "https://example.com/later", "alias": "later"}))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.follow("later").await.status(), 302);
}

#[tokio::test]
async fn head_redirects_too() {
    let app = spawn_app().await;
    let created = app.create("https://example.com/head").await;
    let r = app
        .client
        .head(format!(
            "{}/{}",
            app.address,
            created["code"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "https://example.com/head");
}

/// A new code secret keeps every issued code working: a link made under
/// the earlier secret still redirects, and new links follow the new one.
#[tokio::test]
async fn links_made_under_an_earlier_code_secret_still_redirect() {
    use snowlink_store::conformance::sample_link;
    use snowlink_store::CodeKind;
    let dir = tempfile::tempdir().unwrap();
    let mut earlier = crate::helpers::test_settings(dir.path());
    earlier.ids.code_secret = Some("the-earlier-secret-0123456789abcdef".into());
    let id = 1_234_567_u64;
    let code = snowlink::startup::code_codec(&earlier).unwrap().encode(id);
    {
        let store = snowlink::startup::open_store(&earlier).await.unwrap();
        let mut link = sample_link(&code, CodeKind::Generated);
        link.id = id as i64;
        link.url = "https://example.com/earlier".into();
        link.expires_at = None;
        store.create_link(&link).await.unwrap();
    }
    let data = dir.path().to_path_buf();
    let mut app = crate::helpers::spawn_app_with(move |s| {
        s.base.data_dir = data;
        s.ids.code_secret = Some("the-later-secret-0123456789abcdef012".into());
    })
    .await;
    let r = app.follow(&code).await;
    assert_eq!(
        r.status(),
        307,
        "a code of the earlier secret, its own status"
    );
    assert_eq!(location(&r), "https://example.com/earlier");
    app.api_key = crate::helpers::create_key(dir.path(), "later").await;
    let created = app.create("https://example.com/later").await;
    let later = created["code"].as_str().unwrap();
    assert_ne!(later, code);
    let r = app.follow(later).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "https://example.com/later");
}
