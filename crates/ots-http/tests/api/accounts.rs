//! Credentials, recent, and rate limits.

use super::*;
use ots_http::{ClassLimits, Limit, RateLimits};

#[tokio::test]
async fn authenticated_routes_need_good_credentials() {
    let h = harness().await;
    for path in ["/api/v1/private/recent", "/api/v1/authcheck"] {
        let (status, headers, body) = send(h.cli.get(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        assert_eq!(message(&body), "Not authorized");
    }
    let (status, _, body) = send(
        h.cli
            .get("/api/v1/authcheck")
            .header(header::AUTHORIZATION, AUTH),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"custid": "USERNAME"}));
    // Present but wrong credentials are never a silent fall-back to anonymous.
    for bad in [
        "Basic VVNFUk5BTUU6V1JPTkc=",
        "Basic !!!",
        "Bearer abc",
        "Basic Tk9CT0RZOkFQSVRPS0VO",
    ] {
        for (method, path) in [
            ("post", "/api/v1/share?secret=x"),
            ("get", "/api/v1/status"),
            ("get", "/api/v1/authcheck"),
        ] {
            let req = if method == "post" {
                h.cli.post(path)
            } else {
                h.cli.get(path)
            };
            let (status, headers, _) = send(req.header(header::AUTHORIZATION, bad)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad} on {path}");
            assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        }
    }
}

#[tokio::test]
async fn recent_lists_the_callers_metadata_newest_first_without_secret_keys() {
    let h = harness().await;
    let mut keys = Vec::new();
    for i in 0..3 {
        let (_, _, body) = send(
            h.cli
                .post("/api/v1/share")
                .header(header::AUTHORIZATION, AUTH)
                .form(&[("secret", format!("s{i}"))]),
        )
        .await;
        keys.push(body["metadata_key"].as_str().unwrap().to_owned());
        h.advance(1);
    }
    h.share(&[("secret", "anonymous one")]).await;
    let (status, _, body) = send(
        h.cli
            .get("/api/v1/private/recent")
            .header(header::AUTHORIZATION, AUTH),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let items = body.as_array().unwrap();
    let listed: Vec<&str> = items
        .iter()
        .map(|m| m["metadata_key"].as_str().unwrap())
        .collect();
    keys.reverse();
    assert_eq!(listed, keys);
    assert!(items
        .iter()
        .all(|m| m["secret_key"].is_null() && m["custid"] == "USERNAME"));
    let (_, _, body) = send(
        h.cli
            .get("/api/v1/private/recent?limit=1")
            .header(header::AUTHORIZATION, AUTH),
    )
    .await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    for bad in ["0", "101", "x"] {
        let (status, _, _) = send(
            h.cli
                .get(format!("/api/v1/private/recent?limit={bad}"))
                .header(header::AUTHORIZATION, AUTH),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}");
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_then_recover() {
    let clock = governor::clock::FakeRelativeClock::default();
    let tight = Limit {
        burst: 2,
        per_minute: 60,
    };
    let plans = std::collections::HashMap::from([
        (
            "anonymous".to_string(),
            ClassLimits {
                create: tight,
                reveal: tight,
                other: tight,
            },
        ),
        (
            "basic".to_string(),
            ClassLimits {
                create: Limit {
                    burst: 4,
                    per_minute: 60,
                },
                ..ClassLimits::default()
            },
        ),
    ]);
    let limiter = Arc::new(RateLimits::with_clock(&plans, "anonymous", clock.clone()));
    let config = HttpConfig {
        trusted_proxy_header: Some("x-forwarded-for".into()),
        ..HttpConfig::default()
    };
    let h = harness_limited(
        Policy {
            bcrypt_cost: 4,
            ..Policy::default()
        },
        config,
        limiter,
    )
    .await;
    let share = |ip: &'static str| {
        h.cli
            .post("/api/v1/share")
            .header("x-forwarded-for", format!("10.0.0.9, {ip}"))
            .form(&[("secret", "x")])
    };

    for _ in 0..2 {
        assert_eq!(send(share("192.0.2.1")).await.0, StatusCode::OK);
    }
    let (status, headers, body) = send(share("192.0.2.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert!(message(&body).contains("Too many requests"));
    // Another address, another route class and a customer each have their own budget.
    assert_eq!(send(share("192.0.2.2")).await.0, StatusCode::OK);
    assert_eq!(
        send(
            h.cli
                .get("/api/v1/status")
                .header("x-forwarded-for", "192.0.2.1")
        )
        .await
        .0,
        StatusCode::OK
    );
    for _ in 0..4 {
        let (status, _, _) = send(share("192.0.2.1").header(header::AUTHORIZATION, AUTH)).await;
        assert_eq!(status, StatusCode::OK, "the basic plan allows a burst of 4");
    }
    assert_eq!(
        send(share("192.0.2.1").header(header::AUTHORIZATION, AUTH))
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Failed logins count against the address: guessing tokens is limited too.
    let bad = || {
        h.cli
            .get("/api/v1/authcheck")
            .header("x-forwarded-for", "192.0.2.3")
            .header(header::AUTHORIZATION, "Basic VVNFUk5BTUU6V1JPTkc=")
    };
    assert_eq!(send(bad()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(bad()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(bad()).await.0, StatusCode::TOO_MANY_REQUESTS);

    // One request a second refills.
    clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(send(share("192.0.2.1")).await.0, StatusCode::OK);
    assert_eq!(
        send(share("192.0.2.1")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
