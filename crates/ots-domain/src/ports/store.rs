//! The secret store: secrets, their metadata, the outbox of mail, and the check value that
//! tells which master secret sealed the store. Rows are found by digests of keys
//! ([`SecretId`], [`MetadataId`]); no key is stored in the clear.

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
        id: &SecretId,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError>;

    /// Takes the secret for the one caller who wins: if it still exists and is unexpired at
    /// `now`, deletes its ciphertext and marks its metadata `received`, all at once, and
    /// returns `true`. Of any number of concurrent calls, across processes, exactly one MUST
    /// return `true`.
    async fn consume(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError>;

    /// Reveals in one step a secret that needs no passphrase: if it is alive at `now`, was
    /// sealed under one of `key_ids` (the master secrets this process holds) and has no
    /// passphrase, consumes it as [`consume`](Self::consume) does and returns the row it
    /// held, for the caller to open; otherwise changes nothing and returns `None` (the
    /// caller then reads a snapshot and goes the long way). Of any number of concurrent
    /// calls, and `consume` calls, across processes, exactly one MUST take the secret.
    async fn consume_unprotected(
        &self,
        id: &SecretId,
        key_ids: &[KeyId],
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError>;

    /// Takes one passphrase try before the passphrase is checked: if the secret exists at
    /// `now` and fewer than `max_tries` were taken, counts one more in one atomic step and
    /// answers how many remain. Over a secret's life, of any number of calls, concurrent or
    /// not, across processes, at most `max_tries` MUST answer `Taken`.
    async fn take_try(
        &self,
        id: &SecretId,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError>;

    /// Burns a secret whose last try failed: deletes its ciphertext and marks its metadata
    /// `burned`, atomically. `false` when it was already gone.
    async fn exhaust(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError>;

    /// The metadata record, if it is still alive at `now`.
    async fn find_metadata(
        &self,
        id: &MetadataId,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError>;

    /// Burns an unread secret: if the secret is still `new` and unexpired at `now`, deletes
    /// its ciphertext and marks the metadata `burned` atomically, returning the updated
    /// metadata. `None` when there is nothing to burn.
    async fn burn(&self, id: &MetadataId, now: UnixTime) -> Result<Option<Metadata>, StoreError>;

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

    /// The sealed check value, if one was stored.
    async fn check_value(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `sealed` as the check value if there is none yet. MUST NOT replace an existing
    /// one: processes that start at once all keep the first.
    async fn init_check_value(&self, sealed: &[u8]) -> Result<(), StoreError>;

    /// Replaces the check value (after a rotation of the master secret).
    async fn replace_check_value(&self, sealed: &[u8]) -> Result<(), StoreError>;

    /// Up to `limit` records written by a release that stored keys in the clear.
    async fn legacy_records(&self, _limit: u32) -> Result<Vec<LegacyRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Replaces one legacy record by its upgraded rows, all or nothing.
    async fn replace_legacy(
        &self,
        _record: &LegacyRecord,
        _secret: Option<&StoredSecret>,
        _metadata: &Metadata,
        _mails: &[OutboxMail],
    ) -> Result<(), StoreError> {
        Err(StoreError::Other(
            "this store holds no legacy records".into(),
        ))
    }

    /// Whether the store answers and its schema is up to date.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Pooled connections: (open, idle), for metrics; `None` for stores without a pool.
    fn pool_usage(&self) -> Option<(u32, u32)> {
        None
    }

    /// The batches of writes run so far, for metrics; `None` for stores that write each
    /// request alone.
    fn write_batches(&self) -> Option<WriteBatches> {
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

/// How a store that merges concurrent writes has merged them since it started: the batches
/// it ran (each one statement or one transaction, with one commit) and the writes they
/// carried. Their ratio is the writes each commit served.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct WriteBatches {
    pub batches: u64,
    pub writes: u64,
    /// How long each batch took to run and commit (from its first statement to its commit's
    /// answer, durable; not its writes' wait in the queue). Every write waits for at least
    /// one such commit.
    pub took: Timings,
    /// How long each write took from being queued to its answer: its wait for a batch to
    /// take it (behind the one running) and its own batch's run and commit. What a request
    /// spends beyond this is the server's, not the store's.
    pub answered: Timings,
}

/// Durations counted in buckets, and their sum.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Timings {
    /// `counts[i]` counts the durations over `BATCH_SECONDS[i - 1]` and at most
    /// `BATCH_SECONDS[i]`, the last those over the largest bound.
    pub counts: [u64; BATCH_SECONDS.len() + 1],
    /// All of them together, in microseconds.
    pub micros: u64,
}

/// The upper bounds, in seconds, of [`Timings`]'s buckets: a quarter of a millisecond (a
/// flush on a fast disk) doubling to a quarter of a second.
pub const BATCH_SECONDS: [f64; 11] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
];

impl Timings {
    /// The bucket of [`Timings::counts`] that counts a duration of `seconds`.
    pub fn bucket(seconds: f64) -> usize {
        BATCH_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BATCH_SECONDS.len())
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The secret store as the server uses it: secrets, metadata and their outbox.
pub trait SecretStore: SecretRepository + Outbox {}

impl<T: SecretRepository + Outbox + ?Sized> SecretStore for T {}

/// A link mail in the outbox. The address and the secret key are sealed under the master
/// secret until the mail goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboxMail {
    /// Random, unique.
    pub id: String,
    pub metadata_id: MetadataId,
    pub from_custid: CustId,
    pub sealed_to: Vec<u8>,
    pub sealed_secret_key: Vec<u8>,
    /// Failed sends so far.
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
}

/// A record as a release that stored keys in the clear wrote it, to be upgraded.
#[derive(Clone, Debug)]
pub struct LegacyRecord {
    pub metadata_key: MetadataKey,
    /// Present while the secret may be revealed.
    pub secret_key: Option<SecretKey>,
    /// The metadata as it stays, but for what the upgrade seals: `id` is already the
    /// digest of `metadata_key`, `sealed_*` are empty, `recipients` are full addresses.
    pub metadata: Metadata,
    pub secret: Option<LegacySecret>,
    pub mails: Vec<LegacyMail>,
}

/// A secret as a release that stored keys in the clear wrote it.
#[derive(Clone)]
pub struct LegacySecret {
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; 12],
    pub salt: [u8; 16],
    pub passphrase_hash: Option<String>,
    pub failed_tries: u32,
    pub created: UnixTime,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for LegacySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySecret").finish_non_exhaustive()
    }
}

/// A mail in the outbox as a release that stored keys in the clear wrote it.
#[derive(Clone, Debug)]
pub struct LegacyMail {
    pub id: String,
    pub to: String,
    pub from_custid: CustId,
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
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
        id: &SecretId,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        (**self).find_secret(id, now).await
    }
    async fn consume(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        (**self).consume(id, now).await
    }
    async fn consume_unprotected(
        &self,
        id: &SecretId,
        key_ids: &[KeyId],
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        (**self).consume_unprotected(id, key_ids, now).await
    }
    async fn take_try(
        &self,
        id: &SecretId,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError> {
        (**self).take_try(id, max_tries, now).await
    }
    async fn exhaust(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        (**self).exhaust(id, now).await
    }
    async fn find_metadata(
        &self,
        id: &MetadataId,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        (**self).find_metadata(id, now).await
    }
    async fn burn(&self, id: &MetadataId, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        (**self).burn(id, now).await
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
    async fn check_value(&self) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).check_value().await
    }
    async fn init_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        (**self).init_check_value(sealed).await
    }
    async fn replace_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        (**self).replace_check_value(sealed).await
    }
    async fn legacy_records(&self, limit: u32) -> Result<Vec<LegacyRecord>, StoreError> {
        (**self).legacy_records(limit).await
    }
    async fn replace_legacy(
        &self,
        record: &LegacyRecord,
        secret: Option<&StoredSecret>,
        metadata: &Metadata,
        mails: &[OutboxMail],
    ) -> Result<(), StoreError> {
        (**self)
            .replace_legacy(record, secret, metadata, mails)
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    fn pool_usage(&self) -> Option<(u32, u32)> {
        (**self).pool_usage()
    }
    fn write_batches(&self) -> Option<WriteBatches> {
        (**self).write_batches()
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
