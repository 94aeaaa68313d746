//! The served spec and docs, and the committed spec kept in step with the code.

use super::*;

#[tokio::test]
async fn the_spec_and_docs_are_served() {
    let h = harness().await;
    let (status, _, spec) = send(h.cli.get("/api/v1/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/share",
        "/api/v1/generate",
        "/api/v1/secret/{secret_key}",
        "/api/v1/private/{metadata_key}",
        "/api/v1/private/{metadata_key}/burn",
        "/api/v1/private/recent",
        "/api/v1/status",
        "/api/v1/authcheck",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} in spec");
    }
    let resp = h.cli.get("/docs").send().await;
    resp.assert_status_is_ok();
    let html = resp.0.into_body().into_string().await.unwrap();
    assert!(
        html.contains("/api/v1/share") && html.contains("rapi-doc"),
        "the docs page carries the spec"
    );
}

/// The committed spec is what the code generates; `just openapi` rewrites it.
#[test]
fn committed_spec_matches_the_generated_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi");
    for (file, generated) in [
        ("openapi.json", ots_http::spec_json()),
        ("openapi.yaml", ots_http::spec_yaml()),
    ] {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(committed == generated, "openapi/{file} is stale: run `just openapi` (or `cargo run -p ots-server -- openapi --write openapi`) and commit the result");
    }
}
