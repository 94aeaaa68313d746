//! What the server runs beside the requests: mail delivery from the outbox, the sweep of
//! expired rows, and the store's health and lifecycle.

use tracing::{info, warn};

use crate::clock::Clock;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;

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
            let to = obfuscate_email(&item.mail.to);
            if !waiting {
                self.secrets.mail_done(&item.id).await?;
                info!(%to, "mail dropped: the secret is no longer waiting");
                report.dropped += 1;
                continue;
            }
            match self.mailer.send(&item.mail).await {
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
