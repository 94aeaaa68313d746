//! What the creator of a secret may do with its metadata key: look, burn, list recent.

use crate::clock::Clock;
use crate::error::OtsError;
use crate::events::Event;
use crate::model::*;
use crate::ports::*;
use crate::random::Rng;
use crate::usecases::Caller;

use super::Service;

impl<S, C, M, K, R> Service<S, C, M, K, R>
where
    S: SecretRepository + Outbox,
    C: CustomerRepository,
    M: Mailer,
    K: Clock,
    R: Rng,
{
    /// The creator's view of a secret.
    pub async fn metadata(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        let now = self.clock.now();
        let metadata = self
            .secrets
            .find_metadata(key, now)
            .await?
            .ok_or(OtsError::NotFound)?;
        Ok(MetadataView::of(&metadata, now))
    }

    /// Destroys an unread secret.
    pub async fn burn(&self, key: &MetadataKey) -> Result<MetadataView, OtsError> {
        let now = self.clock.now();
        let metadata = self
            .secrets
            .burn(key, now)
            .await?
            .ok_or(OtsError::NotFound)?;
        self.emit(Event::Burned);
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
}
