//! Owners, scopes, listing and editing: the management API as teams use it.

use reqwest::Method;
use serde_json::{json, Value};
use snowlink::keys::KeySpec;
use snowlink_store::Scope;

use crate::helpers::{assert_error, create_key_with, spawn_app, TestApp};

fn spec(name: &str, owner: Option<&str>, scopes: Option<&[Scope]>) -> KeySpec {
    KeySpec {
        name: name.into(),
        owner: owner.map(Into::into),
        scopes: scopes.map(|s| s.to_vec()),
        rate_limit: None,
    }
}

async fn create_as(app: &TestApp, key: &str, body: Value) -> Value {
    let r = app
        .api(Method::POST, "/links", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.json().await.unwrap()
}

async fn list(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.api(Method::GET, &format!("/links{query}"), key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn another_owners_link_is_not_there() {
    let app = spawn_app().await;
    let alice = create_key_with(&app.data_dir, spec("alice", None, None)).await;
    let bob = create_key_with(&app.data_dir, spec("bob", None, None)).await;
    let link = create_as(&app, &alice, json!({"url": "https://example.com/alice"})).await;
    let code = link["code"].as_str().unwrap();
    assert_eq!(link["owner"], "alice");
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .api(method.clone(), &format!("/links/{code}"), &bob)
            .send()
            .await
            .unwrap();
        assert_error(r, 404, "link_not_found").await;
    }
    let r = app
        .api(Method::PATCH, &format!("/links/{code}"), &bob)
        .json(&json!({"url": "https://evil.example/"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "link_not_found").await;
    let page: Value = list(&app, &bob, "").await.json().await.unwrap();
    assert_eq!(page["links"], json!([]));
    // Still alice's, unchanged.
    let r = app
        .api(Method::GET, &format!("/links/{code}"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["url"], "https://example.com/alice");
}

#[tokio::test]
async fn keys_of_one_owner_share_links_and_admin_sees_all() {
    let app = spawn_app().await;
    let ci = create_key_with(&app.data_dir, spec("ci", Some("growth"), None)).await;
    let laptop = create_key_with(&app.data_dir, spec("laptop", Some("growth"), None)).await;
    let admin = create_key_with(&app.data_dir, spec("ops", None, Some(&[Scope::Admin]))).await;
    let link = create_as(&app, &ci, json!({"url": "https://example.com/shared"})).await;
    let code = link["code"].as_str().unwrap();
    assert_eq!(link["owner"], "growth");
    let page: Value = list(&app, &laptop, "").await.json().await.unwrap();
    assert_eq!(page["links"][0]["code"], code);
    let r = app
        .api(Method::GET, &format!("/links/{code}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = list(&app, &admin, "?owner=growth")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["links"][0]["code"], code);
    assert_error(
        list(&app, &ci, "?owner=ops").await,
        403,
        "insufficient_scope",
    )
    .await;
    let r = app
        .api(Method::DELETE, &format!("/links/{code}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403() {
    let app = spawn_app().await;
    let reader = create_key_with(
        &app.data_dir,
        spec("reader", Some("t"), Some(&[Scope::LinksRead])),
    )
    .await;
    let writer = create_key_with(
        &app.data_dir,
        spec("writer", Some("t"), Some(&[Scope::LinksWrite])),
    )
    .await;
    let r = app
        .api(Method::POST, "/links", &reader)
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "insufficient_scope").await;
    let link = create_as(&app, &writer, json!({"url": "https://example.com/w"})).await;
    let code = link["code"].as_str().unwrap();
    assert_error(list(&app, &writer, "").await, 403, "insufficient_scope").await;
    let r = app
        .api(Method::GET, &format!("/links/{code}"), &writer)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "insufficient_scope").await;
    let r = app
        .api(Method::GET, &format!("/links/{code}"), &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .api(Method::DELETE, &format!("/links/{code}"), &reader)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn walking_every_page_returns_every_link_once_despite_concurrent_creates() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let mut created = Vec::new();
    for i in 0..25 {
        let link = create_as(
            &app,
            &key,
            json!({"url": format!("https://example.com/{i}")}),
        )
        .await;
        created.push(link["code"].as_str().unwrap().to_owned());
    }
    created.reverse(); // newest first
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}"),
            None => "?limit=7".to_owned(),
        };
        let r = list(&app, &key, &query).await;
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        let links = page["links"].as_array().unwrap();
        assert!(links.len() <= 7);
        seen.extend(links.iter().map(|l| l["code"].as_str().unwrap().to_owned()));
        // A create between pages must not shift the walk.
        create_as(&app, &key, json!({"url": "https://example.com/later"})).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, created);
}

#[tokio::test]
async fn list_filters_and_bad_parameters() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let docs = create_as(
        &app,
        &key,
        json!({"url": "https://example.com/Docs/start", "tags": ["docs", "launch"]}),
    )
    .await;
    let other = create_as(
        &app,
        &key,
        json!({"url": "https://example.com/pricing", "tags": ["launch"]}),
    )
    .await;
    let gone = create_as(&app, &key, json!({"url": "https://example.com/old"})).await;
    app.delete_link(gone["code"].as_str().unwrap()).await;
    let codes = |page: Value| -> Vec<Value> {
        page["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["code"].clone())
            .collect()
    };
    let page = list(&app, &key, "?tag=launch").await.json().await.unwrap();
    assert_eq!(codes(page), [other["code"].clone(), docs["code"].clone()]);
    let page = list(&app, &key, "?q=docs/st").await.json().await.unwrap();
    assert_eq!(codes(page), [docs["code"].clone()]);
    let page = list(&app, &key, "?state=deleted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(page), [gone["code"].clone()]);
    let page: Value = list(&app, &key, "?state=all").await.json().await.unwrap();
    assert_eq!(page["links"].as_array().unwrap().len(), 3);
    assert_eq!(page["links"][0]["state"], "deleted");
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?state=gone",
        "?cursor=nope",
        "?colour=red",
    ] {
        assert_error(list(&app, &key, bad).await, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn patch_changes_the_target_at_once_and_validates_like_create() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let link = create_as(
        &app,
        &key,
        json!({"url": "https://example.com/v1", "expires_at": "2099-01-01T00:00:00Z", "tags": ["a"]}),
    )
    .await;
    let code = link["code"].as_str().unwrap();
    // Served, and so cached, before the change.
    assert_eq!(
        crate::helpers::location(&app.follow(code).await),
        "https://example.com/v1"
    );
    let patch = |body: Value| {
        app.api(Method::PATCH, &format!("/links/{code}"), &key)
            .json(&body)
            .send()
    };
    let r = patch(json!({"url": "https://example.com/v2", "redirect": 301, "tags": ["b", "c"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["url"], "https://example.com/v2");
    assert_eq!(body["redirect"], 301);
    assert_eq!(body["tags"], json!(["b", "c"]));
    assert_eq!(
        body["expires_at"], "2099-01-01T00:00:00.000Z",
        "absent fields stay"
    );
    let r = app.follow(code).await;
    assert_eq!(r.status(), 301);
    assert_eq!(crate::helpers::location(&r), "https://example.com/v2");
    let r = patch(json!({"expires_at": null})).await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["expires_at"].is_null(), "null clears the expiry");
    for (body, code_) in [
        (
            json!({"url": "javascript:alert(1)"}),
            "url_scheme_not_allowed",
        ),
        (json!({"redirect": 303}), "invalid_redirect"),
        (
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
            "expires_in_past",
        ),
        (json!({"tags": ["UPPER"]}), "invalid_tags"),
        (
            json!({"tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "invalid_tags",
        ),
        (json!({"alias": "new-name"}), "invalid_body"),
    ] {
        assert_error(patch(body).await.unwrap(), 400, code_).await;
    }
    app.delete_link(code).await;
    let r = patch(json!({"url": "https://example.com/v3"}))
        .await
        .unwrap();
    assert_error(r, 410, "link_deleted").await;
    let r = app
        .api(Method::PATCH, "/links/no-such-link", &key)
        .json(&json!({"url": "https://example.com/v3"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "link_not_found").await;
}

#[tokio::test]
async fn keys_from_before_owners_keep_working_as_their_own_owner() {
    // spawn_app's key is minted with the defaults: owner = name, default scopes.
    let app = spawn_app().await;
    let link = app.create("https://example.com/legacy").await;
    assert_eq!(link["owner"], "test");
    assert_eq!(link["tags"], json!([]));
    let page: Value = list(&app, &app.api_key, "").await.json().await.unwrap();
    assert_eq!(page["links"][0]["code"], link["code"]);
    assert!(page["next_cursor"].is_null());
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit_with_headers() {
    let app = spawn_app().await;
    let slow = create_key_with(
        &app.data_dir,
        KeySpec {
            rate_limit: Some(3),
            ..spec("slow", None, None)
        },
    )
    .await;
    let link = create_as(
        &app,
        &app.api_key.clone(),
        json!({"url": "https://example.com/rl"}),
    )
    .await;
    for left in (0..3).rev() {
        let r = list(&app, &slow, "").await;
        assert_eq!(r.status(), 200);
        for prefix in ["ratelimit-", "x-ratelimit-"] {
            assert_eq!(header(&r, &format!("{prefix}limit")), "3");
            assert_eq!(header(&r, &format!("{prefix}remaining")), left.to_string());
            let reset: u64 = header(&r, &format!("{prefix}reset")).parse().unwrap();
            assert!((1..=60).contains(&reset), "{reset}");
        }
    }
    let r = list(&app, &slow, "").await;
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    assert_error(r, 429, "rate_limited").await;
    // Other keys, and redirects, are not held back by it.
    assert_eq!(list(&app, &app.api_key, "").await.status(), 200);
    for _ in 0..10 {
        assert_eq!(
            app.follow(link["code"].as_str().unwrap()).await.status(),
            302
        );
    }
}

/// A bulk create pays one request per link: a key allowed 3 requests a
/// minute creates at most 3 links a minute, however it batches them.
#[tokio::test]
async fn a_bulk_create_pays_for_each_link() {
    let app = spawn_app().await;
    let slow = create_key_with(
        &app.data_dir,
        KeySpec {
            rate_limit: Some(3),
            ..spec("slow-bulk", None, None)
        },
    )
    .await;
    let bulk = |n: usize, tag: &str| {
        let links: Vec<Value> = (0..n)
            .map(|i| json!({"url": format!("https://example.com/{tag}/{i}")}))
            .collect();
        app.api(reqwest::Method::POST, "/links/bulk", &slow)
            .json(&json!({ "links": links }))
            .send()
    };
    // More than the key may make in a minute: refused whole.
    let r = bulk(5, "five").await.unwrap();
    assert_error(r, 429, "rate_limited").await;
    // Its first request was paid; what is left pays for two links.
    let r = bulk(2, "two").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    // Nothing is left: not even one more link.
    let r = bulk(1, "one").await.unwrap();
    assert_error(r, 429, "rate_limited").await;
    // The owner has exactly the two links paid for.
    let reader = create_key_with(&app.data_dir, spec("bulk-reader", Some("slow-bulk"), None)).await;
    let page: Value = list(&app, &reader, "?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["links"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_default_rate_limit_is_a_setting() {
    let app = crate::helpers::spawn_app_with(|s| s.http.key_rate_limit = 2).await;
    let key = app.api_key.clone();
    assert_eq!(list(&app, &key, "").await.status(), 200);
    let r = list(&app, &key, "").await;
    assert_eq!(header(&r, "ratelimit-limit"), "2");
    assert_error(list(&app, &key, "").await, 429, "rate_limited").await;
}

/// Decodes a PNG QR code with an independent decoder (rqrr).
fn decode_qr_png(bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn qr_codes_decode_to_the_short_url() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let link = create_as(&app, &key, json!({"url": "https://example.com/qr"})).await;
    let code = link["code"].as_str().unwrap();
    for size in ["", "&size=64", "&size=1000"] {
        let r = app
            .api(
                Method::GET,
                &format!("/links/{code}/qr?format=png{size}"),
                &key,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "image/png");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(decode_qr_png(&bytes), link["short_url"].as_str().unwrap());
    }
    let r = app
        .api(
            Method::GET,
            &format!("/links/{code}/qr?format=svg&size=300"),
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/svg+xml");
    let svg = r.text().await.unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    for bad in [
        "?format=gif",
        "?size=10",
        "?size=5000",
        "?size=big",
        "?colour=red",
    ] {
        let r = app
            .api(Method::GET, &format!("/links/{code}/qr{bad}"), &key)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_query").await;
    }
    let stranger = create_key_with(&app.data_dir, spec("stranger", None, None)).await;
    let r = app
        .api(Method::GET, &format!("/links/{code}/qr"), &stranger)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "link_not_found").await;
}

#[tokio::test]
async fn bulk_answers_each_item_in_order_and_one_bad_item_fails_alone() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let r = app
        .api(Method::POST, "/links/bulk", &key)
        .json(&json!({"links": [
            {"url": "https://example.com/1"},
            {"url": "ftp://example.com/2"},
            {"url": "https://example.com/3", "alias": "bulk-3", "tags": ["b"]},
            {"url": "https://example.com/4", "alias": "bulk-3"},
            {"url": "https://example.com/5", "colour": "red"},
            {"nope": true},
            {"url": "https://example.com/7", "alias": "bulk"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 201, 409, 400, 400, 201]);
    assert_eq!(results[0]["link"]["url"], "https://example.com/1");
    assert_eq!(results[1]["error"]["code"], "url_scheme_not_allowed");
    assert_eq!(results[2]["link"]["tags"], json!(["b"]));
    assert_eq!(results[3]["error"]["code"], "alias_taken");
    assert_eq!(results[4]["error"]["code"], "invalid_body");
    // Created items redirect; the alias "bulk" is still a link's code.
    let first = results[0]["link"]["code"].as_str().unwrap();
    assert_eq!(app.follow(first).await.status(), 302);
    let r = app
        .api(Method::GET, "/links/bulk", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for body in [
        json!({"links": []}),
        json!({"links": vec![json!({"url": "https://example.com"}); 1001]}),
        json!({}),
    ] {
        let r = app
            .api(Method::POST, "/links/bulk", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_body").await;
    }
    let reader = create_key_with(
        &app.data_dir,
        spec("reader", Some("test"), Some(&[Scope::LinksRead])),
    )
    .await;
    let r = app
        .api(Method::POST, "/links/bulk", &reader)
        .json(&json!({"links": [{"url": "https://example.com/x"}]}))
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn a_thousand_links_in_one_bulk_request() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"url": format!("https://example.com/bulk/{i}")}))
        .collect();
    let r = app
        .api(Method::POST, "/links/bulk", &app.api_key)
        .json(&json!({ "links": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["status"], 201);
        assert_eq!(
            result["link"]["url"],
            format!("https://example.com/bulk/{i}")
        );
    }
}
