//! The OpenAPI document: served without a key, OpenAPI 3.1, every route
//! and every error code in it.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_document_covers_every_route_and_error_code() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/links", &["get", "post"][..]),
        ("/api/v1/links/{code}", &["get", "patch", "delete"]),
        ("/api/v1/links/bulk", &["post"]),
        ("/api/v1/links/{code}/qr", &["get"]),
        ("/{code}", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/api/v1/openapi.json", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is not in the document"
            );
        }
    }
    let list_params: Vec<&str> = paths["/api/v1/links"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["limit", "cursor", "q", "tag", "state", "owner"] {
        assert!(
            list_params.contains(&name),
            "{name} missing: {list_params:?}"
        );
    }
    let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    for code in snowlink::error::ErrorCode::ALL {
        assert!(
            codes.contains(&code.as_str().to_owned()),
            "{}",
            code.as_str()
        );
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
