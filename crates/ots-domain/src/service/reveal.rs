//! Revealing a secret, once: peek, reveal, and the passphrase try limit.

use crate::clock::{Clock, UnixTime};
use crate::crypto;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;
use crate::usecases::{Peek, Revealed};

use super::Service;

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// Whether a secret is waiting, and whether it needs a passphrase, without revealing or
    /// changing anything (the browser page shows a "reveal" button on a plain GET).
    pub async fn peek(&self, key: &SecretKey) -> Result<Peek, OtsError> {
        let stored = self
            .secrets
            .find_secret(key, self.clock.now())
            .await?
            .ok_or(OtsError::NotFound)?;
        Ok(Peek {
            passphrase_required: stored.passphrase_hash.is_some(),
        })
    }

    /// Reveals a secret once. A wrong (or missing) passphrase never consumes it.
    pub async fn reveal(
        &self,
        key: &SecretKey,
        passphrase: Option<Passphrase>,
    ) -> Result<Revealed, OtsError> {
        let now = self.clock.now();
        // A snapshot, read without locks: bcrypt below takes ~0.25 s at cost 12 and must not
        // hold a row lock or a pooled connection meanwhile.
        let stored = self
            .secrets
            .find_secret(key, now)
            .await?
            .ok_or(OtsError::NotFound)?;

        let passphrase = if let Some(hash) = stored.passphrase_hash.clone() {
            let ok = match passphrase.clone() {
                Some(p) => {
                    self.blocking(move || crypto::verify_passphrase(&p, &hash))
                        .await?
                }
                None => false,
            };
            if !ok {
                return Err(self.failed_try(key, now).await);
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
        if !self.secrets.consume(key, now).await? {
            return Err(OtsError::NotFound);
        }
        self.emit(Event::Revealed);
        Ok(Revealed {
            secret_key: key.clone(),
            value,
        })
    }

    async fn failed_try(&self, key: &SecretKey, now: UnixTime) -> OtsError {
        let tries_left = match self
            .secrets
            .record_failed_try(key, self.policy.max_passphrase_tries, now)
            .await
        {
            Ok(FailedTry::TriesLeft(tries_left)) => tries_left,
            Ok(FailedTry::Burned) => 0,
            Ok(FailedTry::Gone) => return OtsError::NotFound,
            Err(err) => return err.into(),
        };
        self.emit(Event::WrongPassphrase { tries_left });
        OtsError::WrongPassphrase { tries_left }
    }
}
