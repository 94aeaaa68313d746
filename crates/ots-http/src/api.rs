//! The routes of the OneTimeSecret API v1, as `../shared/API-CONTRACT.md` states them.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use ots_domain::{
    Caller, Email, MetadataState, MetadataView, Passphrase, SecretValue, ShareInput, Ttl,
};

use crate::error::ApiError;
use crate::params::{BodyParams, ClientAddr, OptionalAuth, RequiredAuth};
use crate::ratelimit::{Limiter, RouteClass};
use crate::AppService;

/// The state of a secret, as its creator sees it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum State {
    New,
    Received,
    Burned,
    Expired,
}

impl From<MetadataState> for State {
    fn from(state: MetadataState) -> Self {
        match state {
            MetadataState::New => Self::New,
            MetadataState::Received => Self::Received,
            MetadataState::Burned => Self::Burned,
            MetadataState::Expired => Self::Expired,
        }
    }
}

/// The creator's view of one secret.
#[derive(Object, Debug, Clone)]
#[oai(rename = "Metadata")]
pub struct MetadataObject {
    /// The owner; `anon` for anonymous.
    pub custid: String,
    /// The creator's private key. Do not share it.
    pub metadata_key: String,
    /// The shareable key; null once the secret is gone, and always null in `recent`.
    pub secret_key: Option<String>,
    /// The secret's time-to-live in seconds as granted (not the time left).
    pub ttl: i64,
    /// Seconds the metadata has left to live.
    pub metadata_ttl: i64,
    /// Seconds the secret has left to live; null once it is gone.
    pub secret_ttl: Option<i64>,
    pub state: State,
    /// Unix seconds, UTC.
    pub created: i64,
    /// Unix seconds, UTC.
    pub updated: i64,
    /// Unix seconds; present once received.
    #[oai(skip_serializing_if_is_none)]
    pub received: Option<i64>,
    /// Unix seconds; present once burned.
    #[oai(skip_serializing_if_is_none)]
    pub burned: Option<i64>,
    /// Obfuscated recipient addresses.
    pub recipient: Vec<String>,
    pub passphrase_required: bool,
    /// `generate` only: the generated secret, shown once to its creator.
    #[oai(skip_serializing_if_is_none)]
    pub value: Option<String>,
}

impl MetadataObject {
    fn of(view: MetadataView, value: Option<SecretValue>) -> Self {
        Self {
            custid: view.custid,
            metadata_key: view.metadata_key,
            secret_key: view.secret_key,
            ttl: view.ttl,
            metadata_ttl: view.metadata_ttl,
            secret_ttl: view.secret_ttl,
            state: view.state.into(),
            created: view.created,
            updated: view.updated,
            received: view.received,
            burned: view.burned,
            recipient: view.recipient,
            passphrase_required: view.passphrase_required,
            value: value.map(|v| v.expose().to_owned()),
        }
    }
}

/// A revealed secret.
#[derive(Object, Debug)]
pub struct Secret {
    pub secret_key: String,
    /// The value. It is gone from the server now.
    pub value: String,
}

/// Parameters of `share`.
#[derive(Object, Debug)]
pub struct ShareParams {
    /// The value to keep secret (required). At most the plan's size in UTF-8 bytes.
    pub secret: Option<String>,
    /// A passphrase the recipient must give; stored only as a bcrypt hash.
    pub passphrase: Option<String>,
    /// Time-to-live in seconds: default 7 days, at least 60, at most the plan's maximum.
    pub ttl: Option<i64>,
    /// An email address to send the link (never the secret) to.
    pub recipient: Option<String>,
}

/// Parameters of `generate`.
#[derive(Object, Debug)]
pub struct GenerateParams {
    /// A passphrase the recipient must give; stored only as a bcrypt hash.
    pub passphrase: Option<String>,
    /// Time-to-live in seconds: default 7 days, at least 60, at most the plan's maximum.
    pub ttl: Option<i64>,
    /// An email address to send the link (never the secret) to.
    pub recipient: Option<String>,
}

/// Parameters of a reveal.
#[derive(Object, Debug)]
pub struct RevealParams {
    /// Required when the secret was created with one.
    pub passphrase: Option<String>,
}

#[derive(Object, Debug)]
pub struct StatusBody {
    /// `nominal`, or `offline` when the store cannot be reached.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum StatusResponse {
    #[oai(status = 200)]
    Nominal(Json<StatusBody>),
    #[oai(status = 503)]
    Offline(Json<StatusBody>),
}

#[derive(Object, Debug)]
pub struct AuthCheck {
    pub custid: String,
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The v1 API over the use cases.
pub struct Api {
    pub(crate) svc: Arc<AppService>,
    pub(crate) limiter: Arc<dyn Limiter>,
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
        Some(raw) => Some(Ttl::parse(raw).ok_or(ots_domain::OtsError::InvalidTtl)?),
        None => None,
    };
    let recipient = match recipient.filter(|r| !r.trim().is_empty()) {
        Some(raw) => Some(Email::parse(raw).ok_or(ots_domain::OtsError::InvalidRecipient)?),
        None => None,
    };
    Ok(ShareInput {
        passphrase: passphrase.and_then(Passphrase::parse),
        ttl,
        recipient,
    })
}

impl Api {
    /// Authenticates and applies the rate limit of the route class: per customer with the
    /// customer's plan, per client address for anonymous requests and for failed logins.
    async fn admit(
        &self,
        client: &ClientAddr,
        class: RouteClass,
        auth: Option<(String, String)>,
    ) -> Result<Caller, ApiError> {
        let creds = auth.as_ref().map(|(u, t)| (u.as_str(), t.as_str()));
        let by_address = || {
            self.limiter
                .check(ANONYMOUS_PLAN, class, &format!("ip:{}", client.0))
                .map_err(ApiError::too_many_requests)
        };
        match self.svc.authenticate(creds).await {
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
            Err(err @ ots_domain::OtsError::Unauthorized) => {
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
        auth: OptionalAuth,
        client: ClientAddr,
        secret: Query<Option<String>>,
        passphrase: Query<Option<String>>,
        ttl: Query<Option<String>>,
        recipient: Query<Option<String>>,
        body: BodyParams<ShareParams>,
    ) -> ApiResult<MetadataObject> {
        let caller = self.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(
            pick(&body, &passphrase, "passphrase"),
            pick(&body, &ttl, "ttl"),
            pick(&body, &recipient, "recipient"),
        )?;
        let value = pick(&body, &secret, "secret").map(SecretValue::new);
        let shared = self.svc.share(&caller, value, input).await?;
        Ok(Json(MetadataObject::of(shared.metadata, None)))
    }

    /// Generate a secret
    ///
    /// Generates a 12-character value (letters and digits without look-alikes), stores it
    /// like `share`, and shows it once in `value`.
    #[oai(path = "/generate", method = "post", operation_id = "generate")]
    async fn generate(
        &self,
        auth: OptionalAuth,
        client: ClientAddr,
        passphrase: Query<Option<String>>,
        ttl: Query<Option<String>>,
        recipient: Query<Option<String>>,
        body: BodyParams<GenerateParams>,
    ) -> ApiResult<MetadataObject> {
        let caller = self.admit(&client, RouteClass::Create, auth.0).await?;
        let input = share_input(
            pick(&body, &passphrase, "passphrase"),
            pick(&body, &ttl, "ttl"),
            pick(&body, &recipient, "recipient"),
        )?;
        let shared = self.svc.generate(&caller, input).await?;
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
        auth: OptionalAuth,
        client: ClientAddr,
        /// The shareable key.
        secret_key: Path<String>,
        passphrase: Query<Option<String>>,
        body: BodyParams<RevealParams>,
    ) -> ApiResult<Secret> {
        self.admit(&client, RouteClass::Reveal, auth.0).await?;
        let passphrase = pick(&body, &passphrase, "passphrase").and_then(Passphrase::parse);
        match self.svc.reveal(&secret_key, passphrase).await {
            Ok(revealed) => Ok(Json(Secret {
                secret_key: revealed.secret_key.to_string(),
                value: revealed.value.expose().to_owned(),
            })),
            Err(ots_domain::OtsError::NotFound) => Err(ApiError::unknown_secret(&secret_key)),
            Err(err) => Err(err.into()),
        }
    }

    /// Recent metadata
    ///
    /// The caller's metadata still alive, newest first; `secret_key` is always null here.
    #[oai(path = "/private/recent", method = "get", operation_id = "recent")]
    async fn recent(
        &self,
        auth: RequiredAuth,
        client: ClientAddr,
        /// At most this many items (1 to 100; default 100).
        limit: Query<Option<i64>>,
    ) -> ApiResult<Vec<MetadataObject>> {
        let caller = self.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        let items = self.svc.recent(&caller, limit.0).await?;
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
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject> {
        self.admit(&client, RouteClass::Other, auth.0).await?;
        match self.svc.metadata(&metadata_key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(ots_domain::OtsError::NotFound) => Err(ApiError::unknown_metadata(&metadata_key)),
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
        auth: OptionalAuth,
        client: ClientAddr,
        /// The creator's private key.
        metadata_key: Path<String>,
    ) -> ApiResult<MetadataObject> {
        self.admit(&client, RouteClass::Other, auth.0).await?;
        match self.svc.burn(&metadata_key).await {
            Ok(view) => Ok(Json(MetadataObject::of(view, None))),
            Err(ots_domain::OtsError::NotFound) => Err(ApiError::unknown_metadata(&metadata_key)),
            Err(err) => Err(err.into()),
        }
    }

    /// System status
    ///
    /// `nominal` when the store answers; `offline` with 503 when it does not.
    #[oai(path = "/status", method = "get", operation_id = "status")]
    async fn status(
        &self,
        auth: OptionalAuth,
        client: ClientAddr,
    ) -> Result<StatusResponse, ApiError> {
        self.admit(&client, RouteClass::Other, auth.0).await?;
        let status = |s: &str| Json(StatusBody { status: s.into() });
        Ok(if self.svc.is_available().await {
            StatusResponse::Nominal(status("nominal"))
        } else {
            StatusResponse::Offline(status("offline"))
        })
    }

    /// Check credentials
    ///
    /// 200 with the custid when the credentials are good; 401 otherwise.
    #[oai(path = "/authcheck", method = "get", operation_id = "authcheck")]
    async fn authcheck(&self, auth: RequiredAuth, client: ClientAddr) -> ApiResult<AuthCheck> {
        let caller = self.admit(&client, RouteClass::Other, Some(auth.0)).await?;
        Ok(Json(AuthCheck {
            custid: caller.custid.to_string(),
        }))
    }
}
