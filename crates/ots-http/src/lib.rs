//! The HTTP adapter: the OneTimeSecret v1 API on poem + poem-openapi, the OpenAPI spec it
//! generates, and the interactive docs page.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

use ots_domain::SecretUseCases;

mod api;
mod error;
mod json;
mod normalize;
mod pages;
mod params;
mod ratelimit;
mod schema;
mod telemetry;

pub use api::{Api, MetadataObject, State};
pub use error::{json_error, Answer, ErrorBody};
pub use params::{BodyLimit, TrustedProxyHeader};
pub use ratelimit::{ClassLimits, Limit, Limiter, RateKey, RateLimits, RouteClass, Unlimited};
pub use telemetry::{redact_path, Metrics, REQUEST_ID};

/// The use cases as the HTTP adapter holds them: behind their port, whatever implements it.
pub type UseCases = Arc<dyn SecretUseCases>;

/// HTTP settings.
#[derive(Clone)]
pub struct HttpConfig {
    /// Where request and secret metrics are counted (shared with the server's workers).
    pub metrics: Arc<Metrics>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Rate limits by plan name; `anonymous` applies per client address.
    pub rate_limits: HashMap<String, ClassLimits>,
    /// The header a trusted reverse proxy puts the client address in (e.g.
    /// `x-forwarded-for`); `None`: use the peer address.
    pub trusted_proxy_header: Option<String>,
    /// The base of links shown on the pages (`OTS_PUBLIC_URL`).
    pub public_url: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            metrics: Arc::new(Metrics::new()),
            body_limit: 1 << 20,
            rate_limits: HashMap::from([
                ("anonymous".to_owned(), ClassLimits::default()),
                ("basic".to_owned(), ClassLimits::default()),
            ]),
            trusted_proxy_header: None,
            public_url: "http://127.0.0.1:7143".to_owned(),
        }
    }
}

/// The v1 API as an OpenAPI service: what the server mounts and the spec generator prints.
/// It needs no use cases: handlers find them in the request's data.
pub fn api_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(Api, "ots", env!("CARGO_PKG_VERSION")).description(
        "One-time secrets, OneTimeSecret API v1 compatible. Share a secret through a link that \
         works once. Every route answers JSON; errors are `{\"message\": ...}` with the \
         status that says what happened.",
    )
}

/// The generated spec as JSON, exactly as committed under `openapi/`.
pub fn spec_json() -> String {
    api_service().spec() + "\n"
}

/// The generated spec as YAML.
pub fn spec_yaml() -> String {
    api_service().spec_yaml()
}

/// The whole HTTP application: `/api/v1/...`, the spec, the docs.
pub fn app(svc: UseCases, config: &HttpConfig) -> impl Endpoint {
    let limiter = Arc::new(RateLimits::new(&config.rate_limits, "anonymous"));
    app_with_limiter(svc, config, limiter)
}

/// [`app`] with a given limiter (tests use one on a fake clock, or [`Unlimited`]).
pub fn app_with_limiter(
    svc: UseCases,
    config: &HttpConfig,
    limiter: Arc<dyn Limiter>,
) -> impl Endpoint {
    let pages = pages::routes(svc.clone(), limiter.clone(), &config.public_url);
    let api = api_service();
    let routes = Route::new()
        .at("/api/v1/openapi.json", poem::get(spec_json_endpoint))
        .at("/api/v1/openapi.yaml", poem::get(spec_yaml_endpoint))
        .at("/docs", poem::get(docs_endpoint))
        .at(
            "/metrics",
            poem::get(metrics_endpoint).data(config.metrics.clone()),
        )
        .at("/healthz", poem::get(healthz))
        .at("/readyz", poem::get(readyz))
        .nest_no_strip("/api", api)
        .nest("/", pages);
    normalize::TrimSlashes(routes)
        .catch_all_error(error::json_errors)
        .around({
            let metrics = config.metrics.clone();
            let data = Arc::new(RequestData {
                svc,
                limiter,
                body_limit: BodyLimit(config.body_limit),
                proxy: TrustedProxyHeader(config.trusted_proxy_header.clone()),
            });
            move |ep, mut req| {
                req.set_data(data.clone());
                telemetry::observe(ep, req, metrics.clone())
            }
        })
}

/// What handlers find in the request's data, inserted in one step by the outermost layer.
/// A `.data()` layer each would nest four more futures, each holding its own copy of the
/// request (~470 bytes), and each layer moves the whole future beneath it: the request's
/// future was ~9.6 KiB, copied again at every layer.
/// One entry in the request's data, not four: each entry is a boxed value in a map that
/// grows as they are added, and each clone of an `Arc` an atomic the two workers share.
pub(crate) struct RequestData {
    pub(crate) svc: UseCases,
    pub(crate) limiter: Arc<dyn Limiter>,
    pub(crate) body_limit: BodyLimit,
    pub(crate) proxy: TrustedProxyHeader,
}

/// The spec and the docs page are made on their first request and then shared by every
/// answer. poem-openapi's own endpoints make them when the app is built and copy them for each
/// answer: the docs page alone is ~660 KB (RapiDoc's script with the spec inlined), twice
/// over with its OAuth receiver page, which ots has no use for. Made at start-up, they were
/// ~1.3 MiB of every idle process's resident memory.
fn shared_page(page: &'static OnceLock<Bytes>, make: fn() -> String) -> Bytes {
    page.get_or_init(|| Bytes::from(make())).clone()
}

#[poem::handler]
fn spec_json_endpoint() -> poem::Response {
    static PAGE: OnceLock<Bytes> = OnceLock::new();
    poem::Response::builder()
        .content_type("application/json")
        .body(shared_page(&PAGE, || api_service().spec()))
}

#[poem::handler]
fn spec_yaml_endpoint() -> poem::Response {
    static PAGE: OnceLock<Bytes> = OnceLock::new();
    poem::Response::builder()
        .content_type("application/x-yaml")
        .header("Content-Disposition", "inline; filename=\"spec.yaml\"")
        .body(shared_page(&PAGE, spec_yaml))
}

#[poem::handler]
fn docs_endpoint() -> poem::Response {
    static PAGE: OnceLock<Bytes> = OnceLock::new();
    poem::Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(shared_page(&PAGE, || api_service().rapidoc_html()))
}

#[poem::handler]
async fn metrics_endpoint(
    data: poem::web::Data<&Arc<RequestData>>,
    metrics: poem::web::Data<&Arc<Metrics>>,
) -> poem::Response {
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(data.svc.as_ref()).await)
}

/// The process is up.
#[poem::handler]
fn healthz() -> poem::Response {
    json_response(poem::http::StatusCode::OK, r#"{"status":"ok"}"#)
}

/// The store answers and its migrations are applied: ready for traffic.
#[poem::handler]
async fn readyz(data: poem::web::Data<&Arc<RequestData>>) -> poem::Response {
    if data.svc.is_available().await {
        json_response(poem::http::StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        json_response(
            poem::http::StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"unavailable"}"#,
        )
    }
}

fn json_response(status: poem::http::StatusCode, body: &'static str) -> poem::Response {
    poem::Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body)
}
