//! Revealing a secret, once: peek, reveal, and the passphrase try limit.

use crate::clock::{Clock, UnixTime};
use crate::crypto;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;
use crate::usecases::{Peek, Revealed};

use crate::crypto::purpose::LEGACY_METADATA_KEY;

use super::{value_aad, Service};

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
            .find_secret(&SecretId::of(key), self.clock.now())
            .await?
            .ok_or(OtsError::NotFound)?;
        Ok(Peek {
            passphrase_required: stored.passphrase_required(),
        })
    }

    /// Reveals a secret once. A wrong (or missing) passphrase never consumes it.
    ///
    /// A passphrase attempt first takes a try from the store, atomically; only then does
    /// bcrypt run. So, whatever the concurrency and the number of processes, a secret gets
    /// at most `max_passphrase_tries` derivations in its life, and an attempt that finds no
    /// try left runs none and is answered as a burned secret is. A wrong passphrase is a
    /// value that does not open: no verifier is stored to test guesses against.
    pub async fn reveal(
        &self,
        key: &SecretKey,
        passphrase: Option<Passphrase>,
    ) -> Result<Revealed, OtsError> {
        let now = self.clock.now();
        let id = SecretId::of(key);
        // Without a passphrase, one store call takes the secret and hands back its row: the
        // master secret was proved at start-up (`check_master`) and the store only hands over
        // rows sealed under a key this process holds, so what it hands over opens.
        if let Some(stored) = self
            .secrets
            .consume_unprotected(&id, &self.keyring.ids(), now)
            .await?
        {
            let value = self.open(&stored, key, None).ok_or_else(undecryptable)?;
            self.emit(Event::Revealed);
            return Ok(Revealed {
                secret_key: key.clone(),
                value,
            });
        }
        // A snapshot, read without locks: bcrypt below takes ~0.25 s at cost 12 and must not
        // hold a row lock or a pooled connection meanwhile.
        let stored = self
            .secrets
            .find_secret(&id, now)
            .await?
            .ok_or(OtsError::NotFound)?;
        let value = match &stored.scheme {
            ValueScheme::Sealed {
                passphrase: None, ..
            }
            | ValueScheme::Expanded { .. } => {
                self.open(&stored, key, None).ok_or_else(undecryptable)?
            }
            ValueScheme::Sealed {
                passphrase: Some(params),
                ..
            } => {
                let left = self.take_try(&id, now).await?;
                let opened = match passphrase {
                    Some(p) => {
                        let derived = self.derive(p, *params).await?;
                        self.open(&stored, key, Some(&derived))
                    }
                    None => None,
                };
                match opened {
                    Some(value) => value,
                    None => return Err(self.wrong_passphrase(&id, left, now).await),
                }
            }
            ValueScheme::Legacy {
                passphrase_hash,
                sealed_metadata_key,
            } => {
                let left = self.take_try(&id, now).await?;
                let right = match passphrase {
                    Some(p) => {
                        let (hasher, hash, candidate) =
                            (self.hasher.clone(), passphrase_hash.clone(), p.clone());
                        self.blocking(move || hasher.verify(&candidate, &hash))
                            .await?
                            .then_some(p)
                    }
                    None => None,
                };
                let Some(p) = right else {
                    return Err(self.wrong_passphrase(&id, left, now).await);
                };
                self.open_legacy(&stored, key, sealed_metadata_key, &p)
                    .ok_or_else(undecryptable)?
            }
        };

        // The one atomic step: of all concurrent reveals, exactly one wins here.
        if !self.secrets.consume(&id, now).await? {
            return Err(OtsError::NotFound);
        }
        self.emit(Event::Revealed);
        Ok(Revealed {
            secret_key: key.clone(),
            value,
        })
    }

    fn open(
        &self,
        stored: &StoredSecret,
        key: &SecretKey,
        passphrase_key: Option<&[u8; 24]>,
    ) -> Option<SecretValue> {
        self.keyring.open_value(
            &stored.scheme,
            &stored.ciphertext,
            key,
            passphrase_key,
            &stored.salt,
            &stored.nonce,
            &value_aad(&stored.id, &stored.metadata_id),
        )
    }

    fn open_legacy(
        &self,
        stored: &StoredSecret,
        key: &SecretKey,
        sealed_metadata_key: &[u8],
        passphrase: &Passphrase,
    ) -> Option<SecretValue> {
        let raw = crypto::open_under_key(key.as_str(), LEGACY_METADATA_KEY, sealed_metadata_key)?;
        let metadata_key = MetadataKey::parse(std::str::from_utf8(&raw).ok()?)?;
        crypto::open_legacy_value(
            &self.keyring,
            &stored.ciphertext,
            key,
            &metadata_key,
            Some(passphrase),
            &stored.salt,
            &stored.nonce,
        )
    }

    /// Takes a passphrase try before any check; none left is answered as a gone secret.
    async fn take_try(&self, id: &SecretId, now: UnixTime) -> Result<u32, OtsError> {
        match self
            .secrets
            .take_try(id, self.policy.max_passphrase_tries, now)
            .await?
        {
            TryTaken::Taken { left } => Ok(left),
            TryTaken::NoneLeft | TryTaken::Gone => Err(OtsError::NotFound),
        }
    }

    /// A wrong or missing passphrase: the last try burns the secret.
    async fn wrong_passphrase(&self, id: &SecretId, left: u32, now: UnixTime) -> OtsError {
        if left == 0 {
            if let Err(err) = self.secrets.exhaust(id, now).await {
                return err.into();
            }
        }
        self.emit(Event::WrongPassphrase { tries_left: left });
        OtsError::WrongPassphrase { tries_left: left }
    }
}

/// The store proves its master secret at start-up (see `check_master`), so a value that does
/// not open without a passphrase is damaged, not a configuration mistake.
fn undecryptable() -> OtsError {
    OtsError::Internal("a stored secret does not decrypt: its row is damaged".into())
}
