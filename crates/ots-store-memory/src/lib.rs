//! The repository ports over in-process maps. Every port call takes one mutex for its whole
//! duration and never awaits while holding it, so each call is atomic: of concurrent reveals
//! exactly one finds the secret still there.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ots_domain::*;

mod records;

use records::Records;

#[derive(Default)]
struct State {
    /// Keyed by digests, hashed with aHash (as the metadata index is) rather than SipHash.
    secrets: HashMap<SecretId, StoredSecret, griddle::hash_map::DefaultHashBuilder>,
    /// Each record with its insertion number, which orders `recent`. Metadata outlives its
    /// secret (twice the ttl), so this map only grows under load. Its records never move
    /// (see `records`), and its index is griddle's, which moves entries to a grown table a
    /// few per insert, where a plain map moves them all in one insert under the lock,
    /// stalling every request (~150 ms at 115k records in `just bench`).
    metadata: Records<MetadataId, (u64, Metadata)>,
    check_value: Option<Vec<u8>>,
    inserted: u64,
    customers: HashMap<CustId, Customer>,
    tokens: HashMap<CustId, Vec<StoredToken>>,
    outbox: HashMap<String, OutboxMail>,
}

impl State {
    /// Removes a secret and gives its metadata to `mark` (received or burned). The secret
    /// comes back, so that a caller can free it (or hand it on) after letting go of the lock.
    fn finish(
        &mut self,
        key: &SecretId,
        mark: impl FnOnce(&mut Metadata),
    ) -> Option<(StoredSecret, &Metadata)> {
        let secret = self.secrets.remove(key)?;
        let (_, metadata) = self.metadata.get_mut(&secret.metadata_id)?;
        mark(metadata);
        Some((secret, metadata))
    }

    /// Mail lives only as long as its metadata (as ON DELETE CASCADE does in SQL).
    fn forget_orphan_mail(&mut self) {
        let metadata = &self.metadata;
        self.outbox
            .retain(|_, m| metadata.contains_key(&m.metadata_id));
    }

    fn live_secret(&self, key: &SecretId, now: UnixTime) -> Option<&StoredSecret> {
        self.secrets.get(key).filter(|s| s.is_alive_at(now))
    }
}

/// Secrets, metadata, customers and tokens in memory. Lost on restart.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every secret, metadata record and mail, as a copy of the store would hold them: what
    /// the threat-model tests give an attacker.
    pub fn dump(&self) -> (Vec<StoredSecret>, Vec<Metadata>, Vec<OutboxMail>) {
        let state = self.lock();
        (
            state.secrets.values().cloned().collect(),
            state.metadata.values().map(|(_, m)| m.clone()).collect(),
            state.outbox.values().cloned().collect(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-done change (each call mutates
        // at the end), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SecretRepository for MemoryStore {
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError> {
        // Copies are made before the lock is taken and, on a conflict, freed after it is let
        // go: under load the two workers meet at this lock, and an allocation inside it (or
        // the allocator's own lock) makes the other wait, often asleep.
        let (secret, metadata, mail) = (secret.clone(), metadata.clone(), mail.cloned());
        let conflict = || Err(StoreError::Conflict("key already in use".into()));
        let mut state = self.lock();
        let taken = state.secrets.contains_key(&secret.id)
            || mail
                .as_ref()
                .is_some_and(|m| state.outbox.contains_key(&m.id));
        if taken {
            drop(state);
            return conflict();
        }
        // The metadata's check and insert are one lookup, and the first change made.
        let order = state.inserted + 1;
        if let Err(refused) = state.metadata.insert_new(metadata.id, (order, metadata)) {
            drop(state);
            drop(refused);
            return conflict();
        }
        state.inserted = order;
        state.secrets.insert(secret.id, secret);
        if let Some(mail) = mail {
            state.outbox.insert(mail.id.clone(), mail);
        }
        Ok(())
    }

    async fn find_secret(
        &self,
        key: &SecretId,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.lock().live_secret(key, now).cloned())
    }

    async fn consume(&self, key: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.live_secret(key, now).is_none() {
            return Ok(false);
        }
        let secret = state.finish(key, |m| m.mark_received(now)).map(|(s, _)| s);
        drop(state);
        Ok(secret.is_some())
    }

    async fn consume_unprotected(
        &self,
        key: &SecretId,
        key_ids: &[KeyId],
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        let mut state = self.lock();
        let unprotected = state.live_secret(key, now).is_some_and(|s| {
            s.scheme
                .opens_without_passphrase()
                .is_some_and(|key_id| key_ids.contains(&key_id))
        });
        if !unprotected {
            return Ok(None);
        }
        Ok(state.finish(key, |m| m.mark_received(now)).map(|(s, _)| s))
    }

    async fn take_try(
        &self,
        key: &SecretId,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError> {
        let mut state = self.lock();
        let Some(secret) = state.secrets.get_mut(key).filter(|s| s.is_alive_at(now)) else {
            return Ok(TryTaken::Gone);
        };
        if secret.failed_tries >= max_tries {
            return Ok(TryTaken::NoneLeft);
        }
        secret.failed_tries += 1;
        Ok(TryTaken::Taken {
            left: max_tries - secret.failed_tries,
        })
    }

    async fn exhaust(&self, key: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let secret = state.finish(key, |m| m.mark_burned(now)).map(|(s, _)| s);
        drop(state);
        Ok(secret.is_some())
    }

    async fn find_metadata(
        &self,
        key: &MetadataId,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        Ok(self
            .lock()
            .metadata
            .get(key)
            .map(|(_, m)| m)
            .filter(|m| m.is_alive_at(now))
            .cloned())
    }

    async fn burn(&self, key: &MetadataId, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        let mut state = self.lock();
        let new = state
            .metadata
            .get(key)
            .is_some_and(|(_, m)| m.state_at(now) == MetadataState::New);
        // The secrets are keyed by their own id, so finding a metadata's secret is a scan,
        // under the lock: only for a metadata that has a secret to burn, so that a key that
        // names nothing (anyone may send one) costs a lookup, not a pass over every secret.
        if !new {
            return Ok(None);
        }
        let secret = state
            .secrets
            .values()
            .find(|s| &s.metadata_id == key)
            .map(|s| s.id);
        Ok(secret.and_then(|secret| {
            state
                .finish(&secret, |m| m.mark_burned(now))
                .map(|(_, m)| m.clone())
        }))
    }

    async fn recent(
        &self,
        custid: &CustId,
        now: UnixTime,
        limit: u32,
    ) -> Result<Vec<Metadata>, StoreError> {
        let state = self.lock();
        let mut items: Vec<&(u64, Metadata)> = state
            .metadata
            .values()
            .filter(|(_, m)| &m.custid == custid && m.is_alive_at(now))
            .collect();
        // Newest first: by creation time, then by insertion within one second.
        items.sort_by(|(a_order, a), (b_order, b)| {
            b.created.cmp(&a.created).then(b_order.cmp(a_order))
        });
        Ok(items
            .into_iter()
            .take(limit as usize)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        let mut state = self.lock();
        let secrets: Vec<SecretId> = state
            .secrets
            .values()
            .filter(|s| !s.is_alive_at(now))
            .map(|s| s.id)
            .take(batch as usize)
            .collect();
        let metadata: Vec<MetadataId> = state
            .metadata
            .values()
            .filter(|(_, m)| !m.is_alive_at(now))
            .map(|(_, m)| m.id)
            .take(batch as usize)
            .collect();
        for key in &secrets {
            state.secrets.remove(key);
        }
        for key in &metadata {
            state.metadata.remove(key);
        }
        state.forget_orphan_mail();
        Ok(Swept {
            secrets: secrets.len() as u64,
            metadata: metadata.len() as u64,
        })
    }

    async fn purge_customer(&self, custid: &CustId, _now: UnixTime) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let keys: Vec<MetadataId> = state
            .metadata
            .values()
            .filter(|(_, m)| &m.custid == custid)
            .map(|(_, m)| m.id)
            .collect();
        for key in &keys {
            state.metadata.remove(key);
        }
        // Secrets go with their metadata (as ON DELETE CASCADE does in SQL).
        let metadata = &state.metadata;
        let orphans: Vec<SecretId> = state
            .secrets
            .values()
            .filter(|s| !metadata.contains_key(&s.metadata_id))
            .map(|s| s.id)
            .collect();
        for id in &orphans {
            state.secrets.remove(id);
        }
        state.forget_orphan_mail();
        Ok(keys.len() as u64)
    }

    async fn check_value(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().check_value.clone())
    }

    async fn init_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .check_value
            .get_or_insert_with(|| sealed.to_vec());
        Ok(())
    }

    async fn replace_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        self.lock().check_value = Some(sealed.to_vec());
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let mut state = self.lock();
        let mut due: Vec<&mut OutboxMail> = state
            .outbox
            .values_mut()
            .filter(|m| m.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|m| m.next_attempt_at);
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|m| {
                m.next_attempt_at = lease_until;
                m.clone()
            })
            .collect())
    }

    async fn mail_done(&self, id: &str) -> Result<(), StoreError> {
        self.lock().outbox.remove(id);
        Ok(())
    }

    async fn mail_retry(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError> {
        if let Some(m) = self.lock().outbox.get_mut(id) {
            m.attempts = attempts;
            m.next_attempt_at = next_attempt_at;
        }
        Ok(())
    }

    async fn mail_backlog(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox.len() as u64)
    }
}

#[async_trait]
impl CustomerRepository for MemoryStore {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        Ok(self.lock().customers.get(custid).cloned())
    }

    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.customers.contains_key(&customer.custid) {
            return Err(StoreError::Conflict(format!(
                "customer {} already exists",
                customer.custid
            )));
        }
        state
            .customers
            .insert(customer.custid.clone(), customer.clone());
        Ok(())
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        let mut all: Vec<Customer> = self.lock().customers.values().cloned().collect();
        all.sort_by(|a, b| a.custid.cmp(&b.custid));
        Ok(all)
    }

    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        Ok(match self.lock().customers.get_mut(custid) {
            Some(c) => {
                c.plan = plan.to_owned();
                true
            }
            None => false,
        })
    }

    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.tokens.remove(custid);
        Ok(state.customers.remove(custid).is_some())
    }

    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.customers.contains_key(custid) {
            return Err(StoreError::Other(format!("no customer {custid}")));
        }
        state
            .tokens
            .entry(custid.clone())
            .or_default()
            .push(token.clone());
        Ok(())
    }

    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        Ok(self.lock().tokens.get(custid).cloned().unwrap_or_default())
    }

    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let Some(tokens) = state.tokens.get_mut(custid) else {
            return Ok(0);
        };
        let before = tokens.len();
        tokens.retain(|t| !t.prefix.starts_with(prefix));
        Ok((before - tokens.len()) as u64)
    }
}
