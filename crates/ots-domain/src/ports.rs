//! The driven ports: what the domain needs from the outside world, named for that need.
//! (Time and randomness are ports too: [`crate::Clock`], [`crate::Rng`].)
//!
//! Every method that must be atomic says so with MUST; the contract suite in
//! `ots-store-contract` checks each adapter against these words.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::error::StoreError;
use crate::model::*;

/// Where secrets and their metadata live.
#[async_trait]
pub trait SecretRepository: Send + Sync {
    /// Stores a secret, its metadata and, when the creator named a recipient, the mail to
    /// send. MUST store all or nothing (the mail is never lost once the share succeeded).
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError>;

    /// A snapshot of a secret that may still be revealed at `now` (its metadata is `new`
    /// and it has not expired). MUST NOT change anything and MUST NOT hold locks after
    /// returning: the caller runs bcrypt on it.
    async fn find_secret(
        &self,
        key: &SecretKey,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError>;

    /// Takes the secret for the one caller who wins: if it still exists and is unexpired at
    /// `now`, deletes its ciphertext and marks its metadata `received`, all at once, and
    /// returns `true`. Of any number of concurrent calls, across processes, exactly one MUST
    /// return `true`.
    async fn consume(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError>;

    /// Takes one passphrase try before the passphrase is checked: if the secret exists at
    /// `now` and fewer than `max_tries` were taken, counts one more in one atomic step and
    /// answers how many remain. Over a secret's life, of any number of calls, concurrent or
    /// not, across processes, at most `max_tries` MUST answer `Taken`.
    async fn take_try(
        &self,
        key: &SecretKey,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError>;

    /// Burns a secret whose last try failed: deletes its ciphertext and marks its metadata
    /// `burned`, atomically. `false` when it was already gone.
    async fn exhaust(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError>;

    /// The metadata record, if it is still alive at `now`.
    async fn find_metadata(
        &self,
        key: &MetadataKey,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError>;

    /// Burns an unread secret: if the secret is still `new` and unexpired at `now`, deletes
    /// its ciphertext and marks the metadata `burned` atomically, returning the updated
    /// metadata. `None` when there is nothing to burn.
    async fn burn(&self, key: &MetadataKey, now: UnixTime) -> Result<Option<Metadata>, StoreError>;

    /// The customer's metadata still alive at `now`, newest first, at most `limit`. Newest
    /// MUST mean the order of `create` calls, also for records created in the same second.
    async fn recent(
        &self,
        custid: &CustId,
        now: UnixTime,
        limit: u32,
    ) -> Result<Vec<Metadata>, StoreError>;

    /// Deletes at most `batch` expired secrets and `batch` expired metadata records, returning
    /// how many rows went. MUST be safe to run from several processes at once.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError>;

    /// Burns every unread secret of a customer and forgets its metadata (account removal).
    async fn purge_customer(&self, custid: &CustId, now: UnixTime) -> Result<u64, StoreError>;

    /// Whether the store answers and its schema is up to date.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Pooled connections: (open, idle), for metrics; `None` for stores without a pool.
    fn pool_usage(&self) -> Option<(u32, u32)> {
        None
    }

    /// Closes the store's connections gracefully (at shutdown).
    async fn close(&self) {}
}

/// Mail waiting to be delivered, kept in the store beside the secrets.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Up to `limit` messages due at `now`, each leased until `lease_until`: no other
    /// claim (from any process) returns it before then.
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError>;
    /// The message was sent, or is no longer to be sent: forget it.
    async fn mail_done(&self, id: &str) -> Result<(), StoreError>;
    /// Sending failed: try again at `next_attempt_at`, counting `attempts` so far.
    async fn mail_retry(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError>;
    /// How many messages wait.
    async fn mail_backlog(&self) -> Result<u64, StoreError>;
}

/// The secret store as the server uses it: secrets, metadata and their outbox.
pub trait SecretStore: SecretRepository + Outbox {}

impl<T: SecretRepository + Outbox + ?Sized> SecretStore for T {}

/// Where customer accounts and their API tokens live.
#[async_trait]
pub trait CustomerRepository: Send + Sync {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError>;
    /// MUST fail with [`StoreError::Conflict`] when the custid exists.
    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError>;
    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError>;
    /// Returns whether the customer existed.
    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError>;
    /// Removes the customer and all its tokens. Returns whether it existed.
    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError>;
    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError>;
    /// The hashes of the customer's live tokens; the caller compares in constant time.
    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError>;
    /// Revokes the tokens whose prefix starts with `prefix`; returns how many.
    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError>;
}

/// A message telling a recipient that a secret waits for them. Carries the key, never the
/// value: the adapter turns the key into a link.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretLinkMail {
    pub to: String,
    pub from_custid: CustId,
    pub secret_key: SecretKey,
}

/// A link mail in the outbox.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboxMail {
    /// Random, unique.
    pub id: String,
    pub metadata_key: MetadataKey,
    pub mail: SecretLinkMail,
    /// Failed sends so far.
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
}

/// Sends mail about secrets.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String>;
}

// The binary chooses adapters at run time and hands them over as `Arc<dyn Port>`; these
// impls let the generic `Service` take those as well as concrete types.

#[async_trait]
impl<T: SecretRepository + ?Sized> SecretRepository for Arc<T> {
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError> {
        (**self).create(secret, metadata, mail).await
    }
    async fn find_secret(
        &self,
        key: &SecretKey,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        (**self).find_secret(key, now).await
    }
    async fn consume(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        (**self).consume(key, now).await
    }
    async fn take_try(
        &self,
        key: &SecretKey,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError> {
        (**self).take_try(key, max_tries, now).await
    }
    async fn exhaust(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        (**self).exhaust(key, now).await
    }
    async fn find_metadata(
        &self,
        key: &MetadataKey,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        (**self).find_metadata(key, now).await
    }
    async fn burn(&self, key: &MetadataKey, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        (**self).burn(key, now).await
    }
    async fn recent(
        &self,
        custid: &CustId,
        now: UnixTime,
        limit: u32,
    ) -> Result<Vec<Metadata>, StoreError> {
        (**self).recent(custid, now, limit).await
    }
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        (**self).sweep_expired(now, batch).await
    }
    async fn purge_customer(&self, custid: &CustId, now: UnixTime) -> Result<u64, StoreError> {
        (**self).purge_customer(custid, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    fn pool_usage(&self) -> Option<(u32, u32)> {
        (**self).pool_usage()
    }
    async fn close(&self) {
        (**self).close().await
    }
}

#[async_trait]
impl<T: Outbox + ?Sized> Outbox for Arc<T> {
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        (**self).claim_due_mail(now, lease_until, limit).await
    }
    async fn mail_done(&self, id: &str) -> Result<(), StoreError> {
        (**self).mail_done(id).await
    }
    async fn mail_retry(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError> {
        (**self).mail_retry(id, attempts, next_attempt_at).await
    }
    async fn mail_backlog(&self) -> Result<u64, StoreError> {
        (**self).mail_backlog().await
    }
}

#[async_trait]
impl<T: CustomerRepository + ?Sized> CustomerRepository for Arc<T> {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        (**self).find_customer(custid).await
    }
    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        (**self).add_customer(customer).await
    }
    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        (**self).list_customers().await
    }
    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        (**self).set_plan(custid, plan).await
    }
    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        (**self).remove_customer(custid).await
    }
    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        (**self).add_token(custid, token).await
    }
    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        (**self).tokens(custid).await
    }
    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError> {
        (**self).revoke_tokens(custid, prefix).await
    }
}

#[async_trait]
impl<T: Mailer + ?Sized> Mailer for Arc<T> {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String> {
        (**self).send(mail).await
    }
}

/// Hashes passphrases and checks them: slow on purpose (bcrypt). A port so tests can count
/// the checks and hold them while others race.
pub trait PassphraseHasher: Send + Sync {
    fn hash(&self, passphrase: &Passphrase, cost: u32) -> Result<String, String>;
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool;
}

/// bcrypt over a SHA-256 pre-hash, so every byte of a long passphrase counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bcrypt;

impl PassphraseHasher for Bcrypt {
    fn hash(&self, passphrase: &Passphrase, cost: u32) -> Result<String, String> {
        crate::crypto::hash_passphrase(passphrase, cost)
    }
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool {
        crate::crypto::verify_passphrase(passphrase, hash)
    }
}

impl<T: PassphraseHasher + ?Sized> PassphraseHasher for Arc<T> {
    fn hash(&self, passphrase: &Passphrase, cost: u32) -> Result<String, String> {
        (**self).hash(passphrase, cost)
    }
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool {
        (**self).verify(passphrase, hash)
    }
}
