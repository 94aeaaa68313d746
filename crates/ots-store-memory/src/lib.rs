//! The repository ports over in-process maps. Every port call takes one mutex for its whole
//! duration and never awaits while holding it, so each call is atomic: of concurrent reveals
//! exactly one finds the secret still there. The sweep alone takes it once for each stretch
//! of records it looks at, each stretch atomic, so that no request waits for a pass over the
//! whole store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ots_domain::*;

mod records;

use records::Records;

/// A metadata record, its insertion number (which orders `recent`), and the id of its secret
/// while the secret is stored: a burn and the sweep find the secret through it.
struct Record {
    order: u64,
    secret: Option<SecretId>,
    metadata: Metadata,
}

/// Record slots the sweep looks at in one hold of the lock (one chunk of [`Records`]).
const SWEEP_SLOTS: u32 = 4096;

#[derive(Default)]
struct State {
    /// Keyed by digests, hashed with aHash (as the metadata index is) rather than SipHash.
    secrets: HashMap<SecretId, StoredSecret, griddle::hash_map::DefaultHashBuilder>,
    /// Each record with its insertion number and its secret's id. Metadata outlives its
    /// secret (twice the ttl), so this map only grows under load. Its records never move
    /// (see `records`), and its index is griddle's, which moves entries to a grown table a
    /// few per insert, where a plain map moves them all in one insert under the lock,
    /// stalling every request (~150 ms at 115k records in `just bench`).
    metadata: Records<MetadataId, Record>,
    /// The record slot the next sweep starts at: each sweep goes on where the last stopped.
    sweep_from: u32,
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
        let record = self.metadata.get_mut(&secret.metadata_id)?;
        record.secret = None;
        mark(&mut record.metadata);
        Some((secret, &record.metadata))
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
            state
                .metadata
                .values()
                .map(|r| r.metadata.clone())
                .collect(),
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
        let record = Record {
            order,
            secret: Some(secret.id),
            metadata,
        };
        if let Err(refused) = state.metadata.insert_new(record.metadata.id, record) {
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
            .map(|r| &r.metadata)
            .filter(|m| m.is_alive_at(now))
            .cloned())
    }

    async fn burn(&self, key: &MetadataId, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        let mut state = self.lock();
        let secret = state
            .metadata
            .get(key)
            .filter(|r| r.metadata.state_at(now) == MetadataState::New)
            .and_then(|r| r.secret);
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
        let mut items: Vec<&Record> = state
            .metadata
            .values()
            .filter(|r| &r.metadata.custid == custid && r.metadata.is_alive_at(now))
            .collect();
        // Newest first: by creation time, then by insertion within one second.
        items.sort_by(|a, b| {
            (b.metadata.created.cmp(&a.metadata.created)).then(b.order.cmp(&a.order))
        });
        Ok(items
            .into_iter()
            .take(limit as usize)
            .map(|r| r.metadata.clone())
            .collect())
    }

    /// Looks at the records [`SWEEP_SLOTS`] at a time, each time under the lock and letting
    /// it go between, from where the last sweep stopped: every request waits for one
    /// stretch at most, not for a pass over the whole store. An expired record goes with its
    /// secret and mail; a live record's expired secret goes alone.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        let batch = u64::from(batch);
        let mut swept = Swept::default();
        let mut looked = 0u32;
        loop {
            let done = {
                let mut state = self.lock();
                let slots = state.metadata.slots();
                let end = looked.saturating_add(SWEEP_SLOTS).min(slots);
                let mut orphaned_mail = false;
                while looked < end && swept.secrets < batch && swept.metadata < batch {
                    let at = ((u64::from(state.sweep_from) + u64::from(looked)) % u64::from(slots))
                        as u32;
                    looked += 1;
                    let Some(record) = state.metadata.at(at) else {
                        continue;
                    };
                    let (id, secret) = (record.metadata.id, record.secret);
                    if !record.metadata.is_alive_at(now) {
                        // Its secret, if still here, goes with it and counts as a secret.
                        if let Some(secret) = secret {
                            swept.secrets += u64::from(state.secrets.remove(&secret).is_some());
                        }
                        state.metadata.remove(&id);
                        swept.metadata += 1;
                        orphaned_mail = true;
                    } else if let Some(secret) =
                        secret.filter(|s| state.secrets.get(s).is_some_and(|s| !s.is_alive_at(now)))
                    {
                        state.secrets.remove(&secret);
                        if let Some(record) = state.metadata.get_mut(&id) {
                            record.secret = None;
                        }
                        swept.secrets += 1;
                    }
                }
                if orphaned_mail {
                    state.forget_orphan_mail();
                }
                // A full batch of either stops the sweep here; the caller asks again.
                let full = swept.secrets >= batch || swept.metadata >= batch;
                if full || looked >= slots {
                    state.sweep_from = if slots == 0 {
                        0
                    } else {
                        ((u64::from(state.sweep_from) + u64::from(looked)) % u64::from(slots))
                            as u32
                    };
                    true
                } else {
                    false
                }
            };
            if done {
                return Ok(swept);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn purge_customer(&self, custid: &CustId, _now: UnixTime) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let keys: Vec<(MetadataId, Option<SecretId>)> = state
            .metadata
            .values()
            .filter(|r| &r.metadata.custid == custid)
            .map(|r| (r.metadata.id, r.secret))
            .collect();
        // Secrets go with their metadata (as ON DELETE CASCADE does in SQL).
        for (key, secret) in &keys {
            state.metadata.remove(key);
            if let Some(secret) = secret {
                state.secrets.remove(secret);
            }
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
