//! What the server runs beside the requests: mail delivery from the outbox, the sweep of
//! expired rows, and the store's health and lifecycle.

use tracing::{info, warn};

use crate::clock::Clock;
use crate::crypto::MasterCheck;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;

use crate::crypto::purpose::{MAIL_LINK, MAIL_TO};

use super::Service;

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

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// Closes the store's connections (after the last request).
    pub async fn close(&self) {
        self.secrets.close().await;
    }

    /// The store's pooled connections (open, idle), when it has a pool.
    pub fn pool_usage(&self) -> Option<(u32, u32)> {
        self.secrets.pool_usage()
    }

    /// The store's batches of writes so far, when it merges writes.
    pub fn write_batches(&self) -> Option<WriteBatches> {
        self.secrets.write_batches()
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
                .find_metadata(&item.metadata_id, now)
                .await?
                .is_some_and(|m| m.state_at(now) == MetadataState::New);
            if !waiting {
                self.secrets.mail_done(&item.id).await?;
                info!("mail dropped: the secret is no longer waiting");
                report.dropped += 1;
                continue;
            }
            let mail = self.open_mail(&item)?;
            let to = obfuscate_email(&mail.to);
            match self.mailer.send(&mail).await {
                Ok(()) => {
                    self.secrets.mail_done(&item.id).await?;
                    info!(%to, "secret link mailed");
                    report.sent += 1;
                }
                Err(cause) => {
                    let attempts = item.attempts + 1;
                    let delay = 1i64 << attempts.min(7).saturating_sub(1);
                    let next = now + delay.min(MAX_MAIL_BACKOFF);
                    self.secrets.mail_retry(&item.id, attempts, next).await?;
                    warn!(%cause, attempts, retry_in = next - now, %to, "sending mail failed; will retry");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    fn open_mail(&self, item: &OutboxMail) -> Result<SecretLinkMail, OtsError> {
        let open = |purpose, sealed: &[u8]| {
            self.keyring
                .open(purpose, sealed)
                .and_then(|raw| String::from_utf8(raw.to_vec()).ok())
                .ok_or_else(|| OtsError::Internal(format!("mail {} does not open", item.id)))
        };
        Ok(SecretLinkMail {
            to: open(MAIL_TO, &item.sealed_to)?,
            from_custid: item.from_custid.clone(),
            secret_key: SecretKey::parse(&open(MAIL_LINK, &item.sealed_secret_key)?)
                .ok_or_else(|| OtsError::Internal(format!("mail {} has no link", item.id)))?,
        })
    }

    /// Proves the master secret against the store before anything is served: the store's
    /// check value must open under the current or a previous master secret. With none yet,
    /// the current one seals it; when a previous one opens it, the current one reseals it
    /// (the rotation is done: new rows use the current secret). A master secret that opens
    /// nothing is an error, and the server must not start.
    pub async fn check_master(&self) -> Result<MasterCheck, OtsError> {
        let rng: &dyn Rng = &self.rng;
        let fresh = || self.keyring.seal_check(rng).map_err(OtsError::Internal);
        let stored = match self.secrets.check_value().await? {
            Some(stored) => stored,
            None => {
                self.secrets.init_check_value(&fresh()?).await?;
                // Another process may have sealed it first: judge what was kept.
                let kept = self.secrets.check_value().await?;
                match kept.as_deref().and_then(|k| self.keyring.opens_check(k)) {
                    Some(_) => return Ok(MasterCheck::FirstUse),
                    None => return Err(OtsError::WrongMasterSecret),
                }
            }
        };
        match self.keyring.opens_check(&stored) {
            Some(0) => Ok(MasterCheck::Current),
            Some(n) => {
                self.secrets.replace_check_value(&fresh()?).await?;
                Ok(MasterCheck::Previous(n))
            }
            None => Err(OtsError::WrongMasterSecret),
        }
    }

    /// Which master secret opens the store's check value, changing nothing: `None` when
    /// the store has none yet.
    pub async fn peek_master(&self) -> Result<Option<Option<usize>>, OtsError> {
        let stored = self.secrets.check_value().await?;
        Ok(stored.map(|s| self.keyring.opens_check(&s)))
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
                break;
            }
        }
        if total.total() > 0 {
            self.emit(Event::Expired {
                secrets: total.secrets,
                metadata: total.metadata,
            });
        }
        Ok(total)
    }
}
