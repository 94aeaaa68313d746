//! Browser pages: create a secret, the creator's page, and the recipient's page that reveals
//! only on a button press (a plain GET never reveals: link previews in chat and mail must not
//! burn secrets). Server-rendered (minijinja), no external assets, a strict CSP, no-referrer,
//! no-store, and CSRF tokens (double submit, SameSite=Strict cookie) on every form. The pages
//! call the same use cases as the API.

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::{context, Environment, Value};
use poem::http::{header, HeaderValue, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};

use ots_domain::{crypto, Caller, Email, OtsError, Passphrase, SecretValue, ShareInput, Ttl};

use crate::params::{ClientAddr, FormFields};
use crate::ratelimit::{Limiter, RouteClass};
use crate::AppService;

const CSRF_COOKIE: &str = "ots_csrf";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the pages need: the use cases, the limiter, where links point, the templates.
pub struct Pages {
    svc: Arc<AppService>,
    limiter: Arc<dyn Limiter>,
    public_url: String,
    secure_cookie: bool,
    templates: Environment<'static>,
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("index.html", include_str!("../templates/index.html")),
        ("private.html", include_str!("../templates/private.html")),
        ("secret.html", include_str!("../templates/secret.html")),
        ("revealed.html", include_str!("../templates/revealed.html")),
        ("message.html", include_str!("../templates/message.html")),
    ] {
        env.add_template(name, source)
            .expect("the built-in templates parse");
    }
    env
}

/// The pages as a route: `/`, `/private/:key`, `/private/:key/burn`, `/secret/:key`,
/// `/static/…`.
pub fn routes(svc: Arc<AppService>, limiter: Arc<dyn Limiter>, public_url: &str) -> impl Endpoint {
    let pages = Arc::new(Pages {
        svc,
        limiter,
        public_url: public_url.trim_end_matches('/').to_owned(),
        secure_cookie: public_url.starts_with("https://"),
        templates: templates(),
    });
    Route::new()
        .at("/", poem::get(index).post(create))
        .at("/private/:key", poem::get(private_page))
        .at("/private/:key/burn", poem::post(burn))
        .at("/secret/:key", poem::get(secret_page).post(reveal))
        .at("/static/ots.css", poem::get(stylesheet))
        .at("/static/ots.js", poem::get(script))
        .data(pages)
}

#[handler]
fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../static/ots.css"))
}

#[handler]
fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../static/ots.js"),
    )
}

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(body)
}

/// The session's CSRF token: the cookie's, or a fresh one to set.
struct Csrf {
    token: String,
    fresh: bool,
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Pages {
    fn csrf(&self, req: &Request) -> Csrf {
        match cookie(req, CSRF_COOKIE) {
            Some(token) => Csrf {
                token,
                fresh: false,
            },
            None => Csrf {
                token: ots_domain::random_string(
                    &ots_domain::SystemRng::new(),
                    32,
                    ots_domain::KEY_ALPHABET,
                )
                .unwrap_or_default(),
                fresh: true,
            },
        }
    }

    /// Whether a POSTed form carries the session's token.
    fn csrf_ok(&self, req: &Request, form: &HashMap<String, String>) -> bool {
        match (cookie(req, CSRF_COOKIE), form.get("csrf")) {
            (Some(cookie), Some(field)) => {
                crypto::constant_time_eq(cookie.as_bytes(), field.as_bytes())
            }
            _ => false,
        }
    }

    fn render(&self, status: StatusCode, name: &str, ctx: Value, csrf: &Csrf) -> Response {
        let html = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template = name, "template failed");
                "<!doctype html><title>Error</title><p>Internal error".to_owned()
            });
        let mut resp = Response::builder()
            .status(status)
            .content_type("text/html; charset=utf-8")
            .body(html);
        let headers = resp.headers_mut();
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if csrf.fresh {
            let secure = if self.secure_cookie { "; Secure" } else { "" };
            let value = format!(
                "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
                csrf.token
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::SET_COOKIE, v);
            }
        }
        resp
    }

    fn message(&self, status: StatusCode, heading: &str, message: &str, csrf: &Csrf) -> Response {
        self.render(status, "message.html", context! { heading, message }, csrf)
    }

    fn gone(&self, csrf: &Csrf) -> Response {
        self.message(
            StatusCode::NOT_FOUND,
            "This secret is not here",
            "It was already viewed, burned, or it expired; or the link is wrong. Secrets are shown once.",
            csrf,
        )
    }

    fn failure(&self, err: OtsError, csrf: &Csrf) -> Response {
        match err {
            OtsError::NotFound => self.gone(csrf),
            OtsError::Unavailable => self.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again soon",
                "The service cannot reach its storage right now.",
                csrf,
            ),
            other => {
                tracing::error!(error = %other, "page failed");
                self.message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Please try again.",
                    csrf,
                )
            }
        }
    }

    fn expired_form(&self, csrf: &Csrf) -> Response {
        self.message(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the page and try again.",
            csrf,
        )
    }

    fn limited(&self, client: &ClientAddr, class: RouteClass, csrf: &Csrf) -> Option<Response> {
        let wait = self
            .limiter
            .check("anonymous", class, &format!("ip:{}", client.0))
            .err()?;
        let mut resp = self.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Slow down",
            &format!(
                "Too many requests: try again in {} seconds.",
                wait.as_secs().max(1)
            ),
            csrf,
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        Some(resp)
    }

    fn anonymous(&self) -> Caller {
        Caller {
            custid: ots_domain::CustId::anonymous(),
            plan: self.svc.policy().anonymous_plan.clone(),
        }
    }

    fn index_page(
        &self,
        status: StatusCode,
        csrf: &Csrf,
        error: Option<&str>,
        secret: &str,
    ) -> Response {
        let policy = self.svc.policy();
        let max = policy.anonymous_plan.max_ttl;
        let mut ttls: Vec<(i64, &str)> = [
            (300, "5 minutes"),
            (3600, "1 hour"),
            (86_400, "1 day"),
            (3 * 86_400, "3 days"),
            (7 * 86_400, "7 days"),
            (14 * 86_400, "14 days"),
            (30 * 86_400, "30 days"),
        ]
        .into_iter()
        .filter(|(s, _)| *s <= max)
        .collect();
        if ttls.is_empty() {
            ttls.push((max, "as long as allowed"));
        }
        let preferred = ttls
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s <= policy.default_ttl)
            .max()
            .unwrap_or(ttls[0].0);
        let ttls: Vec<Value> = ttls
            .into_iter()
            .map(|(seconds, label)| context! { seconds, label, selected => seconds == preferred })
            .collect();
        self.render(
            status,
            "index.html",
            context! { csrf => csrf.token, ttls, error, secret, max_bytes => policy.anonymous_plan.max_secret_bytes },
            csrf,
        )
    }
}

#[handler]
fn index(req: &Request, pages: Data<&Arc<Pages>>) -> Response {
    let csrf = pages.csrf(req);
    pages.index_page(StatusCode::OK, &csrf, None, "")
}

#[handler]
async fn create(
    req: &Request,
    pages: Data<&Arc<Pages>>,
    client: ClientAddr,
    FormFields(form): FormFields,
) -> Response {
    let csrf = pages.csrf(req);
    if !pages.csrf_ok(req, &form) {
        return pages.expired_form(&csrf);
    }
    if let Some(limited) = pages.limited(&client, RouteClass::Create, &csrf) {
        return limited;
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let secret = field("secret");
    let recipient = match field("recipient").trim() {
        "" => None,
        raw => match Email::parse(raw) {
            Some(email) => Some(email),
            None => {
                return pages.index_page(
                    StatusCode::BAD_REQUEST,
                    &csrf,
                    Some("That email address does not look right."),
                    secret,
                )
            }
        },
    };
    let input = ShareInput {
        passphrase: Passphrase::parse(field("passphrase")),
        ttl: Ttl::parse(field("ttl")),
        recipient,
    };
    let value = Some(SecretValue::new(secret));
    match pages.svc.share(&pages.anonymous(), value, input).await {
        Ok(shared) => {
            poem::web::Redirect::see_other(format!("/private/{}", shared.metadata.metadata_key))
                .into_response()
        }
        Err(
            err
            @ (OtsError::NothingToShare | OtsError::TooLarge { .. } | OtsError::AccountRequired),
        ) => pages.index_page(
            StatusCode::BAD_REQUEST,
            &csrf,
            Some(&err.to_string()),
            secret,
        ),
        Err(err) => pages.failure(err, &csrf),
    }
}

/// `2026-11-24 10:42 UTC` from unix seconds (civil-from-days, proleptic Gregorian).
fn utc(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

fn duration(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (d, h, m) {
        (0, 0, m) => {
            let m = m.max(1);
            format!("{m} minute{}", if m == 1 { "" } else { "s" })
        }
        (0, h, _) => format!("{h} hour{}", if h == 1 { "" } else { "s" }),
        (d, h, _) => format!("{d} day{} {h} h", if d == 1 { "" } else { "s" }),
    }
}

#[handler]
async fn private_page(
    req: &Request,
    pages: Data<&Arc<Pages>>,
    Path(key): Path<String>,
) -> Response {
    let csrf = pages.csrf(req);
    let md = match pages.svc.metadata(&key).await {
        Ok(md) => md,
        Err(err) => return pages.failure(err, &csrf),
    };
    let link = md
        .secret_key
        .as_ref()
        .map(|k| format!("{}/secret/{k}", pages.public_url));
    let ctx = context! {
        csrf => csrf.token,
        link,
        secret_ttl => md.secret_ttl.map(duration),
        created => utc(md.created),
        received => md.received.map(utc),
        burned => md.burned.map(utc),
        md => context! {
            state => md.state.as_str(),
            metadata_key => md.metadata_key,
            passphrase_required => md.passphrase_required,
            recipient => md.recipient,
        },
    };
    pages.render(StatusCode::OK, "private.html", ctx, &csrf)
}

#[handler]
async fn burn(
    req: &Request,
    pages: Data<&Arc<Pages>>,
    Path(key): Path<String>,
    FormFields(form): FormFields,
) -> Response {
    let csrf = pages.csrf(req);
    if !pages.csrf_ok(req, &form) {
        return pages.expired_form(&csrf);
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        return pages.message(
            StatusCode::BAD_REQUEST,
            "Not burned",
            "Tick the box to confirm that the secret should be destroyed.",
            &csrf,
        );
    }
    match pages.svc.burn(&key).await {
        Ok(_) | Err(OtsError::NotFound) => {
            poem::web::Redirect::see_other(format!("/private/{key}")).into_response()
        }
        Err(err) => pages.failure(err, &csrf),
    }
}

fn secret_form(
    pages: &Pages,
    status: StatusCode,
    key: &str,
    passphrase_required: bool,
    error: Option<String>,
    csrf: &Csrf,
) -> Response {
    pages.render(
        status,
        "secret.html",
        context! { csrf => csrf.token, key, passphrase_required, error },
        csrf,
    )
}

#[handler]
async fn secret_page(req: &Request, pages: Data<&Arc<Pages>>, Path(key): Path<String>) -> Response {
    let csrf = pages.csrf(req);
    match pages.svc.peek(&key).await {
        Ok(peek) => secret_form(
            &pages,
            StatusCode::OK,
            &key,
            peek.passphrase_required,
            None,
            &csrf,
        ),
        Err(err) => pages.failure(err, &csrf),
    }
}

#[handler]
async fn reveal(
    req: &Request,
    pages: Data<&Arc<Pages>>,
    client: ClientAddr,
    Path(key): Path<String>,
    FormFields(form): FormFields,
) -> Response {
    let csrf = pages.csrf(req);
    if !pages.csrf_ok(req, &form) {
        return pages.expired_form(&csrf);
    }
    if let Some(limited) = pages.limited(&client, RouteClass::Reveal, &csrf) {
        return limited;
    }
    let passphrase = form.get("passphrase").and_then(|p| Passphrase::parse(p));
    match pages.svc.reveal(&key, passphrase).await {
        Ok(revealed) => pages.render(
            StatusCode::OK,
            "revealed.html",
            context! { value => revealed.value.expose() },
            &csrf,
        ),
        Err(OtsError::WrongPassphrase { tries_left: 0 }) => pages.message(
            StatusCode::FORBIDDEN,
            "Wrong passphrase",
            "That was the last try: the secret has been destroyed.",
            &csrf,
        ),
        Err(OtsError::WrongPassphrase { tries_left }) => {
            let error = format!(
                "Wrong passphrase. {tries_left} tries left before the secret is destroyed."
            );
            secret_form(
                &pages,
                StatusCode::FORBIDDEN,
                &key,
                true,
                Some(error),
                &csrf,
            )
        }
        Err(err) => pages.failure(err, &csrf),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(1_795_516_354), "2026-11-24 10:32 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::duration(59), "1 minute");
        assert_eq!(super::duration(7200), "2 hours");
        assert_eq!(super::duration(7 * 86_400 - 1), "6 days 23 h");
    }
}
