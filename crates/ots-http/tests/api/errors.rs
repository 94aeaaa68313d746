//! Status, and every bad input as a JSON error with the right status.

use super::*;

#[tokio::test]
async fn status_is_nominal() {
    let h = harness().await;
    let (status, _, body) = send(h.cli.get("/api/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "nominal"}));
}

#[tokio::test]
async fn extra_slashes_reach_the_same_route_and_keep_the_query() {
    let h = harness().await;
    for path in ["/api/v1/status/", "//api//v1/status", "/api/v1/status//"] {
        let (status, _, body) = send(h.cli.get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, json!({"status": "nominal"}), "{path}");
    }
    let (status, _, body) = send(h.cli.post("/api/v1//share/?secret=s3cret&ttl=3600")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["ttl"],
        json!(3600),
        "the query string survives: {body}"
    );
}

#[tokio::test]
async fn every_bad_input_is_a_json_error_with_the_right_status() {
    let h = harness_with(
        Policy {
            bcrypt_cost: 4,
            ..Policy::default()
        },
        HttpConfig {
            body_limit: 4096,
            ..HttpConfig::default()
        },
    )
    .await;
    let share = || h.cli.post("/api/v1/share");
    let cases: Vec<(TestRequestBuilder<'_, _>, StatusCode, &str)> = vec![
        (
            share(),
            StatusCode::BAD_REQUEST,
            "You did not provide anything to share",
        ),
        (
            share().form(&[("secret", "")]),
            StatusCode::BAD_REQUEST,
            "You did not provide anything to share",
        ),
        (
            share().form(&[("secret", "x".repeat(1025))]),
            StatusCode::BAD_REQUEST,
            "1024",
        ),
        (
            share().form(&[("secret", "x"), ("recipient", "not-an-email")]),
            StatusCode::BAD_REQUEST,
            "recipient",
        ),
        (
            share()
                .content_type("application/json")
                .body("{\"secret\": "),
            StatusCode::BAD_REQUEST,
            "JSON",
        ),
        (
            share().content_type("application/json").body("[1,2]"),
            StatusCode::BAD_REQUEST,
            "object",
        ),
        (
            share().body_json(&json!({"secret": {"nested": 1}})),
            StatusCode::BAD_REQUEST,
            "secret",
        ),
        (
            share()
                .content_type("multipart/form-data; boundary=xyz")
                .body("garbage"),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            share().content_type("multipart/form-data").body("garbage"),
            StatusCode::BAD_REQUEST,
            "multipart",
        ),
        (
            share().content_type("text/plain").body("secret=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type",
        ),
        (
            share().form(&[("secret", "x".repeat(5000))]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096",
        ),
        (
            h.cli.get("/api/v1/share"),
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        ),
        (
            h.cli.get("/api/v1/nothing-here"),
            StatusCode::NOT_FOUND,
            "Not found",
        ),
        (
            h.cli.post("/api/v1/private/recent"),
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        ),
        (
            h.cli.post("/api/v1/private/short/burn"),
            StatusCode::NOT_FOUND,
            "Unknown secret",
        ),
    ];
    for (i, (req, expected, needle)) in cases.into_iter().enumerate() {
        let (status, _, body) = send(req).await;
        assert_eq!(status, expected, "case {i}: {body}");
        assert!(
            message(&body).contains(needle),
            "case {i}: {body} should mention {needle:?}"
        );
    }
    // Bytes, not characters, count toward the cap: 342 three-byte characters = 1026 bytes.
    let (status, _, body) = send(share().form(&[("secret", "€".repeat(342))])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("1024"));
    let (status, _, _) = send(share().form(&[("secret", "€".repeat(341))])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_405_names_the_allowed_methods() {
    let h = harness().await;
    for (req, allowed) in [
        (h.cli.get("/api/v1/share"), "POST"),
        (
            h.cli.put("/api/v1/secret/153l8vbwqx5taskp92pf05uvgjefvu9"),
            "GET, POST",
        ),
        (h.cli.post("/api/v1/private/recent"), "GET"),
        (h.cli.delete("/api/v1/status"), "GET"),
        (
            h.cli.get("/private/qjpjroeit8wra0ojeyhcw5pjsgwtuq7/burn"),
            "POST",
        ),
    ] {
        let resp = req.send().await.0;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            resp.headers()
                .get(header::ALLOW)
                .map(|v| v.to_str().unwrap()),
            Some(allowed)
        );
    }
}

#[tokio::test]
async fn a_json_parameter_has_the_type_the_spec_gives_it() {
    let h = harness().await;
    for (body, name) in [
        (json!({"secret": "x", "passphrase": false}), "passphrase"),
        (json!({"secret": 12345}), "secret"),
        (json!({"secret": "x", "ttl": "3600"}), "ttl"),
        (json!({"secret": "x", "ttl": 3600.5}), "ttl"),
        (
            json!({"secret": "x", "recipient": ["a@b.com"]}),
            "recipient",
        ),
    ] {
        let (status, _, answer) = send(h.cli.post("/api/v1/share").body_json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(message(&answer).contains(name), "{answer}");
    }
    let good = json!({"secret": "x", "ttl": 3600, "passphrase": null, "other": true});
    let (status, _, answer) = send(h.cli.post("/api/v1/share").body_json(&good)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ttl"], 3600);
}
