//! The HTTP adapter: the OneTimeSecret v1 API on poem + poem-openapi, the OpenAPI spec it
//! generates, and the interactive docs page.

use std::collections::HashMap;
use std::sync::Arc;

use poem::middleware::{NormalizePath, TrailingSlash};
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;

use ots_domain::{Clock, CustomerRepository, Mailer, Rng, SecretStore, Service};

mod api;
mod error;
mod pages;
mod params;
mod ratelimit;

pub use api::{Api, MetadataObject, State};
pub use error::{json_error, ErrorBody};
pub use params::{BodyLimit, TrustedProxyHeader};
pub use ratelimit::{ClassLimits, Limit, Limiter, RateLimits, RouteClass, Unlimited};

/// The use cases with the adapters the binary chose at run time.
pub type AppService = Service<
    Arc<dyn SecretStore>,
    Arc<dyn CustomerRepository>,
    Arc<dyn Mailer>,
    Arc<dyn Clock>,
    Arc<dyn Rng>,
>;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
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

/// The v1 API as an OpenAPI service: what the server mounts, the tests call and the spec
/// generator prints.
pub fn api_service(svc: Arc<AppService>, limiter: Arc<dyn Limiter>) -> OpenApiService<Api, ()> {
    OpenApiService::new(Api { svc, limiter }, "ots", env!("CARGO_PKG_VERSION"))
        .summary("One-time secrets, OneTimeSecret API v1 compatible")
        .description(
            "Share a secret through a link that works once. Every route answers JSON; errors \
             are `{\"message\": ...}` with the status that says what happened.",
        )
}

/// The generated spec as JSON, exactly as committed under `openapi/`.
pub fn spec_json(svc: Arc<AppService>) -> String {
    api_service(svc, Arc::new(Unlimited)).spec() + "\n"
}

/// The generated spec as YAML.
pub fn spec_yaml(svc: Arc<AppService>) -> String {
    api_service(svc, Arc::new(Unlimited)).spec_yaml()
}

/// The whole HTTP application: `/api/v1/...`, the spec, the docs.
pub fn app(svc: Arc<AppService>, config: &HttpConfig) -> impl Endpoint {
    let limiter = Arc::new(RateLimits::new(&config.rate_limits, "anonymous"));
    app_with_limiter(svc, config, limiter)
}

/// [`app`] with a given limiter (tests use one on a fake clock, or [`Unlimited`]).
pub fn app_with_limiter(
    svc: Arc<AppService>,
    config: &HttpConfig,
    limiter: Arc<dyn Limiter>,
) -> impl Endpoint {
    let pages = pages::routes(svc.clone(), limiter.clone(), &config.public_url);
    let api = api_service(svc, limiter);
    let docs = api.rapidoc();
    let spec = api.spec_endpoint();
    let spec_yaml = api.spec_endpoint_yaml();
    Route::new()
        .at("/api/v1/openapi.json", spec)
        .at("/api/v1/openapi.yaml", spec_yaml)
        .nest("/docs", docs)
        .nest_no_strip("/api", api)
        .nest("/", pages)
        .with(NormalizePath::new(TrailingSlash::Trim))
        .data(BodyLimit(config.body_limit))
        .data(TrustedProxyHeader(config.trusted_proxy_header.clone()))
        .catch_all_error(error::json_errors)
        .around(log_request)
}

/// One log line per request: method, path with keys redacted, status, latency. Keys are
/// capabilities and never reach the logs; query strings (which may carry secrets) are dropped.
async fn log_request<E: Endpoint>(ep: Arc<E>, req: poem::Request) -> poem::Result<poem::Response> {
    let method = req.method().clone();
    let path = redact_path(req.uri().path());
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", %method, %path);
    let result = tracing::Instrument::instrument(ep.call(req), span.clone()).await;
    let response = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    span.in_scope(|| tracing::info!(status, micros, "request"));
    Ok(response)
}

/// Replaces every path segment that looks like a key (31 base-36 characters) with `:key`.
pub fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.len() >= 20 && segment.bytes().all(|b| b.is_ascii_alphanumeric()) {
                ":key"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_redacted_from_logged_paths() {
        assert_eq!(
            super::redact_path("/api/v1/secret/153l8vbwqx5taskp92pf05uvgjefvu9"),
            "/api/v1/secret/:key"
        );
        assert_eq!(
            super::redact_path("/api/v1/private/qjpjroeit8wra0ojeyhcw5pjsgwtuq7/burn"),
            "/api/v1/private/:key/burn"
        );
        assert_eq!(super::redact_path("/api/v1/share"), "/api/v1/share");
    }
}
