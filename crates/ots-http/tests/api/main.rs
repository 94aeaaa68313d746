//! The v1 API and the pages through poem's test client, over the in-memory store and a clock
//! the tests move. One module per topic; the harness is here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::test::{TestClient, TestForm, TestRequestBuilder};
use poem::{Endpoint, EndpointExt};
use serde_json::{json, Value};

use ots_domain::{
    crypto::{self, Keyring},
    Clock, CustId, Customer, CustomerRepository, Policy, Service, StoredToken, SystemRng, UnixTime,
};
use ots_http::{app_with_limiter, HttpConfig, Limiter, Unlimited, UseCases};
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

mod accounts;
mod errors;
mod pages;
mod reveal;
mod share;
mod spec;
mod telemetry;

/// The use cases over `store`, reporting events to `metrics` as the server wires them.
fn service(
    store: Arc<MemoryStore>,
    clock: Arc<FakeClock>,
    policy: Policy,
    metrics: Arc<ots_http::Metrics>,
) -> UseCases {
    Arc::new(
        Service::new(
            store.clone(),
            store,
            Arc::new(LogMailer),
            clock,
            Arc::new(SystemRng::new()),
            Keyring::new(&[42; 32]).unwrap(),
            policy,
        )
        .with_events(metrics),
    )
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
    let svc = service(store, clock.clone(), policy, config.metrics.clone());
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
    assert_eq!(
        headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{status}: no cache may keep an answer: {body}"
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
