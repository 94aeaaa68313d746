//! The objects of the v1 API as the spec shows them: what goes in and what comes out.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object};

use ots_domain::{MetadataState, MetadataView, SecretValue};

use crate::schema::{EmailText, Nullable};

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
    pub secret_key: Nullable<String>,
    /// The secret's time-to-live in seconds as granted (not the time left).
    pub ttl: i64,
    /// Seconds the metadata has left to live.
    pub metadata_ttl: i64,
    /// Seconds the secret has left to live; null once it is gone.
    pub secret_ttl: Nullable<i64>,
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
    pub(crate) fn of(view: MetadataView, value: Option<SecretValue>) -> Self {
        Self {
            custid: view.custid,
            metadata_key: view.metadata_key,
            secret_key: Nullable(view.secret_key),
            ttl: view.ttl,
            metadata_ttl: view.metadata_ttl,
            secret_ttl: Nullable(view.secret_ttl),
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

/// Parameters of `share`. Each may be absent or `null` (the same thing); a body value wins
/// over the query string's.
#[derive(Object, Debug)]
pub struct ShareParams {
    /// The value to keep secret (required, here or in the query). At most the plan's size
    /// in UTF-8 bytes.
    #[oai(validator(min_length = 1))]
    pub secret: Option<Nullable<String>>,
    /// A passphrase the recipient must give; only a bcrypt derivation of it opens the value.
    pub passphrase: Option<Nullable<String>>,
    /// Time-to-live in seconds: default 7 days, at least 60, at most the plan's maximum.
    pub ttl: Option<Nullable<i64>>,
    /// An email address to send the link (never the secret) to.
    pub recipient: Option<Nullable<EmailText>>,
}

/// Parameters of `generate`. Each may be absent or `null`.
#[derive(Object, Debug)]
pub struct GenerateParams {
    /// A passphrase the recipient must give; only a bcrypt derivation of it opens the value.
    pub passphrase: Option<Nullable<String>>,
    /// Time-to-live in seconds: default 7 days, at least 60, at most the plan's maximum.
    pub ttl: Option<Nullable<i64>>,
    /// An email address to send the link (never the secret) to.
    pub recipient: Option<Nullable<EmailText>>,
}

/// Parameters of a reveal.
#[derive(Object, Debug)]
pub struct RevealParams {
    /// Required when the secret was created with one.
    pub passphrase: Option<Nullable<String>>,
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
