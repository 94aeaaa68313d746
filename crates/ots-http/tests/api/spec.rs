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

fn operations(spec: &Value) -> Vec<(String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((format!("{} {path}", method.to_uppercase()), op));
        }
    }
    ops
}

/// Each operation lists the statuses it can answer and no other: a generated client gets
/// one error type per operation, and a fuzzer holds the server to the list.
#[test]
fn each_operation_lists_only_the_statuses_it_can_give() {
    let spec: Value = serde_json::from_str(&ots_http::spec_json()).unwrap();
    let expected = [
        ("shareSecret", "200 400 401 413 415 429 500 503"),
        ("generateSecret", "200 400 401 413 415 429 500 503"),
        ("revealSecret", "200 400 401 403 404 413 415 429 500 503"),
        ("revealSecretByGet", "200 401 403 404 429 500 503"),
        ("getMetadata", "200 401 404 429 500 503"),
        ("getMetadataByPost", "200 401 404 429 500 503"),
        ("burnSecret", "200 401 404 429 500 503"),
        ("listRecent", "200 400 401 429 500 503"),
        ("getStatus", "200 401 429 500 503"),
        ("checkAuth", "200 401 429 500 503"),
    ];
    let ops = operations(&spec);
    assert_eq!(ops.len(), expected.len());
    for (name, op) in ops {
        let id = op["operationId"].as_str().unwrap();
        let statuses: Vec<&str> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let (_, want) = expected.iter().find(|(op, _)| *op == id).unwrap();
        assert_eq!(statuses.join(" "), *want, "{name}");
        assert!(
            op["tags"].as_array().is_some_and(|t| t.len() == 1),
            "{name}"
        );
    }
}

/// A body has exactly one documented encoding, JSON, so generators send one; share's names
/// its one required field. No POST documents query parameters besides its path.
#[test]
fn bodies_are_json_only_and_share_requires_its_secret() {
    let spec: Value = serde_json::from_str(&ots_http::spec_json()).unwrap();
    for (name, op) in operations(&spec) {
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/json"],
                "{name}"
            );
            let queries = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .count();
            assert_eq!(queries, 0, "{name}");
        }
    }
    let share = &spec["paths"]["/api/v1/share"]["post"]["requestBody"];
    assert_eq!(share["required"], true);
    let params = &spec["components"]["schemas"]["ShareParams"];
    assert_eq!(params["required"], serde_json::json!(["secret"]));
    assert_eq!(params["properties"]["secret"]["minLength"], 1);
    assert!(params["example"]["secret"].is_string());
    let generate = &spec["paths"]["/api/v1/generate"]["post"]["requestBody"];
    assert_eq!(generate["required"], false);
}
