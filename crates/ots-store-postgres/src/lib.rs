//! The repository ports over PostgreSQL, for deployments with several server processes.
//!
//! Reveal, burn and failed passphrase tries each run in one transaction that first takes the
//! secret's row with `SELECT … FOR UPDATE`: of concurrent callers, across processes, one holds
//! the row, deletes it and commits; the others then find no row.
//!
//! bcrypt and the held lock: the domain verifies a passphrase against a snapshot read without
//! locks (`find_secret`) and only then calls `consume`, whose transaction holds the row lock
//! for a few statements. No connection is ever held across a bcrypt check (~0.25 s at cost
//! 12), so slow passphrase checks cannot starve the pool, and a lock is held for milliseconds.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use ots_domain::*;

#[cfg(feature = "testing")]
pub mod testing;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// Whether to apply migrations on connect.
    pub migrate: bool,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            migrate: true,
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn store_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        // 57P01 admin shutdown, 57P03 cannot connect now, 08xxx connection exceptions.
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03") =>
        {
            StoreError::Unavailable(err.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Other(err.to_string()),
    }
}

const METADATA_COLUMNS: &str = "key, custid, secret_key, ttl, state, created, updated, received, \
     burned, recipients, passphrase_required, secret_expires_at, expires_at";

fn metadata_from(row: &PgRow) -> Result<Metadata, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt metadata row: {what}"));
    let get_key =
        |col: &str| -> Result<Option<String>, StoreError> { row.try_get(col).map_err(store_err) };
    let state: String = row.try_get("state").map_err(store_err)?;
    Ok(Metadata {
        key: get_key("key")?
            .as_deref()
            .and_then(MetadataKey::parse)
            .ok_or_else(|| bad("key"))?,
        custid: get_key("custid")?
            .as_deref()
            .and_then(CustId::parse)
            .unwrap_or_else(CustId::anonymous),
        secret_key: get_key("secret_key")?.as_deref().and_then(SecretKey::parse),
        ttl: row.try_get("ttl").map_err(store_err)?,
        state: MetadataState::parse(&state).ok_or_else(|| bad("state"))?,
        created: row.try_get("created").map_err(store_err)?,
        updated: row.try_get("updated").map_err(store_err)?,
        received: row.try_get("received").map_err(store_err)?,
        burned: row.try_get("burned").map_err(store_err)?,
        recipients: row.try_get("recipients").map_err(store_err)?,
        passphrase_required: row.try_get("passphrase_required").map_err(store_err)?,
        secret_expires_at: row.try_get("secret_expires_at").map_err(store_err)?,
        expires_at: row.try_get("expires_at").map_err(store_err)?,
    })
}

fn secret_from(row: &PgRow) -> Result<StoredSecret, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt secret row: {what}"));
    let key: String = row.try_get("key").map_err(store_err)?;
    let metadata_key: String = row.try_get("metadata_key").map_err(store_err)?;
    let nonce: Vec<u8> = row.try_get("nonce").map_err(store_err)?;
    let salt: Vec<u8> = row.try_get("salt").map_err(store_err)?;
    let failed_tries: i32 = row.try_get("failed_tries").map_err(store_err)?;
    Ok(StoredSecret {
        key: SecretKey::parse(&key).ok_or_else(|| bad("key"))?,
        metadata_key: MetadataKey::parse(&metadata_key).ok_or_else(|| bad("metadata_key"))?,
        ciphertext: row.try_get("ciphertext").map_err(store_err)?,
        nonce: nonce.try_into().map_err(|_| bad("nonce"))?,
        salt: salt.try_into().map_err(|_| bad("salt"))?,
        passphrase_hash: row.try_get("passphrase_hash").map_err(store_err)?,
        failed_tries: u32::try_from(failed_tries).map_err(|_| bad("failed_tries"))?,
        created: row.try_get("created").map_err(store_err)?,
        expires_at: row.try_get("expires_at").map_err(store_err)?,
    })
}

fn customer_from(row: &PgRow) -> Result<Customer, StoreError> {
    let custid: String = row.try_get("custid").map_err(store_err)?;
    Ok(Customer {
        custid: CustId::parse(&custid)
            .ok_or_else(|| StoreError::Other("corrupt customer row".into()))?,
        email: row.try_get("email").map_err(store_err)?,
        plan: row.try_get("plan").map_err(store_err)?,
        created: row.try_get("created").map_err(store_err)?,
    })
}

impl PgStore {
    /// Connects a pool to `url` and, unless told not to, applies the migrations (sqlx takes
    /// an advisory lock, so several processes may start at once).
    pub async fn connect(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(store_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // Check a pooled connection before handing it out, so a server restart costs
            // one failed request at most, not one per stale connection.
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .map_err(store_err)?;
        let store = Self { pool };
        if settings.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(format!("migrations failed: {e}")))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(store_err)
    }

    /// Deletes the (locked) secret and marks its metadata received or burned, inside `tx`.
    async fn finish(
        tx: &mut Transaction<'static, Postgres>,
        secret_key: &str,
        metadata_key: &str,
        state: MetadataState,
        now: UnixTime,
    ) -> Result<Metadata, StoreError> {
        sqlx::query("DELETE FROM secrets WHERE key = $1")
            .bind(secret_key)
            .execute(&mut **tx)
            .await
            .map_err(store_err)?;
        let column = match state {
            MetadataState::Received => "received",
            _ => "burned",
        };
        let sql = format!(
            "UPDATE metadata SET state = $1, secret_key = NULL, {column} = $2, updated = $2 \
             WHERE key = $3 RETURNING {METADATA_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(now)
            .bind(metadata_key)
            .fetch_one(&mut **tx)
            .await
            .map_err(store_err)?;
        metadata_from(&row)
    }
}

/// Answers only when every embedded migration has been applied.
async fn schema_is_current(pool: &PgPool) -> Result<(), StoreError> {
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(store_err)?;
    let expected = MIGRATOR.iter().count() as i64;
    if applied < expected {
        return Err(StoreError::Unavailable(format!(
            "{applied} of {expected} migrations applied: run `ots migrate`"
        )));
    }
    Ok(())
}

#[async_trait]
impl SecretRepository for PgStore {
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO metadata ({METADATA_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        sqlx::query(&sql)
            .bind(metadata.key.as_str())
            .bind(metadata.custid.as_str())
            .bind(metadata.secret_key.as_ref().map(SecretKey::as_str))
            .bind(metadata.ttl)
            .bind(metadata.state.as_str())
            .bind(metadata.created)
            .bind(metadata.updated)
            .bind(metadata.received)
            .bind(metadata.burned)
            .bind(&metadata.recipients)
            .bind(metadata.passphrase_required)
            .bind(metadata.secret_expires_at)
            .bind(metadata.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, passphrase_hash, \
             failed_tries, created, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(secret.key.as_str())
        .bind(secret.metadata_key.as_str())
        .bind(&secret.ciphertext)
        .bind(&secret.nonce[..])
        .bind(&secret.salt[..])
        .bind(&secret.passphrase_hash)
        .bind(secret.failed_tries as i32)
        .bind(secret.created)
        .bind(secret.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        if let Some(mail) = mail {
            sqlx::query(
                "INSERT INTO outbox (id, metadata_key, recipient, from_custid, secret_key, \
                 attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&mail.id)
            .bind(mail.metadata_key.as_str())
            .bind(&mail.mail.to)
            .bind(mail.mail.from_custid.as_str())
            .bind(mail.mail.secret_key.as_str())
            .bind(i64::from(mail.attempts))
            .bind(mail.next_attempt_at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }

    async fn find_secret(
        &self,
        key: &SecretKey,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        sqlx::query("SELECT * FROM secrets WHERE key = $1 AND expires_at > $2")
            .bind(key.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(secret_from)
            .transpose()
    }

    async fn consume(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Waits while another reveal holds the row; once that one commits, the row is gone
        // and this finds nothing.
        let metadata_key: Option<String> = sqlx::query_scalar(
            "SELECT metadata_key FROM secrets WHERE key = $1 AND expires_at > $2 FOR UPDATE",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(metadata_key) = metadata_key else {
            return Ok(false);
        };
        Self::finish(
            &mut tx,
            key.as_str(),
            &metadata_key,
            MetadataState::Received,
            now,
        )
        .await?;
        tx.commit().await.map_err(store_err)?;
        Ok(true)
    }

    async fn record_failed_try(
        &self,
        key: &SecretKey,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<FailedTry, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT failed_tries, metadata_key FROM secrets \
             WHERE key = $1 AND expires_at > $2 FOR UPDATE",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(row) = row else {
            return Ok(FailedTry::Gone);
        };
        let tries = row
            .try_get::<i32, _>("failed_tries")
            .map_err(store_err)?
            .max(0) as u32
            + 1;
        let metadata_key: String = row.try_get("metadata_key").map_err(store_err)?;
        let outcome = if tries >= max_tries {
            Self::finish(
                &mut tx,
                key.as_str(),
                &metadata_key,
                MetadataState::Burned,
                now,
            )
            .await?;
            FailedTry::Burned
        } else {
            sqlx::query("UPDATE secrets SET failed_tries = $1 WHERE key = $2")
                .bind(tries as i32)
                .bind(key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            FailedTry::TriesLeft(max_tries - tries)
        };
        tx.commit().await.map_err(store_err)?;
        Ok(outcome)
    }

    async fn find_metadata(
        &self,
        key: &MetadataKey,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        let sql =
            format!("SELECT {METADATA_COLUMNS} FROM metadata WHERE key = $1 AND expires_at > $2");
        sqlx::query(&sql)
            .bind(key.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(metadata_from)
            .transpose()
    }

    async fn burn(&self, key: &MetadataKey, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        let mut tx = self.begin().await?;
        let secret_key: Option<String> = sqlx::query_scalar(
            "SELECT s.key FROM metadata m JOIN secrets s ON s.metadata_key = m.key \
             WHERE m.key = $1 AND m.state = 'new' AND s.expires_at > $2 FOR UPDATE OF s, m",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(secret_key) = secret_key else {
            return Ok(None);
        };
        let metadata = Self::finish(
            &mut tx,
            &secret_key,
            key.as_str(),
            MetadataState::Burned,
            now,
        )
        .await?;
        tx.commit().await.map_err(store_err)?;
        Ok(Some(metadata))
    }

    async fn recent(
        &self,
        custid: &CustId,
        now: UnixTime,
        limit: u32,
    ) -> Result<Vec<Metadata>, StoreError> {
        let sql = format!(
            "SELECT {METADATA_COLUMNS} FROM metadata WHERE custid = $1 AND expires_at > $2 \
             ORDER BY created DESC, key DESC LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(custid.as_str())
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?
            .iter()
            .map(metadata_from)
            .collect()
    }

    /// `SKIP LOCKED`: concurrent sweeps from several processes take disjoint batches, never
    /// wait on each other, and never delete a row twice.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        let mut counts = [0u64; 2];
        for (slot, table) in ["secrets", "metadata"].into_iter().enumerate() {
            let sql = format!(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
                 WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            );
            counts[slot] = sqlx::query(&sql)
                .bind(now)
                .bind(i64::from(batch))
                .execute(&self.pool)
                .await
                .map_err(store_err)?
                .rows_affected();
        }
        Ok(Swept {
            secrets: counts[0],
            metadata: counts[1],
        })
    }

    async fn purge_customer(&self, custid: &CustId, _now: UnixTime) -> Result<u64, StoreError> {
        // Secrets go with their metadata (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM metadata WHERE custid = $1")
            .bind(custid.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        schema_is_current(&self.pool).await
    }

    fn pool_usage(&self) -> Option<(u32, u32)> {
        Some((self.pool.size(), self.pool.num_idle() as u32))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn outbox_from(row: &PgRow) -> Result<OutboxMail, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt outbox row: {what}"));
    let text = |col: &str| -> Result<String, StoreError> { row.try_get(col).map_err(store_err) };
    let attempts: i32 = row.try_get("attempts").map_err(store_err)?;
    Ok(OutboxMail {
        id: text("id")?,
        metadata_key: MetadataKey::parse(&text("metadata_key")?)
            .ok_or_else(|| bad("metadata_key"))?,
        mail: SecretLinkMail {
            to: text("recipient")?,
            from_custid: CustId::parse(&text("from_custid")?).unwrap_or_else(CustId::anonymous),
            secret_key: SecretKey::parse(&text("secret_key")?).ok_or_else(|| bad("secret_key"))?,
        },
        attempts: u32::try_from(attempts).map_err(|_| bad("attempts"))?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(store_err)?,
    })
}

#[async_trait]
impl Outbox for PgStore {
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        // The lease moves next_attempt_at forward, so a claimed message is not due again
        // (for this or another process) until the lease ends.
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM outbox \
             WHERE next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, metadata_key, recipient, from_custid, secret_key, attempts, next_attempt_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?
        .iter()
        .map(outbox_from)
        .collect()
    }

    async fn mail_done(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn mail_retry(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET attempts = $1, next_attempt_at = $2 WHERE id = $3")
            .bind(attempts as i32)
            .bind(next_attempt_at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn mail_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl CustomerRepository for PgStore {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        sqlx::query("SELECT * FROM customers WHERE custid = $1")
            .bind(custid.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(customer_from)
            .transpose()
    }

    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO customers (custid, email, plan, created) VALUES ($1, $2, $3, $4)")
            .bind(customer.custid.as_str())
            .bind(&customer.email)
            .bind(&customer.plan)
            .bind(customer.created)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        sqlx::query("SELECT * FROM customers ORDER BY custid")
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?
            .iter()
            .map(customer_from)
            .collect()
    }

    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE customers SET plan = $1 WHERE custid = $2")
            .bind(plan)
            .bind(custid.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM customers WHERE custid = $1")
            .bind(custid.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (custid, prefix, hash, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(custid.as_str())
        .bind(&token.prefix)
        .bind(&token.hash)
        .bind(token.created)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(store_err)
    }

    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query("SELECT prefix, hash, created FROM api_tokens WHERE custid = $1")
            .bind(custid.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                Ok(StoredToken {
                    prefix: row.try_get("prefix").map_err(store_err)?,
                    hash: row.try_get("hash").map_err(store_err)?,
                    created: row.try_get("created").map_err(store_err)?,
                })
            })
            .collect()
    }

    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM api_tokens WHERE custid = $1 AND left(prefix, length($2)) = $2",
        )
        .bind(custid.as_str())
        .bind(prefix)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(done.rows_affected())
    }
}
