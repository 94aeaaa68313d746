//! Request ids, one log line per request, Prometheus metrics, and the health endpoints.

use std::sync::Arc;
use std::time::Instant;

use poem::http::header::{ALLOW, CACHE_CONTROL};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

use ots_domain::{Event, EventSink, SecretUseCases, Timings, WriteBatches, BATCH_SECONDS};

pub const REQUEST_ID: &str = "x-request-id";

/// The service's metrics, in their own registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    secrets: IntCounterVec,
    store_errors: IntCounterVec,
    outbox_backlog: IntGauge,
    pool_size: IntGauge,
    pool_idle: IntGauge,
    write_batches: IntCounter,
    batched_writes: IntCounter,
    /// Held while those two catch up with the store's tally, so two renders at once add once.
    catching_up: std::sync::Mutex<()>,
    /// The latency histogram of each of [`ROUTES`], then of `other`, and the counter of each
    /// of [`SECRET_EVENTS`]: found once, not by their labels on every request.
    latency_by_route: Vec<Histogram>,
    secret_events: Vec<IntCounter>,
}

/// The bounds of `ots_http_request_duration_seconds`.
const REQUEST_SECONDS: [f64; 15] = [
    0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// Every name `Event::name` gives.
const SECRET_EVENTS: [&str; 5] = [
    "created",
    "revealed",
    "burned",
    "wrong_passphrase",
    "expired",
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ots_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ots_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            // From 0.1 ms: on the memory store most requests take under 0.5 ms, and a first
            // bound there told an operator (and the bench) nothing of them.
            .buckets(REQUEST_SECONDS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let secrets = IntCounterVec::new(
            Opts::new(
                "ots_secrets_total",
                "Secrets by what happened to them: created, revealed, burned, expired, wrong_passphrase",
            ),
            &["event"],
        )
        .expect("valid metric");
        let store_errors = IntCounterVec::new(
            Opts::new(
                "ots_store_errors_total",
                "Requests answered 5xx because of the store",
            ),
            &["status"],
        )
        .expect("valid metric");
        let outbox_backlog = IntGauge::new("ots_outbox_backlog", "Mails waiting in the outbox")
            .expect("valid metric");
        let pool_size = IntGauge::new("ots_db_pool_connections", "Open database connections")
            .expect("valid metric");
        let pool_idle = IntGauge::new("ots_db_pool_idle_connections", "Idle database connections")
            .expect("valid metric");
        let write_batches = IntCounter::new(
            "ots_store_write_batches_total",
            "Batches of writes the store committed at once (0 for a store that writes each request alone)",
        )
        .expect("valid metric");
        let batched_writes = IntCounter::new(
            "ots_store_batched_writes_total",
            "Writes those batches carried: divided by the batches, the writes each commit served",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(secrets.clone()),
            Box::new(store_errors.clone()),
            Box::new(outbox_backlog.clone()),
            Box::new(pool_size.clone()),
            Box::new(pool_idle.clone()),
            Box::new(write_batches.clone()),
            Box::new(batched_writes.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        let latency_by_route = ROUTES
            .iter()
            .map(|(route, _)| *route)
            .chain(["other"])
            .map(|route| latency.with_label_values(&[route]))
            .collect();
        let secret_events = SECRET_EVENTS
            .iter()
            .map(|event| secrets.with_label_values(&[event]))
            .collect();
        Self {
            registry,
            requests,
            secrets,
            store_errors,
            outbox_backlog,
            pool_size,
            pool_idle,
            write_batches,
            batched_writes,
            catching_up: Default::default(),
            latency_by_route,
            secret_events,
        }
    }

    /// The counter of secrets that went through `event`.
    fn secret_event(&self, event: &'static str) -> IntCounter {
        match SECRET_EVENTS.iter().position(|e| *e == event) {
            Some(i) => self.secret_events[i].clone(),
            None => self.secrets.with_label_values(&[event]),
        }
    }

    fn observe(&self, route: Option<usize>, method: &str, status: StatusCode, seconds: f64) {
        let label = route.map_or("other", |i| ROUTES[i].0);
        self.requests
            .with_label_values(&[label, method, status.as_str()])
            .inc();
        let histogram = route.unwrap_or(ROUTES.len());
        self.latency_by_route[histogram].observe(seconds);
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR
        ) {
            self.store_errors
                .with_label_values(&[status.as_str()])
                .inc();
        }
    }

    /// The text exposition, with the gauges read now.
    pub async fn render(&self, svc: &dyn SecretUseCases) -> String {
        if let Ok(n) = svc.mail_backlog().await {
            self.outbox_backlog.set(n as i64);
        }
        if let Some((size, idle)) = svc.pool_usage() {
            self.pool_size.set(i64::from(size));
            self.pool_idle.set(i64::from(idle));
        }
        let tally = svc.write_batches();
        if let Some(tally) = tally {
            // The store counts; the counters catch up with it (they only ever rise).
            let _one_at_a_time = self.catching_up.lock().unwrap_or_else(|e| e.into_inner());
            for (counter, now) in [
                (&self.write_batches, tally.batches),
                (&self.batched_writes, tally.writes),
            ] {
                counter.inc_by(now.saturating_sub(counter.get()));
            }
        }
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        if let Some(tally) = tally {
            store_seconds(&mut text, &tally);
        }
        text
    }
}

/// The store's histograms, in the text exposition format: `ots_store_batch_seconds`, how
/// long its batches of writes took to run and commit, and `ots_store_write_seconds`, how long
/// each write took from its queue to its answer. The store counts in its own buckets (timed
/// where it runs, beside no registry), so the families are written from its counts here
/// rather than through registered histograms.
fn store_seconds(out: &mut String, tally: &WriteBatches) {
    histogram(
        out,
        "ots_store_batch_seconds",
        "How long each batch of writes took to run and commit, durable \
         (every write waits for at least one)",
        &tally.took,
    );
    histogram(
        out,
        "ots_store_write_seconds",
        "How long each batched write took from its queue to its answer: its wait for a \
         batch and that batch's run and commit",
        &tally.answered,
    );
}

fn histogram(out: &mut String, name: &str, help: &str, timings: &Timings) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut below = 0;
    for (bound, n) in BATCH_SECONDS.iter().zip(timings.counts) {
        below += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {below}");
    }
    let count = below + timings.counts[BATCH_SECONDS.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", timings.micros as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}

/// Secrets are counted by what the use cases say happened, not by routes and statuses.
impl EventSink for Metrics {
    fn record(&self, event: &Event) {
        let n = match event {
            Event::Expired { secrets, .. } => *secrets,
            _ => 1,
        };
        self.secret_event(event.name()).inc_by(n);
        if let Event::WrongPassphrase { tries_left: 0 } = event {
            self.secret_event("burned").inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every route and the methods it answers: metrics are labelled with the route (anything
/// else is `other`, so the label set is bounded), and a 405 names the methods in `Allow`.
const ROUTES: &[(&str, &str)] = &[
    ("/api/v1/share", "POST"),
    ("/api/v1/generate", "POST"),
    ("/api/v1/secret/:key", "GET, POST"),
    ("/api/v1/private/recent", "GET"),
    ("/api/v1/private/:key", "GET, POST"),
    ("/api/v1/private/:key/burn", "POST"),
    ("/api/v1/status", "GET"),
    ("/api/v1/authcheck", "GET"),
    ("/api/v1/openapi.json", "GET"),
    ("/api/v1/openapi.yaml", "GET"),
    ("/docs", "GET"),
    ("/", "GET, POST"),
    ("/secret/:key", "GET, POST"),
    ("/private/:key", "GET"),
    ("/private/:key/burn", "POST"),
    ("/static/ots.css", "GET"),
    ("/static/ots.js", "GET"),
    ("/metrics", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
];

/// The route a path is on: `:key` stands for any one segment, and earlier routes win (so
/// `/api/v1/private/recent` is not taken for a key).
fn route(path: &str) -> Option<(&'static str, &'static str)> {
    route_index(path).map(|i| ROUTES[i])
}

/// Which of [`ROUTES`] a path is on. It runs on every request, so it takes the path apart
/// once and matches the segments, rather than trying each route in turn; the tests hold it
/// to [`ROUTES`] (`route_index_by_scan`).
fn route_index(path: &str) -> Option<usize> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let segments: [Option<&str>; 6] = std::array::from_fn(|_| parts.next());
    let key = |k: &str| !k.is_empty();
    let index = match segments {
        [Some("api"), Some("v1"), Some(a), b, c, None] => match (a, b, c) {
            ("share", None, None) => 0,
            ("generate", None, None) => 1,
            ("secret", Some(k), None) if key(k) => 2,
            ("private", Some("recent"), None) => 3,
            ("private", Some(k), None) if key(k) => 4,
            ("private", Some(k), Some("burn")) if key(k) => 5,
            ("status", None, None) => 6,
            ("authcheck", None, None) => 7,
            ("openapi.json", None, None) => 8,
            ("openapi.yaml", None, None) => 9,
            _ => return None,
        },
        [Some(a), b, c, None, None, None] => match (a, b, c) {
            ("docs", None, None) => 10,
            ("", None, None) => 11,
            ("secret", Some(k), None) if key(k) => 12,
            ("private", Some(k), None) if key(k) => 13,
            ("private", Some(k), Some("burn")) if key(k) => 14,
            ("static", Some("ots.css"), None) => 15,
            ("static", Some("ots.js"), None) => 16,
            ("metrics", None, None) => 17,
            ("healthz", None, None) => 18,
            ("readyz", None, None) => 19,
            _ => return None,
        },
        _ => return None,
    };
    Some(index)
}

/// [`route_index`] by trying each of [`ROUTES`] in order, `:key` standing for any one
/// non-empty segment and earlier routes winning: what the match must agree with.
#[cfg(test)]
fn route_index_by_scan(path: &str) -> Option<usize> {
    ROUTES.iter().position(|(route, _)| {
        let (mut pattern, mut segments) = (route.split('/'), path.split('/'));
        loop {
            match (pattern.next(), segments.next()) {
                (None, None) => return true,
                (Some(p), Some(s)) if p == s || (p == ":key" && !s.is_empty()) => {}
                _ => return false,
            }
        }
    })
}

#[cfg(test)]
fn route_label(path: &str) -> &'static str {
    route(path).map_or("other", |(r, _)| r)
}

/// Replaces every path segment that looks like a key with `:key`.
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

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            ots_domain::random_string(&ots_domain::SystemRng::new(), 16, ots_domain::KEY_ALPHABET)
                .unwrap_or_default()
        })
}

/// Wraps the app: `Cache-Control: no-store` unless the endpoint said otherwise, a request
/// id on every request (taken from `x-request-id` or made, returned
/// in the response, a field of every log line of the request), one log line per request with
/// the path's keys redacted and no query string, and the metrics.
pub async fn observe<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    metrics: Arc<Metrics>,
) -> poem::Result<Response> {
    let method = req.method().as_str().to_owned();
    let path = redact_path(req.uri().path());
    let id = request_id(&req);
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    // Boxed: the routes' future is ~4 KiB, and held inline it made this one ~9 KiB, which
    // the layers above (poem's `around` and its boxed endpoint) each moved again.
    let result = tracing::Instrument::instrument(Box::pin(ep.call(req)), span.clone()).await;
    let mut response = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let elapsed = started.elapsed();
    let status = response.status();
    metrics.observe(route_index(&path), &method, status, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            micros = elapsed.as_micros() as u64,
            "request"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED && !response.headers().contains_key(ALLOW) {
        if let Some((_, methods)) = route(&path) {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(methods));
        }
    }
    // Answers carry values, keys and metadata: no cache may keep them. Only the static
    // assets say otherwise.
    if !response.headers().contains_key(CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_under_a_tenth_of_a_millisecond_has_a_bucket_of_its_own() {
        let metrics = Metrics::new();
        metrics.observe(Some(0), "POST", StatusCode::OK, 0.000_05);
        metrics.observe(Some(0), "POST", StatusCode::OK, 0.0003);
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            r#"ots_http_request_duration_seconds_bucket{route="/api/v1/share",le="0.0001"} 1"#,
            r#"ots_http_request_duration_seconds_bucket{route="/api/v1/share",le="0.00025"} 1"#,
            r#"ots_http_request_duration_seconds_bucket{route="/api/v1/share",le="0.0005"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn store_times_are_cumulative_histograms() {
        let mut took = Timings::default();
        took.counts[Timings::bucket(0.0003)] = 5; // over 0.25 ms, at most 0.5
        took.counts[Timings::bucket(0.003)] = 2; // at most 4 ms
        took.counts[BATCH_SECONDS.len()] = 1; // over the largest bound
        took.micros = 1_500_000;
        let mut answered = Timings::default();
        answered.counts[Timings::bucket(0.0015)] = 30; // at most 2 ms
        answered.micros = 45_000;
        let tally = WriteBatches {
            batches: 9,
            writes: 30,
            took,
            answered,
        };
        let mut text = String::new();
        store_seconds(&mut text, &tally);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "# TYPE ots_store_batch_seconds histogram");
        for line in [
            r#"ots_store_batch_seconds_bucket{le="0.00025"} 0"#,
            r#"ots_store_batch_seconds_bucket{le="0.0005"} 5"#,
            r#"ots_store_batch_seconds_bucket{le="0.002"} 5"#,
            r#"ots_store_batch_seconds_bucket{le="0.004"} 7"#,
            r#"ots_store_batch_seconds_bucket{le="0.256"} 7"#,
            r#"ots_store_batch_seconds_bucket{le="+Inf"} 8"#,
            "ots_store_batch_seconds_sum 1.5",
            "ots_store_batch_seconds_count 8",
            "# TYPE ots_store_write_seconds histogram",
            r#"ots_store_write_seconds_bucket{le="0.001"} 0"#,
            r#"ots_store_write_seconds_bucket{le="0.002"} 30"#,
            r#"ots_store_write_seconds_bucket{le="+Inf"} 30"#,
            "ots_store_write_seconds_sum 0.045",
            "ots_store_write_seconds_count 30",
        ] {
            assert!(lines.contains(&line), "{line} in\n{text}");
        }
        assert_eq!(lines.len(), 2 * (2 + BATCH_SECONDS.len() + 3));
    }

    #[test]
    fn the_route_match_agrees_with_the_route_list() {
        let mut paths = vec![
            String::new(),
            "api/v1/status".into(),
            "//".into(),
            "/api/v1/status/".into(),
            "/api/v1/private/k/burn/x".into(),
            "/api/v1/private//burn".into(),
            "/api/v1/secret/".into(),
            "/a/b/c/d/e/f/g".into(),
            "/api/v1/private/k/burn".into(),
            "/API/v1/status".into(),
        ];
        for (route, _) in ROUTES {
            for key in ["0", "153l8vbwqx5taskp92pf05uvgjefvu9", "recent", "burn", ""] {
                let path = route.replace(":key", key);
                paths.push(format!("{path}/"));
                paths.push(format!("{path}/x"));
                paths.push(path[..path.len().saturating_sub(1)].to_string());
                paths.push(path);
            }
        }
        for path in &paths {
            assert_eq!(route_index(path), route_index_by_scan(path), "{path:?}");
        }
        for (i, (route, _)) in ROUTES.iter().enumerate() {
            assert_eq!(route_index(&route.replace(":key", "k")), Some(i), "{route}");
        }
    }

    #[test]
    fn keys_are_redacted_and_routes_bounded() {
        assert_eq!(
            redact_path("/api/v1/secret/153l8vbwqx5taskp92pf05uvgjefvu9"),
            "/api/v1/secret/:key"
        );
        assert_eq!(
            redact_path("/api/v1/private/qjpjroeit8wra0ojeyhcw5pjsgwtuq7/burn"),
            "/api/v1/private/:key/burn"
        );
        assert_eq!(
            route_label("/api/v1/private/:key/burn"),
            "/api/v1/private/:key/burn"
        );
        assert_eq!(route_label("/wp-admin/setup.php"), "other");
        assert_eq!(
            route_label("/api/v1/private/recent"),
            "/api/v1/private/recent"
        );
        assert_eq!(
            route_label("/api/v1/private/0/burn"),
            "/api/v1/private/:key/burn"
        );
        assert_eq!(route_label("/api/v1/secret/"), "other");
    }
}
