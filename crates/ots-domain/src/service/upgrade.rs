//! Upgrading a store written by a release that kept keys in the clear: each record is
//! rewritten, all or nothing, into what this release stores. Unread secrets stay revealable
//! with their old links, and metadata with its old keys.

use tracing::info;

use crate::clock::Clock;
use crate::crypto;
use crate::error::OtsError;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;

use crate::crypto::purpose::{
    CREATOR_SECRET_KEY, LEGACY_METADATA_KEY, MAIL_LINK, MAIL_TO, RECENT_KEY,
};

use super::{value_aad, Service};

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// Rewrites every legacy record; returns how many. Refuses (and changes nothing more)
    /// when a legacy value does not open under any master secret given.
    pub async fn upgrade_legacy_records(&self) -> Result<u64, OtsError> {
        let mut done = 0;
        loop {
            let batch = self.secrets.legacy_records(100).await?;
            if batch.is_empty() {
                break;
            }
            for record in &batch {
                let (secret, metadata, mails) = self.upgraded(record)?;
                self.secrets
                    .replace_legacy(record, secret.as_ref(), &metadata, &mails)
                    .await?;
                done += 1;
            }
        }
        if done > 0 {
            info!(
                records = done,
                "upgraded records that held keys in the clear"
            );
        }
        Ok(done)
    }

    fn upgraded(
        &self,
        record: &LegacyRecord,
    ) -> Result<(Option<StoredSecret>, Metadata, Vec<OutboxMail>), OtsError> {
        let internal = OtsError::Internal;
        let rng: &dyn Rng = &self.rng;
        let metadata_key = &record.metadata_key;
        let mut metadata = record.metadata.clone();
        metadata.recipients = metadata
            .recipients
            .iter()
            .map(|r| obfuscate_email(r))
            .collect();
        if !metadata.custid.is_anonymous() {
            let sealed = self
                .keyring
                .seal(RECENT_KEY, metadata_key.as_str().as_bytes(), rng)
                .map_err(internal)?;
            metadata.sealed_key = Some(sealed);
        }
        let (Some(secret_key), Some(legacy)) = (&record.secret_key, &record.secret) else {
            metadata.sealed_secret_key = None;
            return Ok((None, metadata, Vec::new()));
        };
        metadata.sealed_secret_key = Some(
            crypto::seal_under_key(
                metadata_key.as_str(),
                CREATOR_SECRET_KEY,
                secret_key.as_str().as_bytes(),
                rng,
            )
            .map_err(internal)?,
        );
        let id = SecretId::of(secret_key);
        let mut secret = StoredSecret {
            id,
            metadata_id: metadata.id,
            ciphertext: legacy.ciphertext.clone(),
            nonce: legacy.nonce,
            salt: legacy.salt,
            scheme: ValueScheme::Sealed {
                key_id: self.keyring.current_id(),
                passphrase: None,
            },
            failed_tries: legacy.failed_tries,
            created: legacy.created,
            expires_at: legacy.expires_at,
        };
        match &legacy.passphrase_hash {
            // No passphrase: this release can open it now, so it seals it anew.
            None => {
                let value = crypto::open_legacy_value(
                    &self.keyring,
                    &legacy.ciphertext,
                    secret_key,
                    metadata_key,
                    None,
                    &legacy.salt,
                    &legacy.nonce,
                )
                .ok_or(OtsError::WrongMasterSecret)?;
                self.rng.fill(&mut secret.salt).map_err(internal)?;
                self.rng.fill(&mut secret.nonce).map_err(internal)?;
                let (scheme, ciphertext) = self.keyring.seal_value(
                    &value,
                    secret_key,
                    None,
                    &secret.salt,
                    &secret.nonce,
                    &value_aad(&id, &metadata.id),
                );
                secret.ciphertext = ciphertext;
                secret.scheme = scheme;
            }
            // A passphrase: only its holder can open it, so it stays as it is, with what it
            // is bound to sealed under the secret key.
            Some(hash) => {
                secret.scheme = ValueScheme::Legacy {
                    passphrase_hash: hash.clone(),
                    sealed_metadata_key: crypto::seal_under_key(
                        secret_key.as_str(),
                        LEGACY_METADATA_KEY,
                        metadata_key.as_str().as_bytes(),
                        rng,
                    )
                    .map_err(internal)?,
                };
            }
        }
        let seal = |purpose, plain: &str| {
            self.keyring
                .seal(purpose, plain.as_bytes(), rng)
                .map_err(OtsError::Internal)
        };
        let mails = record
            .mails
            .iter()
            .map(|mail| {
                Ok(OutboxMail {
                    id: mail.id.clone(),
                    metadata_id: metadata.id,
                    from_custid: mail.from_custid.clone(),
                    sealed_to: seal(MAIL_TO, &mail.to)?,
                    sealed_secret_key: seal(MAIL_LINK, secret_key.as_str())?,
                    attempts: mail.attempts,
                    next_attempt_at: mail.next_attempt_at,
                })
            })
            .collect::<Result<Vec<_>, OtsError>>()?;
        Ok((Some(secret), metadata, mails))
    }
}
