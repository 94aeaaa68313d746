//! The records the repository ports store: customers, tokens, metadata and sealed secrets,
//! and the state machine of a secret (new → received, burned or expired).

use std::fmt;

use crate::clock::UnixTime;
use crate::model::{CustId, KeyId, MetadataId, SecretId};

/// A customer account, as the customer repository stores it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Customer {
    pub custid: CustId,
    pub email: Option<String>,
    pub plan: String,
    pub created: UnixTime,
}

/// An API token as stored: only a hash, plus a short prefix for humans to name it by.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredToken {
    pub prefix: String,
    pub hash: Vec<u8>,
    pub created: UnixTime,
}

/// The stored state of a secret's metadata. `expired` is never stored: it is what `new`
/// becomes once the secret's ttl has passed (see [`Metadata::state_at`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetadataState {
    New,
    Received,
    Burned,
    Expired,
}

impl MetadataState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Received => "received",
            Self::Burned => "burned",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "new" => Self::New,
            "received" => Self::Received,
            "burned" => Self::Burned,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// The creator's record of one secret. It outlives the secret (twice its ttl) so the
/// creator can see what happened to it. Found by [`MetadataId`]; it holds no key in the
/// clear.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Metadata {
    pub id: MetadataId,
    pub custid: CustId,
    /// While the secret may be revealed, how its key comes back to the creator: empty
    /// ([`crate::crypto::DERIVED_FROM_METADATA_KEY`]) when it derives from the metadata key
    /// (which only the creator holds), else sealed under the metadata key (earlier shares and
    /// upgraded stores); `None` once received or burned.
    pub sealed_secret_key: Option<Vec<u8>>,
    /// The metadata key sealed under the master secret, for a customer's `recent`; `None`
    /// for anonymous secrets, which have no `recent`.
    pub sealed_key: Option<Vec<u8>>,
    /// The secret's granted ttl in seconds (after clamping).
    pub ttl: i64,
    pub state: MetadataState,
    pub created: UnixTime,
    pub updated: UnixTime,
    pub received: Option<UnixTime>,
    pub burned: Option<UnixTime>,
    /// Obfuscated addresses (`ja***@ex***.com`): the full ones are never kept here.
    pub recipients: Vec<String>,
    pub passphrase_required: bool,
    /// When the secret stops being revealable: `created + ttl`.
    pub secret_expires_at: UnixTime,
    /// When the metadata itself is forgotten: `created + 2 * ttl`.
    pub expires_at: UnixTime,
}

impl Metadata {
    /// The state as seen at `now`: a `new` secret whose ttl passed is `expired`.
    pub fn state_at(&self, now: UnixTime) -> MetadataState {
        match self.state {
            MetadataState::New if now >= self.secret_expires_at => MetadataState::Expired,
            state => state,
        }
    }

    pub fn is_alive_at(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }

    /// Marks the metadata `received` at `now` (the store calls this inside its transaction).
    pub fn mark_received(&mut self, now: UnixTime) {
        self.state = MetadataState::Received;
        self.sealed_secret_key = None;
        self.received = Some(now);
        self.updated = now;
    }

    /// Marks the metadata `burned` at `now`.
    pub fn mark_burned(&mut self, now: UnixTime) {
        self.state = MetadataState::Burned;
        self.sealed_secret_key = None;
        self.burned = Some(now);
        self.updated = now;
    }
}

/// The encrypted secret as stored, found by [`SecretId`]. The value is never stored in the
/// clear, and nothing stored opens it without the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub id: SecretId,
    pub metadata_id: MetadataId,
    /// AES-256-GCM ciphertext with its tag appended.
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; 12],
    /// The value key's HKDF salt.
    pub salt: [u8; 16],
    pub scheme: ValueScheme,
    /// Passphrase tries taken so far (each one before its check ran).
    pub failed_tries: u32,
    pub created: UnixTime,
    pub expires_at: UnixTime,
}

/// How a stored value opens.
#[derive(Clone, PartialEq, Eq)]
pub enum ValueScheme {
    /// The value key derives (HKDF, extracted under the secret's salt) from master secret
    /// `key_id`, the secret key and, when a passphrase was set, bcrypt of it at
    /// `passphrase.cost` under `passphrase.salt`: a wrong passphrase is a value that does not
    /// open. No verifier is stored. Every secret with a passphrase; those without, as written
    /// before [`ValueScheme::Expanded`].
    Sealed {
        key_id: KeyId,
        passphrase: Option<PassphraseParams>,
    },
    /// No passphrase: the value key is expanded (HKDF) from master secret `key_id`'s key,
    /// extracted once per master secret, with the secret's salt and its secret key. What a
    /// share without a passphrase writes.
    Expanded { key_id: KeyId },
    /// Written by a release that stored keys, with a passphrase (its bcrypt verifier), and
    /// upgraded since: the metadata key its ciphertext is bound to is sealed under the
    /// secret key.
    Legacy {
        passphrase_hash: String,
        sealed_metadata_key: Vec<u8>,
    },
}

/// The bcrypt parameters of a passphrase's derivation; its output is never stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PassphraseParams {
    pub cost: u32,
    pub salt: [u8; 16],
}

impl StoredSecret {
    pub fn is_alive_at(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }

    pub fn passphrase_required(&self) -> bool {
        self.scheme.opens_without_passphrase().is_none()
    }
}

impl ValueScheme {
    /// The master secret a value sealed without a passphrase opens under; `None` when it
    /// needs one.
    pub fn opens_without_passphrase(&self) -> Option<KeyId> {
        match self {
            ValueScheme::Sealed {
                key_id,
                passphrase: None,
            }
            | ValueScheme::Expanded { key_id } => Some(*key_id),
            _ => None,
        }
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("id", &self.id)
            .field("passphrase_required", &self.passphrase_required())
            .field("failed_tries", &self.failed_tries)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Swept {
    /// Secrets that expired unread.
    pub secrets: u64,
    /// Metadata records past twice their secret's ttl.
    pub metadata: u64,
}

impl Swept {
    pub fn total(self) -> u64 {
        self.secrets + self.metadata
    }
}

/// What asking for one passphrase try answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TryTaken {
    /// A try is taken for this check; this many remain after it.
    Taken { left: u32 },
    /// Every try is taken (checks may still be running): no check may run.
    NoneLeft,
    /// The secret is gone (revealed, burned or expired).
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetadataKey;

    fn sample() -> Metadata {
        Metadata {
            id: MetadataId::of(&MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap()),
            custid: CustId::anonymous(),
            sealed_secret_key: Some(vec![1, 2, 3]),
            sealed_key: None,
            ttl: 100,
            state: MetadataState::New,
            created: 1000,
            updated: 1000,
            received: None,
            burned: None,
            recipients: vec!["ja***@ex***.com".into()],
            passphrase_required: false,
            secret_expires_at: 1100,
            expires_at: 1200,
        }
    }

    #[test]
    fn new_expires_with_its_secret_and_the_record_outlives_it() {
        let md = sample();
        assert_eq!(md.state_at(1099), MetadataState::New);
        assert_eq!(md.state_at(1100), MetadataState::Expired);
        assert!(md.is_alive_at(1199));
        assert!(!md.is_alive_at(1200));
    }

    #[test]
    fn received_and_burned_forget_the_secret_key() {
        let mut md = sample();
        md.mark_received(1050);
        assert_eq!(
            (
                md.state,
                md.sealed_secret_key.clone(),
                md.received,
                md.updated
            ),
            (MetadataState::Received, None, Some(1050), 1050)
        );
        // A received secret stays received after its ttl: only `new` expires.
        assert_eq!(md.state_at(5000), MetadataState::Received);
        let mut md = sample();
        md.mark_burned(1060);
        assert_eq!((md.state, md.burned), (MetadataState::Burned, Some(1060)));
        assert!(md.sealed_secret_key.is_none());
    }
}
