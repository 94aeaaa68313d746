//! The driving port: the use cases as the adapters that serve people (HTTP API, pages) see
//! them. Adapters depend on this trait, never on the concrete [`crate::Service`], so they can
//! be described (the OpenAPI spec) and tested without building the world.
//!
//! Every argument is already parsed at the edge: keys, credentials, passphrases, ttls and
//! addresses arrive as domain types, never as raw strings.

use async_trait::async_trait;

use crate::error::OtsError;
use crate::model::*;
use crate::policy::Policy;
use crate::ports::WriteBatches;

/// Who is asking: a customer with a plan, or the anonymous customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub custid: CustId,
    pub plan: Plan,
}

/// What share and generate take, already parsed at the edge.
#[derive(Debug, Default)]
pub struct ShareInput {
    pub passphrase: Option<Passphrase>,
    pub ttl: Option<Ttl>,
    pub recipient: Option<Email>,
}

/// What share and generate answer. `value` is set by generate only.
#[derive(Debug)]
pub struct Shared {
    pub metadata: MetadataView,
    pub value: Option<SecretValue>,
}

/// What a look at a waiting secret tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub passphrase_required: bool,
}

/// What a successful reveal answers.
#[derive(Debug)]
pub struct Revealed {
    pub secret_key: SecretKey,
    pub value: SecretValue,
}

/// The secret use cases. Errors are [`OtsError`]s; the adapter maps each to its answer in
/// one place.
#[async_trait]
pub trait SecretUseCases: Send + Sync {
    /// The rules in force (plans, ttls), for adapters that show them.
    fn policy(&self) -> &Policy;

    /// The anonymous customer, on the anonymous plan.
    fn anonymous(&self) -> Caller {
        Caller {
            custid: CustId::anonymous(),
            plan: self.policy().anonymous_plan.clone(),
        }
    }

    /// `None`: the anonymous customer. Credentials that are present but wrong MUST be
    /// `Unauthorized`, never a fall-back to anonymous.
    async fn authenticate(&self, credentials: Option<&Credentials>) -> Result<Caller, OtsError>;

    /// Stores `secret` for the caller (`None` or empty: nothing to share).
    async fn share(
        &self,
        caller: &Caller,
        secret: Option<SecretValue>,
        input: ShareInput,
    ) -> Result<Shared, OtsError>;

    /// Generates a short value, stores it, and shows it once to its creator.
    async fn generate(&self, caller: &Caller, input: ShareInput) -> Result<Shared, OtsError>;

    /// Whether a secret waits and needs a passphrase, without changing anything.
    async fn peek(&self, key: &SecretKey) -> Result<Peek, OtsError>;

    /// Reveals a secret once. A wrong (or missing) passphrase MUST NOT consume it.
    async fn reveal(
        &self,
        key: &SecretKey,
        passphrase: Option<Passphrase>,
    ) -> Result<Revealed, OtsError>;

    /// The creator's view of a secret.
    async fn metadata(&self, key: &MetadataKey) -> Result<MetadataView, OtsError>;

    /// Destroys an unread secret.
    async fn burn(&self, key: &MetadataKey) -> Result<MetadataView, OtsError>;

    /// The caller's metadata still alive, newest first, without secret keys.
    async fn recent(
        &self,
        caller: &Caller,
        limit: Option<i64>,
    ) -> Result<Vec<MetadataView>, OtsError>;

    /// Whether the store answers and its schema is current.
    async fn is_available(&self) -> bool;

    /// How many mails wait in the outbox.
    async fn mail_backlog(&self) -> Result<u64, OtsError>;

    /// The store's pooled connections (open, idle), when it has a pool.
    fn pool_usage(&self) -> Option<(u32, u32)>;

    /// The store's batches of writes so far, when it merges writes.
    fn write_batches(&self) -> Option<WriteBatches>;
}
