//! Revealing once, passphrases and their try limit, burning, expiry, and concurrent reveals.

use super::*;

#[tokio::test]
async fn a_secret_is_revealed_once_by_get_or_post_then_unknown() {
    let h = harness().await;
    let body = h.share(&[("secret", "line one\nline two ✓")]).await;
    let key = body["secret_key"].as_str().unwrap();
    let (status, _, secret) = send(h.cli.get(format!("/api/v1/secret/{key}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        secret,
        json!({"secret_key": key, "value": "line one\nline two ✓"})
    );
    let (status, again) = h.reveal(key, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        again,
        json!({"message": "Unknown secret", "secret_key": key})
    );

    let metadata_key = body["metadata_key"].as_str().unwrap();
    h.advance(5);
    let (status, _, md) = send(h.cli.post(format!("/api/v1/private/{metadata_key}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(md["state"], "received");
    assert_eq!(md["received"], T0);
    assert_eq!(md["secret_key"], Value::Null);
    assert_eq!(md["secret_ttl"], Value::Null);
    assert_eq!(md["metadata_ttl"], 2 * 7 * 86400 - 5);

    for bad in [
        "nope",
        "153l8vbwqx5taskp92pf05uvgjefvu9",
        "153L8VBWQX5TASKP92PF05UVGJEFVU9",
    ] {
        let (status, body) = h.reveal(bad, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(message(&body), "Unknown secret");
    }
}

#[tokio::test]
async fn wrong_passphrase_is_403_and_keeps_the_secret_until_the_try_limit() {
    let h = harness().await;
    let body = h
        .share(&[("secret", "s3cret"), ("passphrase", "open sesame")])
        .await;
    assert_eq!(body["passphrase_required"], true);
    let key = body["secret_key"].as_str().unwrap();
    let (status, err) = h.reveal(key, &[("passphrase", "wrong")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["tries_left"], 2);
    let (status, err) = h.reveal(key, &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a missing passphrase is a wrong one"
    );
    assert_eq!(err["tries_left"], 1);
    let (status, secret) = h.reveal(key, &[("passphrase", "open sesame")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret["value"], "s3cret");

    let body = h
        .share(&[("secret", "s3cret"), ("passphrase", "open sesame")])
        .await;
    let key = body["secret_key"].as_str().unwrap();
    for left in [2, 1, 0] {
        let (status, err) = h.reveal(key, &[("passphrase", "wrong")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(err["tries_left"], left);
    }
    let (status, _) = h.reveal(key, &[("passphrase", "open sesame")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the try limit burned it");
    let (_, _, md) = send(h.cli.get(format!(
        "/api/v1/private/{}",
        body["metadata_key"].as_str().unwrap()
    )))
    .await;
    assert_eq!(md["state"], "burned");
}

#[tokio::test]
async fn burn_destroys_an_unread_secret_once() {
    let h = harness().await;
    let body = h.share(&[("secret", "burn me")]).await;
    let (metadata_key, key) = (
        body["metadata_key"].as_str().unwrap(),
        body["secret_key"].as_str().unwrap(),
    );
    h.advance(3);
    let (status, _, md) = send(h.cli.post(format!("/api/v1/private/{metadata_key}/burn"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(md["state"], "burned");
    assert_eq!(md["burned"], T0 + 3);
    assert_eq!(md["secret_key"], Value::Null);
    let (status, _) = h.reveal(key, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, err) = send(h.cli.post(format!("/api/v1/private/{metadata_key}/burn"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        err,
        json!({"message": "Unknown secret", "metadata_key": metadata_key})
    );
}

#[tokio::test]
async fn expiry_is_enforced_at_read_time() {
    let h = harness().await;
    let body = h.share(&[("secret", "short"), ("ttl", "60")]).await;
    h.advance(60);
    let (status, _) = h.reveal(body["secret_key"].as_str().unwrap(), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, md) = send(h.cli.get(format!(
        "/api/v1/private/{}",
        body["metadata_key"].as_str().unwrap()
    )))
    .await;
    assert_eq!(md["state"], "expired");
    assert_eq!(md["secret_key"], Value::Null);
    assert_eq!(md["metadata_ttl"], 60);
    h.advance(60);
    let (status, _, _) = send(h.cli.get(format!(
        "/api/v1/private/{}",
        body["metadata_key"].as_str().unwrap()
    )))
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "metadata is gone at twice the ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_256_concurrent_reveals_exactly_one_gets_the_value() {
    let h = Arc::new(harness().await);
    for round in 0..3 {
        let body = h.share(&[("secret", "only once")]).await;
        let key = body["secret_key"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..256)
            .map(|_| {
                let (h, key) = (h.clone(), key.clone());
                tokio::spawn(async move { h.reveal(&key, &[]).await })
            })
            .collect();
        let mut values = Vec::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::OK => values.push(body["value"].as_str().unwrap().to_owned()),
                StatusCode::NOT_FOUND => assert_eq!(message(&body), "Unknown secret"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(values, vec!["only once".to_string()], "round {round}");
    }
}
