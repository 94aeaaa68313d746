//! Browser pages: create a secret, the creator's page, and the recipient's page that reveals
//! only on a button press (a plain GET never reveals: link previews in chat and mail must not
//! burn secrets). Server-rendered (minijinja), no external assets, a strict CSP, no-referrer,
//! no-store, and CSRF tokens (double submit, SameSite=Strict cookie) on every form. The pages
//! call the same use cases as the API, through the same port.

use std::sync::Arc;

use minijinja::{context, Environment};
use poem::http::{header, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};

use ots_domain::{
    Email, MetadataKey, OtsError, Passphrase, SecretKey, SecretValue, ShareInput, Ttl,
};

use crate::params::{ClientAddr, FormFields};
use crate::ratelimit::{Limiter, RouteClass};
use crate::UseCases;

mod render;
mod time;

use render::Csrf;
use time::{duration, utc};

/// What the pages need: the use cases, the limiter, where links point, the templates.
pub struct Pages {
    svc: UseCases,
    limiter: Arc<dyn Limiter>,
    public_url: String,
    secure_cookie: bool,
    templates: Environment<'static>,
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("index.html", include_str!("../../templates/index.html")),
        ("private.html", include_str!("../../templates/private.html")),
        ("secret.html", include_str!("../../templates/secret.html")),
        (
            "revealed.html",
            include_str!("../../templates/revealed.html"),
        ),
        ("message.html", include_str!("../../templates/message.html")),
    ] {
        env.add_template(name, source)
            .expect("the built-in templates parse");
    }
    env
}

/// The pages as a route: `/`, `/private/:key`, `/private/:key/burn`, `/secret/:key`,
/// `/static/…`.
pub fn routes(svc: UseCases, limiter: Arc<dyn Limiter>, public_url: &str) -> impl Endpoint {
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
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/ots.css"),
    )
}

#[handler]
fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/ots.js"),
    )
}

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(body)
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
    match pages.svc.share(&pages.svc.anonymous(), value, input).await {
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

#[handler]
async fn private_page(
    req: &Request,
    pages: Data<&Arc<Pages>>,
    Path(key): Path<String>,
) -> Response {
    let csrf = pages.csrf(req);
    let Some(metadata_key) = MetadataKey::parse(&key) else {
        return pages.failure(OtsError::NotFound, &csrf);
    };
    let md = match pages.svc.metadata(&metadata_key).await {
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
    let Some(metadata_key) = MetadataKey::parse(&key) else {
        return pages.failure(OtsError::NotFound, &csrf);
    };
    match pages.svc.burn(&metadata_key).await {
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
    let Some(secret_key) = SecretKey::parse(&key) else {
        return pages.failure(OtsError::NotFound, &csrf);
    };
    match pages.svc.peek(&secret_key).await {
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
    let Some(secret_key) = SecretKey::parse(&key) else {
        return pages.failure(OtsError::NotFound, &csrf);
    };
    let passphrase = form.get("passphrase").and_then(|p| Passphrase::parse(p));
    match pages.svc.reveal(&secret_key, passphrase).await {
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
