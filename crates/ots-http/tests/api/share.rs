//! Sharing and generating: the metadata object, where parameters come from, ttls.

use super::*;

#[tokio::test]
async fn share_answers_the_metadata_object_with_exact_fields_and_types() {
    let h = harness().await;
    let body = h
        .share(&[
            ("secret", "hunter2"),
            ("ttl", "3600"),
            ("recipient", "jane.doe@example.com"),
        ])
        .await;
    let object = body.as_object().unwrap();
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created",
            "custid",
            "metadata_key",
            "metadata_ttl",
            "passphrase_required",
            "recipient",
            "secret_key",
            "secret_ttl",
            "state",
            "ttl",
            "updated"
        ]
    );
    assert_eq!(body["custid"], "anon");
    assert!(is_key(&body["metadata_key"]) && is_key(&body["secret_key"]));
    assert_ne!(body["metadata_key"], body["secret_key"]);
    // The creator's later view gives back the same link (it derives from the metadata key).
    let metadata_key = body["metadata_key"].as_str().unwrap();
    let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
    assert_eq!(md["secret_key"], body["secret_key"]);
    assert_eq!(body["ttl"], 3600);
    assert_eq!(body["secret_ttl"], 3600);
    assert_eq!(body["metadata_ttl"], 7200, "metadata lives twice the ttl");
    assert_eq!(body["state"], "new");
    assert_eq!(body["created"], T0);
    assert_eq!(body["updated"], T0);
    assert_eq!(body["recipient"], json!(["ja***@ex***.com"]));
    assert_eq!(body["passphrase_required"], false);
    assert!(!body.to_string().contains("hunter2"));
}

#[tokio::test]
async fn parameters_come_from_query_form_multipart_or_json_and_the_body_wins() {
    let h = harness().await;
    async fn reveal_value(h: &Harness, body: Value) -> (i64, String) {
        let key = body["secret_key"].as_str().unwrap().to_owned();
        let (_, secret) = h.reveal(&key, &[]).await;
        (
            body["ttl"].as_i64().unwrap(),
            secret["value"].as_str().unwrap().to_owned(),
        )
    }

    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .query("secret", &"from-query")
            .query("ttl", &"600"),
    )
    .await;
    assert_eq!(reveal_value(&h, body).await, (600, "from-query".into()));

    let (_, _, body) = send(
        h.cli.post("/api/v1/share").multipart(
            TestForm::new()
                .text("secret", "from-multipart")
                .text("ttl", "700"),
        ),
    )
    .await;
    assert_eq!(reveal_value(&h, body).await, (700, "from-multipart".into()));

    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .body_json(&json!({"secret": "from-json", "ttl": 800})),
    )
    .await;
    assert_eq!(reveal_value(&h, body).await, (800, "from-json".into()));

    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .query("secret", &"query")
            .query("ttl", &"900")
            .form(&[("secret", "body")]),
    )
    .await;
    assert_eq!(
        reveal_value(&h, body).await,
        (900, "body".into()),
        "body wins, query fills in"
    );

    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .form(&[("secret", "x"), ("unknown", "ignored")]),
    )
    .await;
    assert!(
        is_key(&body["secret_key"]),
        "unknown parameters are ignored"
    );
}

/// Of a parameter given twice, the query string's first counts and the body's last, in
/// every body encoding.
#[tokio::test]
async fn a_repeated_parameter_counts_once_first_in_the_query_last_in_the_body() {
    let h = harness().await;
    async fn value(h: &Harness, body: Value) -> String {
        let key = body["secret_key"].as_str().unwrap().to_owned();
        h.reveal(&key, &[]).await.1["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .query("secret", &"query-first")
            .query("secret", &"query-second"),
    )
    .await;
    assert_eq!(value(&h, body).await, "query-first");

    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .form(&[("secret", "form-first"), ("secret", "form-second")]),
    )
    .await;
    assert_eq!(value(&h, body).await, "form-second");

    let (_, _, body) = send(
        h.cli.post("/api/v1/share").multipart(
            TestForm::new()
                .text("secret", "multipart-first")
                .text("secret", "multipart-second"),
        ),
    )
    .await;
    assert_eq!(value(&h, body).await, "multipart-second");

    // The query's first value loses to the body's last.
    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .query("secret", &"query-first")
            .query("secret", &"query-second")
            .form(&[("ttl", "600"), ("secret", "form-only")]),
    )
    .await;
    assert_eq!(value(&h, body).await, "form-only");
}

#[tokio::test]
async fn ttl_is_defaulted_raised_and_clamped_to_the_plan() {
    let h = harness().await;
    let ttl = |body: Value| body["ttl"].as_i64().unwrap();
    assert_eq!(
        ttl(h.share(&[("secret", "a")]).await),
        7 * 86400,
        "default 7 days"
    );
    assert_eq!(
        ttl(h.share(&[("secret", "a"), ("ttl", "5")]).await),
        60,
        "raised to 60"
    );
    assert_eq!(ttl(h.share(&[("secret", "a"), ("ttl", "-100")]).await), 60);
    assert_eq!(
        ttl(h.share(&[("secret", "a"), ("ttl", "99999999")]).await),
        7 * 86400,
        "anonymous plan max"
    );
    let (_, _, body) = send(
        h.cli
            .post("/api/v1/share")
            .header(header::AUTHORIZATION, AUTH)
            .form(&[("secret", "a"), ("ttl", "99999999")]),
    )
    .await;
    assert_eq!(body["ttl"], 30 * 86400, "basic plan max");
    assert_eq!(body["custid"], "USERNAME");
    for bad in ["1h", "3600.5", "abc"] {
        let (status, _, body) = send(
            h.cli
                .post("/api/v1/share")
                .form(&[("secret", "a"), ("ttl", bad)]),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "ttl={bad}");
        assert!(message(&body).contains("ttl"));
    }
}

#[tokio::test]
async fn generate_makes_a_12_character_value_without_look_alikes() {
    let h = harness().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (status, _, body) = send(h.cli.post("/api/v1/generate").form(&[("ttl", "3600")])).await;
        assert_eq!(status, StatusCode::OK);
        let value = body["value"].as_str().unwrap().to_owned();
        assert_eq!(value.len(), 12);
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)),
            "{value}"
        );
        assert!(seen.insert(value.clone()));
        let metadata_key = body["metadata_key"].as_str().unwrap();
        let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
        assert!(
            md.get("value").is_none(),
            "later views never show the value"
        );
        let (status, secret) = h.reveal(body["secret_key"].as_str().unwrap(), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(secret["value"], value.as_str());
    }
}

#[tokio::test]
async fn unknown_parameters_are_ignored_whatever_their_type() {
    let h = harness().await;
    let body = json!({"secret": "kept", "extra": {"nested": [1, 2]}, "list": [3], "flag": null});
    let (status, _, shared) = send(h.cli.post("/api/v1/share").body_json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    let (status, revealed) = h.reveal(shared["secret_key"].as_str().unwrap(), &[]).await;
    assert_eq!(
        (status, revealed["value"].as_str()),
        (StatusCode::OK, Some("kept"))
    );
}
