//! The use cases, generic over their ports: tests build them with the in-memory store and a
//! fixed clock, the binary with whatever store its configuration names.
//!
//! One file per reason to change: storing (`share`), revealing (`reveal`), the creator's
//! views (`creator`), and the upkeep the server runs in the background (`upkeep`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::{Clock, UnixTime};
use crate::crypto::{self, Keyring};
use crate::error::OtsError;
use crate::events::{Event, EventSink, LogEvents};
use crate::model::*;
use crate::policy::Policy;
use crate::ports::*;
use crate::random::Rng;
use crate::usecases::*;

mod creator;
mod reveal;
mod share;
mod upgrade;
mod upkeep;

pub use upkeep::MailReport;

/// Binds a value's ciphertext to its rows: a ciphertext moved to another row does not open.
/// The two ids, 64 bytes, on the stack: sealing and opening a value allocate nothing for it.
fn value_aad(id: &SecretId, metadata_id: &MetadataId) -> [u8; 64] {
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(id.as_bytes());
    aad[32..].copy_from_slice(metadata_id.as_bytes());
    aad
}

/// The secret use cases over a store, a customer directory, a mailer, a clock and randomness.
pub struct Service<S, C, M, K, R> {
    secrets: S,
    customers: C,
    mailer: M,
    clock: K,
    rng: R,
    keyring: Keyring,
    policy: Policy,
    events: Arc<dyn EventSink>,
    hasher: Arc<dyn PassphraseHasher>,
    bcrypt_slots: tokio::sync::Semaphore,
}

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// Events go to the log until [`Service::with_events`] names other listeners.
    pub fn new(
        secrets: S,
        customers: C,
        mailer: M,
        clock: K,
        rng: R,
        keyring: Keyring,
        policy: Policy,
    ) -> Self {
        let bcrypt_slots = tokio::sync::Semaphore::new(policy.bcrypt_concurrency.max(1));
        Self {
            secrets,
            customers,
            mailer,
            clock,
            rng,
            keyring,
            policy,
            events: Arc::new(LogEvents),
            hasher: Arc::new(Bcrypt),
            bcrypt_slots,
        }
    }

    /// Who hears what happens to secrets (metrics, logs).
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// How passphrases are hashed and checked (bcrypt unless a test says otherwise).
    pub fn with_hasher(mut self, hasher: Arc<dyn PassphraseHasher>) -> Self {
        self.hasher = hasher;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn emit(&self, event: Event) {
        self.events.record(&event);
    }

    /// `None`: the anonymous customer. Credentials that are present but wrong are always
    /// `Unauthorized`, never a fall-back to anonymous.
    pub async fn authenticate(
        &self,
        credentials: Option<&Credentials>,
    ) -> Result<Caller, OtsError> {
        let Some(credentials) = credentials else {
            return Ok(Caller {
                custid: CustId::anonymous(),
                plan: self.policy.anonymous_plan.clone(),
            });
        };
        let custid = &credentials.custid;
        let hash = crypto::hash_token(credentials.token());
        let Some(customer) = self.customers.find_customer(custid).await? else {
            return Err(OtsError::Unauthorized);
        };
        let tokens = self.customers.tokens(custid).await?;
        // Check every token so the time taken does not say which one matched.
        let matched = tokens.iter().fold(false, |acc, t| {
            crypto::constant_time_eq(&t.hash, &hash) | acc
        });
        if !matched {
            return Err(OtsError::Unauthorized);
        }
        Ok(Caller {
            plan: self.policy.plan_for(&customer),
            custid: custid.clone(),
        })
    }

    /// The passphrase's bcrypt derivation, on the blocking pool.
    async fn derive(
        &self,
        passphrase: Passphrase,
        params: PassphraseParams,
    ) -> Result<zeroize::Zeroizing<[u8; 24]>, OtsError> {
        let hasher = self.hasher.clone();
        self.blocking(move || hasher.derive(&passphrase, &params.salt, params.cost))
            .await
    }

    /// Runs bcrypt on tokio's blocking pool, inside the caller's tracing span, once one of
    /// the bcrypt slots is free: bcrypt may use at most that many cores, so the async
    /// workers keep the rest and plain requests stay fast while passphrase checks queue.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, OtsError> {
        let _slot = self
            .bcrypt_slots
            .acquire()
            .await
            .map_err(|e| OtsError::Internal(format!("bcrypt slots closed: {e}")))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .map_err(|e| OtsError::Internal(format!("blocking task failed: {e}")))
    }
}

#[async_trait]
impl<S, C, M, K, R> SecretUseCases for Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    fn policy(&self) -> &Policy {
        &self.policy
    }
    async fn authenticate(&self, credentials: Option<&Credentials>) -> Result<Caller, OtsError> {
        Service::authenticate(self, credentials).await
    }
    async fn share(
        &self,
        caller: &Caller,
        secret: Option<SecretValue>,
        input: ShareInput,
    ) -> Result<Shared, OtsError> {
        Service::share(self, caller, secret, input).await
    }
    async fn generate(&self, caller: &Caller, input: ShareInput) -> Result<Shared, OtsError> {
        Service::generate(self, caller, input).await
    }
    async fn peek(&self, key: &SecretKey) -> Result<Peek, OtsError> {
        Service::peek(self, key).await
    }
    async fn reveal(
        &self,
        key: &SecretKey,
        passphrase: Option<Passphrase>,
    ) -> Result<Revealed, OtsError> {
        Service::reveal(self, key, passphrase).await
    }
    async fn metadata(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        Service::metadata(self, key).await
    }
    async fn burn(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        Service::burn(self, key).await
    }
    async fn recent(
        &self,
        caller: &Caller,
        limit: Option<i64>,
    ) -> Result<Vec<MetadataView>, OtsError> {
        Service::recent(self, caller, limit).await
    }
    async fn is_available(&self) -> bool {
        Service::is_available(self).await
    }
    async fn mail_backlog(&self) -> Result<u64, OtsError> {
        Service::mail_backlog(self).await
    }
    fn pool_usage(&self) -> Option<(u32, u32)> {
        Service::pool_usage(self)
    }
    fn write_batches(&self) -> Option<WriteBatches> {
        Service::write_batches(self)
    }
}
