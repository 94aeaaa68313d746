//! Storing a secret: share (the caller's value) and generate (a value made here).

use crate::clock::Clock;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::{random_string, Rng};
use crate::usecases::{Caller, ShareInput, Shared};

use super::Service;

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
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
        let value = random_string(&self.rng, GENERATED_LEN, GENERATED_ALPHABET)
            .map(SecretValue::new)
            .map_err(OtsError::Internal)?;
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
                let (p, cost, hasher) = (p.clone(), self.policy.bcrypt_cost, self.hasher.clone());
                Some(
                    self.blocking(move || hasher.hash(&p, cost))
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
        self.emit(Event::Created {
            custid: caller.custid.clone(),
            ttl,
            passphrase: metadata.passphrase_required,
            mail: mail.is_some(),
        });
        Ok(MetadataView::of(&metadata, now))
    }
}
