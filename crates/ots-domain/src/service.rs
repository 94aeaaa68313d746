//! The use cases: share, generate, reveal, show metadata, burn, recent, status, and the
//! customer administration behind authentication.

use tracing::{info, warn};

use crate::crypto::{self, Cipher};
use crate::error::OtsError;
use crate::model::*;
use crate::ports::*;

/// The rules an operator can tune. Plans arrive here as plain values from the binary's config.
#[derive(Clone, Debug)]
pub struct Policy {
    /// ttl when the request names none (seconds).
    pub default_ttl: i64,
    /// Shortest ttl granted (seconds); shorter requests are raised to it.
    pub min_ttl: i64,
    /// Failed passphrase tries after which a secret is burned.
    pub max_passphrase_tries: u32,
    pub bcrypt_cost: u32,
    /// Passphrase hashes computed at once (each takes a core for its duration).
    pub bcrypt_concurrency: usize,
    /// The plan of requests without credentials.
    pub anonymous_plan: Plan,
    /// Plans customers can be on.
    pub plans: Vec<Plan>,
    /// The plan of a customer whose plan name is not (or no longer) configured.
    pub default_plan: String,
    /// Whether `recipient` needs an account.
    pub require_account_for_email: bool,
    /// Most items `recent` returns.
    pub recent_limit: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_ttl: 7 * 24 * 3600,
            min_ttl: 60,
            max_passphrase_tries: 10,
            bcrypt_cost: 12,
            bcrypt_concurrency: default_bcrypt_concurrency(),
            anonymous_plan: Plan::anonymous(),
            plans: vec![Plan::basic()],
            default_plan: "basic".into(),
            require_account_for_email: false,
            recent_limit: 100,
        }
    }
}

impl Policy {
    /// The plan a customer is on; an unknown name falls back to the default plan.
    pub fn plan_for(&self, customer: &Customer) -> Plan {
        let find = |name: &str| self.plans.iter().find(|p| p.name == name).cloned();
        find(&customer.plan)
            .or_else(|| {
                warn!(custid = %customer.custid, plan = %customer.plan, "unknown plan, using the default");
                find(&self.default_plan)
            })
            .unwrap_or_else(Plan::basic)
    }

    /// Absent: the default; below the minimum: raised; above the plan's maximum: clamped.
    pub fn grant_ttl(&self, requested: Option<Ttl>, plan: &Plan) -> i64 {
        let ttl = requested.map_or(self.default_ttl, Ttl::seconds);
        ttl.min(plan.max_ttl).max(self.min_ttl)
    }
}

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

/// The use cases, generic over their ports: tests build them with the in-memory store and a
/// fixed clock, the binary with whatever store its configuration names.
pub struct Service<S, C, M, K, R> {
    secrets: S,
    customers: C,
    mailer: M,
    clock: K,
    rng: R,
    cipher: Cipher,
    policy: Policy,
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
    pub fn new(
        secrets: S,
        customers: C,
        mailer: M,
        clock: K,
        rng: R,
        cipher: Cipher,
        policy: Policy,
    ) -> Self {
        let bcrypt_slots = tokio::sync::Semaphore::new(policy.bcrypt_concurrency.max(1));
        Self {
            secrets,
            customers,
            mailer,
            clock,
            rng,
            cipher,
            policy,
            bcrypt_slots,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// `None`: the anonymous customer. Credentials that are present but wrong are always
    /// `Unauthorized`, never a fall-back to anonymous.
    pub async fn authenticate(
        &self,
        credentials: Option<(&str, &str)>,
    ) -> Result<Caller, OtsError> {
        let Some((custid, token)) = credentials else {
            return Ok(Caller {
                custid: CustId::anonymous(),
                plan: self.policy.anonymous_plan.clone(),
            });
        };
        let custid = CustId::parse(custid).ok_or(OtsError::Unauthorized)?;
        let hash = crypto::hash_token(token);
        let Some(customer) = self.customers.find_customer(&custid).await? else {
            return Err(OtsError::Unauthorized);
        };
        let tokens = self.customers.tokens(&custid).await?;
        // Check every token so the time taken does not say which one matched.
        let matched = tokens.iter().fold(false, |acc, t| {
            crypto::constant_time_eq(&t.hash, &hash) | acc
        });
        if !matched {
            return Err(OtsError::Unauthorized);
        }
        Ok(Caller {
            plan: self.policy.plan_for(&customer),
            custid,
        })
    }

    /// Stores `secret` for the caller.
    pub async fn share(
        &self,
        caller: &Caller,
        secret: Option<SecretValue>,
        input: ShareInput,
    ) -> Result<Shared, OtsError> {
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or(OtsError::NothingToShare)?;
        if secret.len() > caller.plan.max_secret_bytes {
            return Err(OtsError::TooLarge {
                max: caller.plan.max_secret_bytes,
            });
        }
        let metadata = self.store(caller, &secret, input).await?;
        Ok(Shared {
            metadata,
            value: None,
        })
    }

    /// Generates a short value, stores it, and shows it once to its creator.
    pub async fn generate(&self, caller: &Caller, input: ShareInput) -> Result<Shared, OtsError> {
        let value = SecretValue::new(self.random_string(GENERATED_LEN, GENERATED_ALPHABET)?);
        let metadata = self.store(caller, &value, input).await?;
        Ok(Shared {
            metadata,
            value: Some(value),
        })
    }

    async fn store(
        &self,
        caller: &Caller,
        value: &SecretValue,
        input: ShareInput,
    ) -> Result<MetadataView, OtsError> {
        if input.recipient.is_some()
            && caller.custid.is_anonymous()
            && self.policy.require_account_for_email
        {
            return Err(OtsError::AccountRequired);
        }
        let now = self.clock.now();
        let ttl = self.policy.grant_ttl(input.ttl, &caller.plan);
        let secret_key = SecretKey::generate(&self.rng).map_err(OtsError::Internal)?;
        let metadata_key = MetadataKey::generate(&self.rng).map_err(OtsError::Internal)?;
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut salt).map_err(OtsError::Internal)?;
        self.rng.fill(&mut nonce).map_err(OtsError::Internal)?;

        let passphrase_hash = match &input.passphrase {
            Some(p) => {
                let (p, cost) = (p.clone(), self.policy.bcrypt_cost);
                Some(
                    blocking(&self.bcrypt_slots, move || {
                        crypto::hash_passphrase(&p, cost)
                    })
                    .await?
                    .map_err(OtsError::Internal)?,
                )
            }
            None => None,
        };
        let sealed = self.cipher.seal(
            value,
            &secret_key,
            &metadata_key,
            input.passphrase.as_ref(),
            &salt,
            &nonce,
        );
        let secret = StoredSecret {
            key: secret_key.clone(),
            metadata_key: metadata_key.clone(),
            ciphertext: sealed.ciphertext,
            nonce,
            salt,
            passphrase_hash,
            failed_tries: 0,
            created: now,
            expires_at: now + ttl,
        };
        let metadata = Metadata {
            key: metadata_key,
            custid: caller.custid.clone(),
            secret_key: Some(secret_key.clone()),
            ttl,
            state: MetadataState::New,
            created: now,
            updated: now,
            received: None,
            burned: None,
            recipients: input
                .recipient
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            passphrase_required: secret.passphrase_hash.is_some(),
            secret_expires_at: now + ttl,
            expires_at: now + 2 * ttl,
        };
        // The mail goes into the outbox in the same transaction as the secret: once the
        // share is acknowledged, the mail cannot be lost; sending never delays the share.
        let mail = match &input.recipient {
            Some(recipient) => Some(OutboxMail {
                id: random_string(&self.rng, KEY_LEN, KEY_ALPHABET).map_err(OtsError::Internal)?,
                metadata_key: metadata.key.clone(),
                mail: SecretLinkMail {
                    to: recipient.as_str().to_owned(),
                    from_custid: caller.custid.clone(),
                    secret_key,
                },
                attempts: 0,
                next_attempt_at: now,
            }),
            None => None,
        };
        self.secrets
            .create(&secret, &metadata, mail.as_ref())
            .await?;
        info!(custid = %caller.custid, ttl, passphrase = metadata.passphrase_required, mail = mail.is_some(), "secret created");
        Ok(MetadataView::of(&metadata, now))
    }

    /// Whether a secret is waiting, and whether it needs a passphrase, without revealing or
    /// changing anything (the browser page shows a "reveal" button on a plain GET).
    pub async fn peek(&self, raw_key: &str) -> Result<Peek, OtsError> {
        let key = SecretKey::parse(raw_key).ok_or(OtsError::NotFound)?;
        let stored = self
            .secrets
            .find_secret(&key, self.clock.now())
            .await?
            .ok_or(OtsError::NotFound)?;
        Ok(Peek {
            passphrase_required: stored.passphrase_hash.is_some(),
        })
    }

    /// Reveals a secret once. A wrong (or missing) passphrase never consumes it.
    pub async fn reveal(
        &self,
        raw_key: &str,
        passphrase: Option<Passphrase>,
    ) -> Result<Revealed, OtsError> {
        let key = SecretKey::parse(raw_key).ok_or(OtsError::NotFound)?;
        let now = self.clock.now();
        // A snapshot, read without locks: bcrypt below takes ~0.25 s at cost 12 and must not
        // hold a row lock or a pooled connection meanwhile.
        let stored = self
            .secrets
            .find_secret(&key, now)
            .await?
            .ok_or(OtsError::NotFound)?;

        let passphrase = if let Some(hash) = stored.passphrase_hash.clone() {
            let given = passphrase.clone();
            let ok = match given {
                Some(p) => {
                    blocking(&self.bcrypt_slots, move || {
                        crypto::verify_passphrase(&p, &hash)
                    })
                    .await?
                }
                None => false,
            };
            if !ok {
                return Err(self.failed_try(&key, now).await);
            }
            passphrase
        } else {
            None
        };

        // Decrypt before consuming: if decryption fails, the secret stays where it was.
        let value = self
            .cipher
            .open(
                &stored.ciphertext,
                &stored.key,
                &stored.metadata_key,
                passphrase.as_ref(),
                &stored.salt,
                &stored.nonce,
            )
            .ok_or_else(|| {
                OtsError::Internal(
                    "a stored secret does not decrypt: was the master secret changed?".into(),
                )
            })?;

        // The one atomic step: of all concurrent reveals, exactly one wins here.
        if !self.secrets.consume(&key, now).await? {
            return Err(OtsError::NotFound);
        }
        info!("secret revealed");
        Ok(Revealed {
            secret_key: key,
            value,
        })
    }

    async fn failed_try(&self, key: &SecretKey, now: UnixTime) -> OtsError {
        match self
            .secrets
            .record_failed_try(key, self.policy.max_passphrase_tries, now)
            .await
        {
            Ok(FailedTry::TriesLeft(tries_left)) => OtsError::WrongPassphrase { tries_left },
            Ok(FailedTry::Burned) => {
                info!("secret burned after too many wrong passphrases");
                OtsError::WrongPassphrase { tries_left: 0 }
            }
            Ok(FailedTry::Gone) => OtsError::NotFound,
            Err(err) => err.into(),
        }
    }

    /// The creator's view of a secret.
    pub async fn metadata(&self, raw_key: &str) -> Result<MetadataView, OtsError> {
        let key = MetadataKey::parse(raw_key).ok_or(OtsError::NotFound)?;
        let now = self.clock.now();
        let metadata = self
            .secrets
            .find_metadata(&key, now)
            .await?
            .ok_or(OtsError::NotFound)?;
        Ok(MetadataView::of(&metadata, now))
    }

    /// Destroys an unread secret.
    pub async fn burn(&self, raw_key: &str) -> Result<MetadataView, OtsError> {
        let key = MetadataKey::parse(raw_key).ok_or(OtsError::NotFound)?;
        let now = self.clock.now();
        let metadata = self
            .secrets
            .burn(&key, now)
            .await?
            .ok_or(OtsError::NotFound)?;
        info!("secret burned");
        Ok(MetadataView::of(&metadata, now))
    }

    /// The caller's metadata still alive, newest first. Secret keys are never shown here.
    pub async fn recent(
        &self,
        caller: &Caller,
        limit: Option<i64>,
    ) -> Result<Vec<MetadataView>, OtsError> {
        if caller.custid.is_anonymous() {
            return Err(OtsError::Unauthorized);
        }
        let max = self.policy.recent_limit;
        let limit = match limit {
            None => max,
            Some(n) if (1..=i64::from(max)).contains(&n) => n as u32,
            Some(_) => return Err(OtsError::InvalidLimit { max }),
        };
        let now = self.clock.now();
        let items = self.secrets.recent(&caller.custid, now, limit).await?;
        Ok(items
            .iter()
            .map(|m| MetadataView {
                secret_key: None,
                ..MetadataView::of(m, now)
            })
            .collect())
    }

    /// Closes the store's connections (after the last request).
    pub async fn close(&self) {
        self.secrets.close().await;
    }

    /// The store's pooled connections (open, idle), when it has a pool.
    pub fn pool_usage(&self) -> Option<(u32, u32)> {
        self.secrets.pool_usage()
    }

    /// Whether the store answers.
    pub async fn is_available(&self) -> bool {
        match self.secrets.ping().await {
            Ok(()) => true,
            Err(err) => {
                warn!(error = %err, "status check failed");
                false
            }
        }
    }

    /// Sends the mail that is due, at most `batch` messages. A message whose secret is no
    /// longer waiting (received, burned, expired) is dropped unsent; a failed send is retried
    /// with backoff (1, 2, 4 … seconds, at most a minute apart) until the secret expires.
    pub async fn deliver_due_mail(&self, batch: u32) -> Result<MailReport, OtsError> {
        let now = self.clock.now();
        let due = self
            .secrets
            .claim_due_mail(now, now + MAIL_LEASE, batch)
            .await?;
        let mut report = MailReport::default();
        for item in due {
            let waiting = self
                .secrets
                .find_metadata(&item.metadata_key, now)
                .await?
                .is_some_and(|m| m.state_at(now) == MetadataState::New);
            if !waiting {
                self.secrets.mail_done(&item.id).await?;
                info!(to = %obfuscate_email(&item.mail.to), "mail dropped: the secret is no longer waiting");
                report.dropped += 1;
                continue;
            }
            match self.mailer.send(&item.mail).await {
                Ok(()) => {
                    self.secrets.mail_done(&item.id).await?;
                    info!(to = %obfuscate_email(&item.mail.to), "secret link mailed");
                    report.sent += 1;
                }
                Err(cause) => {
                    let attempts = item.attempts + 1;
                    let delay = 1i64 << attempts.min(7).saturating_sub(1);
                    let next = now + delay.min(MAX_MAIL_BACKOFF);
                    self.secrets.mail_retry(&item.id, attempts, next).await?;
                    warn!(%cause, attempts, retry_in = next - now, to = %obfuscate_email(&item.mail.to), "sending mail failed; will retry");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// How many mails wait in the outbox.
    pub async fn mail_backlog(&self) -> Result<u64, OtsError> {
        Ok(self.secrets.mail_backlog().await?)
    }

    /// Deletes expired secrets and metadata, in batches of `batch`, until none are left.
    pub async fn sweep_expired(&self, batch: u32) -> Result<Swept, OtsError> {
        let now = self.clock.now();
        let mut total = Swept::default();
        loop {
            let n = self.secrets.sweep_expired(now, batch).await?;
            total.secrets += n.secrets;
            total.metadata += n.metadata;
            if n.secrets < u64::from(batch) && n.metadata < u64::from(batch) {
                return Ok(total);
            }
        }
    }

    fn random_string(&self, len: usize, alphabet: &[u8]) -> Result<String, OtsError> {
        random_string(&self.rng, len, alphabet).map_err(OtsError::Internal)
    }
}

/// How long a claimed mail is reserved for the worker that claimed it (seconds).
const MAIL_LEASE: i64 = 120;
/// The longest wait between two tries of one mail (seconds).
const MAX_MAIL_BACKOFF: i64 = 60;

/// What one round of mail delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MailReport {
    pub sent: u32,
    pub failed: u32,
    pub dropped: u32,
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
pub fn random_string<R: Rng + ?Sized>(
    rng: &R,
    len: usize,
    alphabet: &[u8],
) -> Result<String, String> {
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)?;
        for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
            if out.len() == len {
                break;
            }
            out.push(alphabet[b as usize % n] as char);
        }
    }
    Ok(out)
}

/// Runs CPU-heavy work (bcrypt) on tokio's blocking pool, inside the caller's tracing span,
/// once one of `slots` is free: bcrypt may use at most that many cores, so the async workers
/// keep the rest and plain requests stay fast while passphrase checks queue.
async fn blocking<T: Send + 'static>(
    slots: &tokio::sync::Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OtsError> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| OtsError::Internal(format!("bcrypt slots closed: {e}")))?;
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| OtsError::Internal(format!("blocking task failed: {e}")))
}

/// Cores bcrypt may use at once: all but one (at least one).
pub fn default_bcrypt_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}
