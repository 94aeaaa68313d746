//! The routes of the OneTimeSecret API v1, as `../shared/API-CONTRACT.md` states them.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::{OpenApi, Tags};

use ots_domain::{
    Caller, Email, MetadataKey, OtsError, Passphrase, SecretKey, SecretUseCases, SecretValue,
    ShareInput, Ttl,
};

use poem::http::StatusCode;
use poem::{FromRequest, Request, RequestBody};

use crate::error::{ApiError, ErrorBody, Failure, JsonError, Statuses};
use crate::json::Json;
use crate::params::{BodyParams, ClientAddr, Login, OptionalAuth, RequiredAuth};
use crate::ratelimit::{Limiter, RateKey, RouteClass};
use crate::RequestData;

mod objects;

pub use objects::*;

type ApiResult<T, S> = Result<Json<T>, Failure<S>>;

/// The statuses each kind of operation can fail with, and so all its spec lists besides 200:
/// 400, 413 and 415 where a body is read or a parameter checked; 401 for credentials
/// (present and wrong, or missing where required); 403 and 404 where a secret is looked up;
/// 429, 500 and 503 everywhere.
macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $list:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl Statuses for $name {
            const LIST: &'static [u16] = &$list;
        }
    )*};
}

statuses! {
    /// share, generate.
    Creating = [400, 401, 413, 415, 429, 500, 503];
    /// revealSecret: a body, a passphrase, a secret.
    Revealing = [400, 401, 403, 404, 413, 415, 429, 500, 503];
    /// revealSecretByGet: no body.
    RevealingByGet = [401, 403, 404, 429, 500, 503];
    /// getMetadata, getMetadataByPost, burnSecret: no body, no passphrase.
    LookingUp = [401, 404, 429, 500, 503];
    /// listRecent: `limit` is checked.
    Listing = [400, 401, 429, 500, 503];
    /// getStatus, checkAuth.
    Checking = [401, 429, 500, 503];
}

/// The v1 API. It holds nothing: each request finds the use cases and the limiter in its
/// data (see [`Ctx`]), so the spec is printed from the routes alone.
pub struct Api;

/// What a handler works with: the use cases and the rate limiter the app was built with.
pub struct Ctx(Arc<RequestData>);

impl<'a> FromRequest<'a> for Ctx {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let data = request.data::<Arc<RequestData>>().ok_or_else(|| {
            JsonError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the API is mounted without its use cases",
            )
        })?;
        Ok(Self(data.clone()))
    }
}

impl Ctx {
    fn svc(&self) -> &dyn SecretUseCases {
        &*self.0.svc
    }

    fn limiter(&self) -> &dyn Limiter {
        &*self.0.limiter
    }
}

/// What share and generate take besides the value, parsed at the edge; a body value wins
/// over the query string's.
fn share_input<T>(params: &BodyParams<T>) -> Result<ShareInput, ApiError> {
    // A bad value is a 400 wherever it is given, even where the body's wins; a blank one is
    // no value (forms send blank fields).
    fn both<T, V>(
        params: &BodyParams<T>,
        name: &str,
        parse: fn(&str) -> Option<V>,
        invalid: fn() -> OtsError,
    ) -> Result<Option<V>, OtsError> {
        let parse = |raw: Option<&str>| match raw.filter(|r| !r.trim().is_empty()) {
            Some(raw) => parse(raw).map(Some).ok_or_else(invalid),
            None => Ok(None),
        };
        let query = parse(params.query_value(name))?;
        Ok(parse(params.body_value(name))?.or(query))
    }
    Ok(ShareInput {
        passphrase: params.get("passphrase").and_then(Passphrase::parse),
        ttl: both(params, "ttl", Ttl::parse, || OtsError::InvalidTtl)?,
        recipient: both(params, "recipient", Email::parse, || {
            OtsError::InvalidRecipient
        })?,
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
            self.limiter()
                .check(ANONYMOUS_PLAN, class, &client.0)
                .map_err(ApiError::too_many_requests)
        };
        let authenticated = match &login {
            None => self.svc().authenticate(None).await,
            Some(Login::Credentials(credentials)) => {
                self.svc().authenticate(Some(credentials)).await
            }
            Some(Login::Unparseable) => Err(OtsError::Unauthorized),
        };
        match authenticated {
            Ok(caller) if caller.custid.is_anonymous() => {
                by_address()?;
                Ok(caller)
            }
            Ok(caller) => {
                self.limiter()
                    .check(
                        &caller.plan.name,
                        class,
                        &RateKey::Customer(caller.custid.to_string()),
                    )
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

/// How the operations are grouped in the docs and in generated clients.
#[derive(Tags)]
enum ApiTags {
    /// Storing and revealing secrets.
    Secrets,
    /// The creator's view of a secret, with its metadata key.
    Metadata,
    /// What needs a customer's credentials.
    Account,
    /// The service itself.
    Service,
}

impl Ctx {
    async fn reveal<S: Statuses>(
        &self,
        client: &ClientAddr,
        login: Option<Login>,
        secret_key: &str,
        passphrase: Option<&str>,
    ) -> ApiResult<Secret, S> {
        self.admit(client, RouteClass::Reveal, login).await?;
        let unknown = || ApiError::unknown_secret(secret_key);
        let key = SecretKey::parse(secret_key).ok_or_else(unknown)?;
        match self
            .svc()
            .reveal(&key, passphrase.and_then(Passphrase::parse))
            .await
        {
            Ok(revealed) => Ok(Json(Secret {
                secret_key: revealed.secret_key.to_string(),
                value: revealed.value.expose().to_owned(),
            })),
            Err(OtsError::NotFound) => Err(unknown().into()),
            Err(err) => Err(err.into()),
        }
    }

    async fn metadata(
        &self,
        client: &ClientAddr,
        login: Option<Login>,
        metadata_key: &str,
    ) -> ApiResult<MetadataObject, LookingUp> {
        self.admit(client, RouteClass::Other, login).await?;
        let unknown = || ApiError::unknown_metadata(metadata_key);
        let key = MetadataKey::parse(metadata_key).ok_or_else(unknown)?;
        match self.svc().metadata(&key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(OtsError::NotFound) => Err(unknown().into()),
            Err(err) => Err(err.into()),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl Api {
    /// Store a secret
    ///
    /// Encrypts and stores `secret`; answers its metadata, whose `secret_key` is the key to
    /// share and whose `metadata_key` is the creator's private key.
    #[oai(
        path = "/share",
        method = "post",
        operation_id = "shareSecret",
        tag = "ApiTags::Secrets"
    )]
    async fn share(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        params: BodyParams<ShareParams>,
    ) -> ApiResult<MetadataObject, Creating> {
        let caller = ctx.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(&params)?;
        // An empty secret is refused wherever it is given, even where the body's wins.
        if params.query_value("secret") == Some("") {
            return Err(OtsError::NothingToShare.into());
        }
        let secret = params.get("secret");
        let shared = ctx
            .svc()
            .share(&caller, secret.map(SecretValue::new), input)
            .await?;
        Ok(Json(MetadataObject::of(shared.metadata, None)))
    }

    /// Generate a secret
    ///
    /// Generates a 12-character value (letters and digits without look-alikes), stores it
    /// like `share`, and shows it once in `value`.
    #[oai(
        path = "/generate",
        method = "post",
        operation_id = "generateSecret",
        tag = "ApiTags::Secrets"
    )]
    async fn generate(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        params: BodyParams<GenerateParams>,
    ) -> ApiResult<MetadataObject, Creating> {
        let caller = ctx.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(&params)?;
        let shared = ctx.svc().generate(&caller, input).await?;
        Ok(Json(MetadataObject::of(shared.metadata, shared.value)))
    }

    /// Reveal a secret, once
    ///
    /// The first successful call gets the value; every later one gets 404. A wrong or
    /// missing passphrase is a 403 and leaves the secret in place, until the try limit burns
    /// it.
    #[oai(
        path = "/secret/:secret_key",
        method = "post",
        operation_id = "revealSecret",
        tag = "ApiTags::Secrets"
    )]
    async fn reveal_secret(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The shareable key.
        secret_key: Path<String>,
        params: BodyParams<RevealParams>,
    ) -> ApiResult<Secret, Revealing> {
        ctx.reveal(&client, auth.0, &secret_key, params.get("passphrase"))
            .await
    }

    /// Reveal a secret, once (GET)
    ///
    /// As `revealSecret`: the API is for programs, and a GET reveals too.
    #[oai(
        path = "/secret/:secret_key",
        method = "get",
        operation_id = "revealSecretByGet",
        tag = "ApiTags::Secrets"
    )]
    async fn reveal_secret_by_get(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The shareable key.
        secret_key: Path<String>,
        /// Required when the secret was created with one.
        passphrase: Query<Option<String>>,
    ) -> ApiResult<Secret, RevealingByGet> {
        ctx.reveal(&client, auth.0, &secret_key, passphrase.0.as_deref())
            .await
    }

    /// Recent metadata
    ///
    /// The caller's metadata still alive, newest first; `secret_key` is always null here.
    #[oai(
        path = "/private/recent",
        method = "get",
        operation_id = "listRecent",
        tag = "ApiTags::Account"
    )]
    async fn recent(
        &self,
        ctx: Ctx,
        auth: RequiredAuth,
        client: ClientAddr,
        /// At most this many items (1 to 100; default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
    ) -> ApiResult<Vec<MetadataObject>, Listing> {
        let caller = ctx.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        let items = ctx.svc().recent(&caller, limit.0).await?;
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
    #[oai(
        path = "/private/:metadata_key",
        method = "get",
        operation_id = "getMetadata",
        tag = "ApiTags::Metadata"
    )]
    async fn get_metadata(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject, LookingUp> {
        ctx.metadata(&client, auth.0, &metadata_key).await
    }

    /// Show metadata (POST)
    ///
    /// As `getMetadata`, for clients that POST every call.
    #[oai(
        path = "/private/:metadata_key",
        method = "post",
        operation_id = "getMetadataByPost",
        tag = "ApiTags::Metadata"
    )]
    async fn get_metadata_by_post(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject, LookingUp> {
        ctx.metadata(&client, auth.0, &metadata_key).await
    }

    /// Burn a secret
    ///
    /// Destroys a secret that has not been read; answers its metadata, `burned`. 404 when the
    /// secret is no longer `new`.
    #[oai(
        path = "/private/:metadata_key/burn",
        method = "post",
        operation_id = "burnSecret",
        tag = "ApiTags::Metadata"
    )]
    async fn burn(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject, LookingUp> {
        ctx.admit(&client, RouteClass::Other, auth.0).await?;
        let unknown = || ApiError::unknown_metadata(&metadata_key);
        let key = MetadataKey::parse(&metadata_key).ok_or_else(unknown)?;
        match ctx.svc().burn(&key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(OtsError::NotFound) => Err(unknown().into()),
            Err(err) => Err(err.into()),
        }
    }

    /// System status
    ///
    /// `{"status": "nominal"}` when the store answers; a 503 whose body has `status`
    /// `offline` when it does not.
    #[oai(
        path = "/status",
        method = "get",
        operation_id = "getStatus",
        tag = "ApiTags::Service"
    )]
    async fn status(
        &self,
        ctx: Ctx,
        auth: OptionalAuth,
        client: ClientAddr,
    ) -> ApiResult<StatusBody, Checking> {
        ctx.admit(&client, RouteClass::Other, auth.0).await?;
        if ctx.svc().is_available().await {
            Ok(Json(StatusBody {
                status: "nominal".into(),
            }))
        } else {
            Err(
                ApiError::Unavailable(poem_openapi::payload::Json(Box::new(ErrorBody {
                    status: Some("offline".into()),
                    ..ErrorBody::new("The store cannot be reached")
                })))
                .into(),
            )
        }
    }

    /// Check credentials
    ///
    /// 200 with the custid when the credentials are good; 401 otherwise.
    #[oai(
        path = "/authcheck",
        method = "get",
        operation_id = "checkAuth",
        tag = "ApiTags::Account"
    )]
    async fn authcheck(
        &self,
        ctx: Ctx,
        auth: RequiredAuth,
        client: ClientAddr,
    ) -> ApiResult<AuthCheck, Checking> {
        let caller = ctx.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        Ok(Json(AuthCheck {
            custid: caller.custid.to_string(),
        }))
    }
}
