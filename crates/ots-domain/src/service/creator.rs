//! What the creator of a secret may do with its metadata key: look, burn, list recent.

use crate::clock::Clock;
use crate::crypto;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;
use crate::usecases::Caller;

use crate::crypto::purpose::{CREATOR_SECRET_KEY, RECENT_KEY};

use super::Service;

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// The creator's view of a secret. Its secret key, derived from (or sealed under) the
    /// metadata key, comes back here and only here.
    pub async fn metadata(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        let now = self.clock.now();
        let metadata = self
            .secrets
            .find_metadata(&MetadataId::of(key), now)
            .await?
            .ok_or(OtsError::NotFound)?;
        let secret_key = match &metadata.sealed_secret_key {
            Some(sealed) => Some(open_secret_key(key, sealed)?),
            None => None,
        };
        Ok(MetadataView::of(&metadata, key, secret_key.as_ref(), now))
    }

    /// Destroys an unread secret.
    pub async fn burn(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        let now = self.clock.now();
        let metadata = self
            .secrets
            .burn(&MetadataId::of(key), now)
            .await?
            .ok_or(OtsError::NotFound)?;
        self.emit(Event::Burned);
        Ok(MetadataView::of(&metadata, key, None, now))
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
        items
            .iter()
            .map(|m| {
                let key = m
                    .sealed_key
                    .as_deref()
                    .and_then(|sealed| self.keyring.open(RECENT_KEY, sealed))
                    .and_then(|raw| MetadataKey::parse(std::str::from_utf8(&raw).ok()?))
                    .ok_or_else(|| {
                        OtsError::Internal(format!("{:?}: its key does not open", m.id))
                    })?;
                Ok(MetadataView::of(m, &key, None, now))
            })
            .collect()
    }
}

/// The secret key the metadata record keeps for its creator: derived from the metadata key, or
/// (shares before that, and upgraded stores) sealed under it.
fn open_secret_key(key: &MetadataKey, sealed: &[u8]) -> Result<SecretKey, OtsError> {
    if sealed == crypto::DERIVED_FROM_METADATA_KEY {
        return SecretKey::derived_from(key)
            .ok_or_else(|| OtsError::Internal("a metadata key derives no secret key".into()));
    }
    crypto::open_under_key(key.as_str(), CREATOR_SECRET_KEY, sealed)
        .and_then(|raw| SecretKey::parse(std::str::from_utf8(&raw).ok()?))
        .ok_or_else(|| OtsError::Internal("a sealed secret key does not open".into()))
}
