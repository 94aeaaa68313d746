//! Revealing a secret, once: peek, reveal, and the passphrase try limit.

use crate::clock::{Clock, UnixTime};
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
    ///
    /// A passphrase attempt first takes a try from the store, atomically; only then does
    /// bcrypt run. So, whatever the concurrency and the number of processes, a secret gets
    /// at most `max_passphrase_tries` checks in its life, and an attempt that finds no try
    /// left runs none and is answered as a burned secret is.
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

        let passphrase = match stored.passphrase_hash.clone() {
            Some(hash) => Some(self.check_passphrase(key, passphrase, hash, now).await?),
            None => None,
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

    /// Takes a try, then checks the passphrase against its hash; the right one comes back.
    /// A missing passphrase takes a try too (it is a wrong one) but needs no check.
    async fn check_passphrase(
        &self,
        key: &SecretKey,
        given: Option<Passphrase>,
        hash: String,
        now: UnixTime,
    ) -> Result<Passphrase, OtsError> {
        let left = match self
            .secrets
            .take_try(key, self.policy.max_passphrase_tries, now)
            .await?
        {
            TryTaken::Taken { left } => left,
            TryTaken::NoneLeft | TryTaken::Gone => return Err(OtsError::NotFound),
        };
        if let Some(given) = given {
            let (candidate, hasher) = (given.clone(), self.hasher.clone());
            if self
                .blocking(move || hasher.verify(&candidate, &hash))
                .await?
            {
                return Ok(given);
            }
        }
        if left == 0 {
            // That was the last try: the secret goes.
            self.secrets.exhaust(key, now).await?;
        }
        self.emit(Event::WrongPassphrase { tries_left: left });
        Err(OtsError::WrongPassphrase { tries_left: left })
    }
}
