//! The v1 API through poem's test client, over the in-memory store and a clock the tests move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::test::{TestClient, TestForm, TestRequestBuilder};
use poem::{Endpoint, EndpointExt};
use serde_json::{json, Value};

use ots_domain::{
    crypto::{self, Cipher},
    Clock, CustId, Customer, CustomerRepository, Policy, StoredToken, SystemRng, UnixTime,
};
use ots_http::{
    app_with_limiter, spec_json, spec_yaml, AppService, ClassLimits, HttpConfig, Limit, Limiter,
    RateLimits, Unlimited,
};
use ots_mail::LogMailer;
use ots_store_memory::MemoryStore;

const T0: UnixTime = 1_700_000_000;
const AUTH: &str = "Basic VVNFUk5BTUU6QVBJVE9LRU4="; // USERNAME:APITOKEN

struct FakeClock(AtomicI64);

impl Clock for FakeClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

struct Harness {
    cli: TestClient<poem::endpoint::BoxEndpoint<'static>>,
    clock: Arc<FakeClock>,
}

fn service(store: Arc<MemoryStore>, clock: Arc<FakeClock>, policy: Policy) -> Arc<AppService> {
    Arc::new(AppService::new(
        store.clone(),
        store,
        Arc::new(LogMailer),
        clock,
        Arc::new(SystemRng::new()),
        Cipher::new(&[42; 32]).unwrap(),
        policy,
    ))
}

async fn harness_with(policy: Policy, config: HttpConfig) -> Harness {
    harness_limited(policy, config, Arc::new(Unlimited)).await
}

async fn harness_limited(policy: Policy, config: HttpConfig, limiter: Arc<dyn Limiter>) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let custid = CustId::parse("USERNAME").unwrap();
    store
        .add_customer(&Customer {
            custid: custid.clone(),
            email: None,
            plan: "basic".into(),
            created: T0,
        })
        .await
        .unwrap();
    store
        .add_token(
            &custid,
            &StoredToken {
                prefix: "APITOKEN".into(),
                hash: crypto::hash_token("APITOKEN"),
                created: T0,
            },
        )
        .await
        .unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(T0)));
    let svc = service(store, clock.clone(), policy);
    Harness {
        cli: TestClient::new(
            app_with_limiter(svc, &config, limiter)
                .map_to_response()
                .boxed(),
        ),
        clock,
    }
}

async fn harness() -> Harness {
    harness_with(
        Policy {
            bcrypt_cost: 4,
            max_passphrase_tries: 3,
            ..Policy::default()
        },
        HttpConfig::default(),
    )
    .await
}

async fn send<E: Endpoint>(
    req: TestRequestBuilder<'_, E>,
) -> (StatusCode, poem::http::HeaderMap, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().into_string().await.unwrap();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{status}: every response is JSON, got {content_type:?}: {body}"
    );
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, headers, value)
}

impl Harness {
    async fn share(&self, form: &[(&str, &str)]) -> Value {
        let (status, _, body) = send(self.cli.post("/api/v1/share").form(&form)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn reveal(&self, key: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, _, body) =
            send(self.cli.post(format!("/api/v1/secret/{key}")).form(&form)).await;
        (status, body)
    }

    fn advance(&self, seconds: i64) {
        self.clock.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

fn is_key(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 31
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
}

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
async fn status_is_nominal() {
    let h = harness().await;
    let (status, _, body) = send(h.cli.get("/api/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "nominal"}));
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

fn memory_service() -> Arc<AppService> {
    service(
        Arc::new(MemoryStore::new()),
        Arc::new(FakeClock(AtomicI64::new(T0))),
        Policy::default(),
    )
}

/// The committed spec is what the code generates; `just openapi` rewrites it.
#[test]
fn committed_spec_matches_the_generated_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi");
    for (file, generated) in [
        ("openapi.json", spec_json(memory_service())),
        ("openapi.yaml", spec_yaml(memory_service())),
    ] {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(committed == generated, "openapi/{file} is stale: run `just openapi` (or `cargo run -p ots-server -- openapi --write openapi`) and commit the result");
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

mod pages {
    use super::*;

    async fn page<E: Endpoint>(
        req: TestRequestBuilder<'_, E>,
    ) -> (StatusCode, poem::http::HeaderMap, String) {
        let resp = req.send().await.0;
        let (status, headers) = (resp.status(), resp.headers().clone());
        (
            status,
            headers,
            resp.into_body().into_string().await.unwrap(),
        )
    }

    fn csrf_of(headers: &poem::http::HeaderMap) -> String {
        let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    }

    #[tokio::test]
    async fn a_plain_get_never_reveals_and_forms_need_the_csrf_token() {
        let h = harness().await;
        let body = h
            .share(&[("secret", "page secret"), ("passphrase", "pp")])
            .await;
        let key = body["secret_key"].as_str().unwrap();
        let metadata_key = body["metadata_key"].as_str().unwrap();

        let (status, headers, html) = page(h.cli.get(format!("/secret/{key}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Reveal the secret") && html.contains("name=\"passphrase\""));
        assert!(!html.contains("page secret"));
        for (name, value) in [
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(headers.get(name).unwrap(), value);
        }
        assert!(headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
        assert_eq!(md["state"], "new", "loading the page did not reveal it");

        let csrf = csrf_of(&headers);
        let cookie = format!("ots_csrf={csrf}");
        let (status, _, _) = page(
            h.cli
                .post(format!("/secret/{key}"))
                .form(&[("csrf", "x".repeat(32)), ("passphrase", "pp".into())])
                .header(header::COOKIE, &cookie),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a forged form is refused");
        let (status, _, html) = page(
            h.cli
                .post(format!("/secret/{key}"))
                .form(&[("csrf", csrf.as_str()), ("passphrase", "nope")])
                .header(header::COOKIE, &cookie),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("2 tries left"), "{html}");
        let (status, _, html) = page(
            h.cli
                .post(format!("/secret/{key}"))
                .form(&[("csrf", csrf.as_str()), ("passphrase", "pp")])
                .header(header::COOKIE, &cookie),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("page secret"));
        let (status, _, html) = page(h.cli.get(format!("/secret/{key}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains("This secret is not here"));
    }

    #[tokio::test]
    async fn values_are_escaped_in_pages() {
        let h = harness().await;
        let body = h.share(&[("secret", "<script>alert(1)</script>")]).await;
        let key = body["secret_key"].as_str().unwrap();
        let (_, headers, _) = page(h.cli.get(format!("/secret/{key}"))).await;
        let csrf = csrf_of(&headers);
        let (_, _, html) = page(
            h.cli
                .post(format!("/secret/{key}"))
                .form(&[("csrf", csrf.as_str())])
                .header(header::COOKIE, format!("ots_csrf={csrf}")),
        )
        .await;
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(!html.contains("<script>alert(1)"));
    }

    #[tokio::test]
    async fn create_and_burn_through_the_forms() {
        let h = harness().await;
        let (_, headers, html) = page(h.cli.get("/")).await;
        assert!(html.contains("Share a secret"));
        let csrf = csrf_of(&headers);
        let cookie = format!("ots_csrf={csrf}");
        let resp = h
            .cli
            .post("/")
            .form(&[
                ("csrf", csrf.as_str()),
                ("secret", "from the form"),
                ("ttl", "3600"),
            ])
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .0;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let location = resp
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let metadata_key = location.trim_start_matches("/private/").to_owned();
        let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
        assert_eq!(
            (md["ttl"].as_i64(), md["state"].as_str()),
            (Some(3600), Some("new"))
        );
        let (_, _, html) = page(h.cli.get(&location)).await;
        let html = html.replace("&#x2f;", "/");
        assert!(html.contains(&format!(
            "http://127.0.0.1:7143/secret/{}",
            md["secret_key"].as_str().unwrap()
        )));

        let (status, _, _) = page(
            h.cli
                .post(format!("{location}/burn"))
                .form(&[("csrf", csrf.as_str())])
                .header(header::COOKIE, &cookie),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "burning needs the confirmation box"
        );
        let resp = h
            .cli
            .post(format!("{location}/burn"))
            .form(&[("csrf", csrf.as_str()), ("confirm", "yes")])
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .0;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
        assert_eq!(md["state"], "burned");
        let (_, _, html) = page(h.cli.get(&location)).await;
        assert!(html.contains("Burned at"));

        let (status, _, html) = page(
            h.cli
                .post("/")
                .form(&[("csrf", csrf.as_str()), ("secret", "")])
                .header(header::COOKIE, &cookie),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("You did not provide anything to share"));
    }
}

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
        "ots_outbox_backlog 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(text.contains("ots_http_request_duration_seconds_bucket"));
    assert!(
        !text.contains(shared["secret_key"].as_str().unwrap()),
        "no keys in metrics"
    );
}
