//! How a page leaves: templates, security headers, the CSRF double submit, and the pages
//! for errors, which take their status and message from the one error map ([`Answer`]).

use std::collections::HashMap;

use minijinja::{context, Value};
use poem::http::{header, HeaderValue, StatusCode};
use poem::{Request, Response};

use ots_domain::{crypto, OtsError};

use super::Pages;
use crate::error::Answer;
use crate::params::ClientAddr;
use crate::ratelimit::RouteClass;

const CSRF_COOKIE: &str = "ots_csrf";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The session's CSRF token: the cookie's, or a fresh one to set.
pub(super) struct Csrf {
    pub(super) token: String,
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
    pub(super) fn csrf(&self, req: &Request) -> Csrf {
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
    pub(super) fn csrf_ok(&self, req: &Request, form: &HashMap<String, String>) -> bool {
        match (cookie(req, CSRF_COOKIE), form.get("csrf")) {
            (Some(cookie), Some(field)) => {
                crypto::constant_time_eq(cookie.as_bytes(), field.as_bytes())
            }
            _ => false,
        }
    }

    pub(super) fn render(
        &self,
        status: StatusCode,
        name: &str,
        ctx: Value,
        csrf: &Csrf,
    ) -> Response {
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

    pub(super) fn message(
        &self,
        status: StatusCode,
        heading: &str,
        message: &str,
        csrf: &Csrf,
    ) -> Response {
        self.render(status, "message.html", context! { heading, message }, csrf)
    }

    /// The page for a failed use case: the status and message of the one error map, under
    /// a heading (and, for a missing secret, an explanation) people understand.
    pub(super) fn failure(&self, err: OtsError, csrf: &Csrf) -> Response {
        let answer = Answer::of(&err);
        let (heading, message) = match answer.status {
            StatusCode::NOT_FOUND => (
                "This secret is not here",
                "It was already viewed, burned, or it expired; or the link is wrong. Secrets \
                 are shown once."
                    .to_owned(),
            ),
            StatusCode::SERVICE_UNAVAILABLE => (
                "Try again soon",
                "The service cannot reach its storage right now.".to_owned(),
            ),
            StatusCode::FORBIDDEN => ("Wrong passphrase", answer.message),
            s if s.is_server_error() => ("Something went wrong", "Please try again.".to_owned()),
            _ => ("That did not work", answer.message),
        };
        self.message(answer.status, heading, &message, csrf)
    }

    pub(super) fn expired_form(&self, csrf: &Csrf) -> Response {
        self.message(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the page and try again.",
            csrf,
        )
    }

    pub(super) fn limited(
        &self,
        client: &ClientAddr,
        class: RouteClass,
        csrf: &Csrf,
    ) -> Option<Response> {
        let wait = self.limiter.check("anonymous", class, &client.0).err()?;
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

    pub(super) fn index_page(
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
