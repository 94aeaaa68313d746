//! The routes of the OneTimeSecret API v1, as `../shared/API-CONTRACT.md` states them.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use ots_domain::{
    Caller, Email, MetadataKey, OtsError, Passphrase, SecretKey, SecretUseCases, SecretValue,
    ShareInput, Ttl,
};

use poem::http::StatusCode;
use poem::{FromRequest, Request, RequestBody};

use crate::error::{ApiError, JsonError};
use crate::params::{BodyParams, ClientAddr, Login, OptionalAuth, RequiredAuth};
use crate::ratelimit::{Limiter, RouteClass};

mod objects;

pub use objects::*;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The v1 API. It holds nothing: each request finds the use cases and the limiter in its
/// data (see [`Ctx`]), so the spec is printed from the routes alone.
pub struct Api;

/// What a handler works with: the use cases and the rate limiter the app was built with.
pub struct Ctx {
    svc: Arc<dyn SecretUseCases>,
    limiter: Arc<dyn Limiter>,
}

impl<'a> FromRequest<'a> for Ctx {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let missing = || {
            JsonError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the API is mounted without its use cases",
            )
        };
        Ok(Self {
            svc: request
                .data::<Arc<dyn SecretUseCases>>()
                .ok_or_else(missing)?
                .clone(),
            limiter: request
                .data::<Arc<dyn Limiter>>()
                .ok_or_else(missing)?
                .clone(),
        })
    }
}

/// A body value wins over the query string's.
fn pick<'a, T>(
    body: &'a BodyParams<T>,
    query: &'a Query<Option<String>>,
    name: &str,
) -> Option<&'a str> {
    body.get(name).or(query.0.as_deref())
}

fn share_input(
    passphrase: Option<&str>,
    ttl: Option<&str>,
    recipient: Option<&str>,
) -> Result<ShareInput, ApiError> {
    let ttl = match ttl.filter(|t| !t.trim().is_empty()) {
        Some(raw) => Some(Ttl::parse(raw).ok_or(OtsError::InvalidTtl)?),
        None => None,
    };
    let recipient = match recipient.filter(|r| !r.trim().is_empty()) {
        Some(raw) => Some(Email::parse(raw).ok_or(OtsError::InvalidRecipient)?),
        None => None,
    };
    Ok(ShareInput {
        passphrase: passphrase.and_then(Passphrase::parse),
        ttl,
        recipient,
    })
}

impl Ctx {
    /// Authenticates and applies the rate limit of the route class: per customer with the
    /// customer's plan, per client address for anonymous requests and for failed logins.
    async fn admit(
        &self,
        client: &ClientAddr,
        class: RouteClass,
        login: Option<Login>,
    ) -> Result<Caller, ApiError> {
        let by_address = || {
            self.limiter
                .check(ANONYMOUS_PLAN, class, &format!("ip:{}", client.0))
                .map_err(ApiError::too_many_requests)
        };
        let authenticated = match &login {
            None => self.svc.authenticate(None).await,
            Some(Login::Credentials(credentials)) => self.svc.authenticate(Some(credentials)).await,
            Some(Login::Unparseable) => Err(OtsError::Unauthorized),
        };
        match authenticated {
            Ok(caller) if caller.custid.is_anonymous() => {
                by_address()?;
                Ok(caller)
            }
            Ok(caller) => {
                self.limiter
                    .check(&caller.plan.name, class, &format!("cust:{}", caller.custid))
                    .map_err(ApiError::too_many_requests)?;
                Ok(caller)
            }
            Err(err @ OtsError::Unauthorized) => {
                by_address()?;
                Err(err.into())
            }
            Err(err) => Err(err.into()),
        }
    }
}

const ANONYMOUS_PLAN: &str = "anonymous";

#[OpenApi(prefix_path = "/api/v1")]
impl Api {
    /// Store a secret
    ///
    /// Encrypts and stores `secret`; answers its metadata, whose `secret_key` is the key to
    /// share and whose `metadata_key` is the creator's private key.
    #[oai(path = "/share", method = "post", operation_id = "share")]
    #[allow(clippy::too_many_arguments)]
    async fn share(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        secret: Query<Option<String>>,
        passphrase: Query<Option<String>>,
        ttl: Query<Option<String>>,
        recipient: Query<Option<String>>,
        body: BodyParams<ShareParams>,
    ) -> ApiResult<MetadataObject> {
        let caller = ctx.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(
            pick(&body, &passphrase, "passphrase"),
            pick(&body, &ttl, "ttl"),
            pick(&body, &recipient, "recipient"),
        )?;
        let value = pick(&body, &secret, "secret").map(SecretValue::new);
        let shared = ctx.svc.share(&caller, value, input).await?;
        Ok(Json(MetadataObject::of(shared.metadata, None)))
    }

    /// Generate a secret
    ///
    /// Generates a 12-character value (letters and digits without look-alikes), stores it
    /// like `share`, and shows it once in `value`.
    #[oai(path = "/generate", method = "post", operation_id = "generate")]
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        passphrase: Query<Option<String>>,
        ttl: Query<Option<String>>,
        recipient: Query<Option<String>>,
        body: BodyParams<GenerateParams>,
    ) -> ApiResult<MetadataObject> {
        let caller = ctx.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(
            pick(&body, &passphrase, "passphrase"),
            pick(&body, &ttl, "ttl"),
            pick(&body, &recipient, "recipient"),
        )?;
        let shared = ctx.svc.generate(&caller, input).await?;
        Ok(Json(MetadataObject::of(shared.metadata, shared.value)))
    }

    /// Reveal a secret, once
    ///
    /// The first successful call gets the value; every later one gets 404. A wrong or
    /// missing passphrase is a 403 and leaves the secret in place, until the try limit burns
    /// it.
    #[oai(path = "/secret/:secret_key", method = "post", method = "get")]
    async fn reveal(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The shareable key.
        secret_key: Path<String>,
        passphrase: Query<Option<String>>,
        body: BodyParams<RevealParams>,
    ) -> ApiResult<Secret> {
        ctx.admit(&client, RouteClass::Reveal, auth.0).await?;
        let unknown = || ApiError::unknown_secret(&secret_key);
        let key = SecretKey::parse(&secret_key).ok_or_else(unknown)?;
        let passphrase = pick(&body, &passphrase, "passphrase").and_then(Passphrase::parse);
        match ctx.svc.reveal(&key, passphrase).await {
            Ok(revealed) => Ok(Json(Secret {
                secret_key: revealed.secret_key.to_string(),
                value: revealed.value.expose().to_owned(),
            })),
            Err(OtsError::NotFound) => Err(unknown()),
            Err(err) => Err(err.into()),
        }
    }

    /// Recent metadata
    ///
    /// The caller's metadata still alive, newest first; `secret_key` is always null here.
    #[oai(path = "/private/recent", method = "get", operation_id = "recent")]
    async fn recent(
        &self,
        ctx: Ctx,
        auth: RequiredAuth,
        client: ClientAddr,
        /// At most this many items (1 to 100; default 100).
        limit: Query<Option<i64>>,
    ) -> ApiResult<Vec<MetadataObject>> {
        let caller = ctx.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        let items = ctx.svc.recent(&caller, limit.0).await?;
        Ok(Json(
            items
                .into_iter()
                .map(|view| MetadataObject::of(view, None))
                .collect(),
        ))
    }

    /// Show metadata
    ///
    /// The creator's view of one secret: its state and when it was received or burned.
    #[oai(path = "/private/:metadata_key", method = "post", method = "get")]
    async fn metadata(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject> {
        ctx.admit(&client, RouteClass::Other, auth.0).await?;
        let unknown = || ApiError::unknown_metadata(&metadata_key);
        let key = MetadataKey::parse(&metadata_key).ok_or_else(unknown)?;
        match ctx.svc.metadata(&key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(OtsError::NotFound) => Err(unknown()),
            Err(err) => Err(err.into()),
        }
    }

    /// Burn a secret
    ///
    /// Destroys a secret that has not been read; answers its metadata, `burned`. 404 when the
    /// secret is no longer `new`.
    #[oai(
        path = "/private/:metadata_key/burn",
        method = "post",
        operation_id = "burn"
    )]
    async fn burn(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject> {
        ctx.admit(&client, RouteClass::Other, auth.0).await?;
        let unknown = || ApiError::unknown_metadata(&metadata_key);
        let key = MetadataKey::parse(&metadata_key).ok_or_else(unknown)?;
        match ctx.svc.burn(&key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(OtsError::NotFound) => Err(unknown()),
            Err(err) => Err(err.into()),
        }
    }

    /// System status
    ///
    /// `nominal` when the store answers; `offline` with 503 when it does not.
    #[oai(path = "/status", method = "get", operation_id = "status")]
    async fn status(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
    ) -> Result<StatusResponse, ApiError> {
        ctx.admit(&client, RouteClass::Other, auth.0).await?;
        let status = |s: &str| Json(StatusBody { status: s.into() });
        Ok(if ctx.svc.is_available().await {
            StatusResponse::Nominal(status("nominal"))
        } else {
            StatusResponse::Offline(status("offline"))
        })
    }

    /// Check credentials
    ///
    /// 200 with the custid when the credentials are good; 401 otherwise.
    #[oai(path = "/authcheck", method = "get", operation_id = "authcheck")]
    async fn authcheck(
        &self,
        ctx: Ctx,
        auth: RequiredAuth,
        client: ClientAddr,
    ) -> ApiResult<AuthCheck> {
        let caller = ctx.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        Ok(Json(AuthCheck {
            custid: caller.custid.to_string(),
        }))
    }
}
