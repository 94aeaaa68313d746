//! The objects of the v1 API as the spec shows them: what goes in and what comes out.

use poem_openapi::types::Example;
use poem_openapi::{Enum, Object};
use serde::Serialize;

use ots_domain::{MetadataState, MetadataView, SecretValue};

use crate::params::BodySchema;
use crate::schema::{EmailText, Nullable};

/// The state of a secret, as its creator sees it.
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
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
#[derive(Object, Serialize, Debug, Clone)]
#[oai(rename = "Metadata", example)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<i64>,
    /// Unix seconds; present once burned.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burned: Option<i64>,
    /// Obfuscated recipient addresses.
    pub recipient: Vec<String>,
    pub passphrase_required: bool,
    /// `generate` only: the generated secret, shown once to its creator.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
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

impl Example for MetadataObject {
    fn example() -> Self {
        Self {
            custid: "anon".to_owned(),
            metadata_key: "qjpjroeit8wra0ojeyhcw5pjsgwtuq7".to_owned(),
            secret_key: Nullable(Some("2kmdjs7ahzxy1ca8ah4vjj8tjw3ds5r".to_owned())),
            ttl: 3600,
            metadata_ttl: 7200,
            secret_ttl: Nullable(Some(3600)),
            state: State::New,
            created: 1_798_761_600,
            updated: 1_798_761_600,
            received: None,
            burned: None,
            recipient: vec!["ja***@ex***.com".to_owned()],
            passphrase_required: true,
            value: None,
        }
    }
}

/// A revealed secret.
#[derive(Object, Serialize, Debug)]
#[oai(example)]
pub struct Secret {
    pub secret_key: String,
    /// The value. It is gone from the server now.
    pub value: String,
}

impl Example for Secret {
    fn example() -> Self {
        Self {
            secret_key: "2kmdjs7ahzxy1ca8ah4vjj8tjw3ds5r".to_owned(),
            value: "hunter2".to_owned(),
        }
    }
}

/// Parameters of `share`. Each optional one may be absent or `null` (the same thing).
#[derive(Object, Debug)]
#[oai(example)]
pub struct ShareParams {
    /// The value to keep secret. At most the plan's size in UTF-8 bytes (1024 for
    /// anonymous callers by default).
    #[oai(validator(min_length = 1))]
    pub secret: String,
    /// A passphrase the recipient must give; only a bcrypt derivation of it opens the value.
    /// Empty is none.
    pub passphrase: Option<Nullable<String>>,
    /// Time-to-live in seconds: default 7 days; less than 60 is raised to 60, more than the
    /// plan's maximum is lowered to it.
    pub ttl: Option<Nullable<i64>>,
    /// An email address to send the link (never the secret) to; empty is none.
    pub recipient: Option<Nullable<EmailText>>,
}

impl Example for ShareParams {
    fn example() -> Self {
        Self {
            secret: "hunter2".to_owned(),
            passphrase: Some(Nullable(Some("swordfish".to_owned()))),
            ttl: Some(Nullable(Some(3600))),
            recipient: None,
        }
    }
}

impl BodySchema for ShareParams {
    const REQUIRED: bool = true;
}

/// Parameters of `generate`. Each may be absent or `null`.
#[derive(Object, Debug)]
#[oai(example)]
pub struct GenerateParams {
    /// A passphrase the recipient must give; only a bcrypt derivation of it opens the value.
    /// Empty is none.
    pub passphrase: Option<Nullable<String>>,
    /// Time-to-live in seconds: default 7 days; less than 60 is raised to 60, more than the
    /// plan's maximum is lowered to it.
    pub ttl: Option<Nullable<i64>>,
    /// An email address to send the link (never the secret) to; empty is none.
    pub recipient: Option<Nullable<EmailText>>,
}

impl Example for GenerateParams {
    fn example() -> Self {
        Self {
            passphrase: None,
            ttl: Some(Nullable(Some(3600))),
            recipient: None,
        }
    }
}

impl BodySchema for GenerateParams {
    const REQUIRED: bool = false;
}

/// Parameters of a reveal.
#[derive(Object, Debug)]
pub struct RevealParams {
    /// Required when the secret was created with one.
    pub passphrase: Option<Nullable<String>>,
}

impl BodySchema for RevealParams {
    const REQUIRED: bool = false;
}

#[derive(Object, Serialize, Debug)]
pub struct StatusBody {
    /// `nominal`; when the store cannot be reached the answer is a 503 whose body says
    /// `offline`.
    pub status: String,
}

#[derive(Object, Serialize, Debug)]
pub struct AuthCheck {
    pub custid: String,
}
