//! Storing a secret: share (the caller's value) and generate (a value made here).

use crate::clock::{Clock, UnixTime};
use crate::crypto;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::{random_string, Rng};
use crate::usecases::{Caller, ShareInput, Shared};

use crate::crypto::purpose::{MAIL_LINK, MAIL_TO, RECENT_KEY};

use super::{value_aad, Service};

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
        let internal = OtsError::Internal;
        let now = self.clock.now();
        let ttl = self.policy.grant_ttl(input.ttl, &caller.plan);
        // The secret key derives from the metadata key: the creator gets it back from the
        // metadata key alone, and the store keeps nothing of it.
        let (metadata_key, secret_key) = loop {
            let metadata_key = MetadataKey::generate(&self.rng).map_err(internal)?;
            if let Some(secret_key) = SecretKey::derived_from(&metadata_key) {
                break (metadata_key, secret_key);
            }
        };
        let (id, metadata_id) = (SecretId::of(&secret_key), MetadataId::of(&metadata_key));
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut salt).map_err(internal)?;
        self.rng.fill(&mut nonce).map_err(internal)?;

        // A passphrase goes into the value key through bcrypt; only its parameters are kept.
        let passphrase = match &input.passphrase {
            Some(p) => {
                let mut params = PassphraseParams {
                    cost: self.policy.bcrypt_cost,
                    salt: [0u8; 16],
                };
                self.rng.fill(&mut params.salt).map_err(internal)?;
                let key = self.derive(p.clone(), params).await?;
                Some((key, params))
            }
            None => None,
        };
        let (scheme, ciphertext) = self.keyring.seal_value(
            value,
            &secret_key,
            passphrase.as_ref().map(|(key, params)| (&**key, *params)),
            &salt,
            &nonce,
            &value_aad(&id, &metadata_id),
        );
        let secret = StoredSecret {
            id,
            metadata_id,
            ciphertext,
            nonce,
            salt,
            scheme,
            failed_tries: 0,
            created: now,
            expires_at: now + ttl,
        };
        let rng: &dyn Rng = &self.rng;
        // Only customers have `recent`, which needs the metadata key back.
        let sealed_key = match caller.custid.is_anonymous() {
            true => None,
            false => Some(
                self.keyring
                    .seal(RECENT_KEY, metadata_key.as_str().as_bytes(), rng)
                    .map_err(internal)?,
            ),
        };
        let metadata = Metadata {
            id: metadata_id,
            custid: caller.custid.clone(),
            sealed_secret_key: Some(crypto::DERIVED_FROM_METADATA_KEY.to_vec()),
            sealed_key,
            ttl,
            state: MetadataState::New,
            created: now,
            updated: now,
            received: None,
            burned: None,
            recipients: input.recipient.iter().map(Email::obfuscated).collect(),
            passphrase_required: secret.passphrase_required(),
            secret_expires_at: now + ttl,
            expires_at: now + 2 * ttl,
        };
        // The mail goes into the outbox in the same transaction as the secret: once the
        // share is acknowledged, the mail cannot be lost; sending never delays the share.
        let mail = match &input.recipient {
            Some(recipient) => Some(self.seal_mail(
                metadata_id,
                &caller.custid,
                recipient.as_str(),
                &secret_key,
                now,
            )?),
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
        Ok(MetadataView::of(
            &metadata,
            &metadata_key,
            Some(&secret_key),
            now,
        ))
    }

    /// An outbox mail with its address and link sealed under the master secret.
    pub(super) fn seal_mail(
        &self,
        metadata_id: MetadataId,
        from: &CustId,
        to: &str,
        secret_key: &SecretKey,
        now: UnixTime,
    ) -> Result<OutboxMail, OtsError> {
        let rng: &dyn Rng = &self.rng;
        let seal = |purpose, plain: &str| {
            self.keyring
                .seal(purpose, plain.as_bytes(), rng)
                .map_err(OtsError::Internal)
        };
        Ok(OutboxMail {
            id: random_string(&self.rng, KEY_LEN, KEY_ALPHABET).map_err(OtsError::Internal)?,
            metadata_id,
            from_custid: from.clone(),
            sealed_to: seal(MAIL_TO, to)?,
            sealed_secret_key: seal(MAIL_LINK, secret_key.as_str())?,
            attempts: 0,
            next_attempt_at: now,
        })
    }
}
