//! Request ids, health and readiness, and metrics.

use super::*;

#[tokio::test]
async fn request_ids_health_and_metrics() {
    let h = harness().await;
    let resp = h
        .cli
        .get("/api/v1/status")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .0;
    assert_eq!(
        resp.headers().get("x-request-id").unwrap(),
        "abc-123",
        "an incoming id is kept"
    );
    let resp = h
        .cli
        .get("/api/v1/status")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .0;
    let made = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 16, "a bad id is replaced by a made one");

    let (status, _, body) = send(h.cli.get("/healthz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _, body) = send(h.cli.get("/readyz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));

    let shared = h.share(&[("secret", "counted")]).await;
    h.reveal(shared["secret_key"].as_str().unwrap(), &[]).await;
    h.reveal(shared["secret_key"].as_str().unwrap(), &[]).await;
    let resp = h.cli.get("/metrics").send().await.0;
    let text = resp.into_body().into_string().await.unwrap();
    for line in [
        r#"ots_secrets_total{event="created"} 1"#,
        r#"ots_secrets_total{event="revealed"} 1"#,
        r#"ots_http_requests_total{method="POST",route="/api/v1/secret/:key",status="404"} 1"#,
        r#"ots_http_request_duration_seconds_count{route="/api/v1/secret/:key"} 2"#,
        r#"ots_http_request_duration_seconds_count{route="/api/v1/share"} 1"#,
        r#"ots_http_request_duration_seconds_count{route="/api/v1/status"} 2"#,
        r#"ots_http_request_duration_seconds_count{route="/healthz"} 1"#,
        "ots_outbox_backlog 0",
        // The memory store writes each request alone.
        "ots_store_write_batches_total 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(text.contains("ots_http_request_duration_seconds_bucket"));
    assert!(
        !text.contains(shared["secret_key"].as_str().unwrap()),
        "no keys in metrics"
    );
}
