//! The repository ports over SQLite: the embedded default, one file in the data directory.
//!
//! WAL mode, `synchronous = FULL` (an acknowledged share survives a crash), and exactly one
//! writer: every change goes through a pool of one connection, so write transactions are
//! serialized by construction and reveal-once needs no further locking. Reads use their own
//! pool and never block the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use ots_domain::*;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Secrets, metadata, customers and tokens in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn store_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Other(err.to_string()),
    }
}

const METADATA_COLUMNS: &str = "key, custid, secret_key, ttl, state, created, updated, received, \
     burned, recipients, passphrase_required, secret_expires_at, expires_at";

fn metadata_from(row: &SqliteRow) -> Result<Metadata, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt metadata row: {what}"));
    let state: String = row.try_get("state").map_err(store_err)?;
    let recipients: String = row.try_get("recipients").map_err(store_err)?;
    let secret_key: Option<String> = row.try_get("secret_key").map_err(store_err)?;
    Ok(Metadata {
        key: MetadataKey::parse(row.try_get("key").map_err(store_err)?)
            .ok_or_else(|| bad("key"))?,
        custid: CustId::parse(row.try_get("custid").map_err(store_err)?)
            .unwrap_or_else(CustId::anonymous),
        secret_key: match secret_key {
            Some(k) => Some(SecretKey::parse(&k).ok_or_else(|| bad("secret_key"))?),
            None => None,
        },
        ttl: row.try_get("ttl").map_err(store_err)?,
        state: MetadataState::parse(&state).ok_or_else(|| bad("state"))?,
        created: row.try_get("created").map_err(store_err)?,
        updated: row.try_get("updated").map_err(store_err)?,
        received: row.try_get("received").map_err(store_err)?,
        burned: row.try_get("burned").map_err(store_err)?,
        recipients: recipients.lines().map(str::to_owned).collect(),
        passphrase_required: row.try_get("passphrase_required").map_err(store_err)?,
        secret_expires_at: row.try_get("secret_expires_at").map_err(store_err)?,
        expires_at: row.try_get("expires_at").map_err(store_err)?,
    })
}

fn secret_from(row: &SqliteRow) -> Result<StoredSecret, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt secret row: {what}"));
    let nonce: Vec<u8> = row.try_get("nonce").map_err(store_err)?;
    let salt: Vec<u8> = row.try_get("salt").map_err(store_err)?;
    let failed_tries: i64 = row.try_get("failed_tries").map_err(store_err)?;
    Ok(StoredSecret {
        key: SecretKey::parse(row.try_get("key").map_err(store_err)?).ok_or_else(|| bad("key"))?,
        metadata_key: MetadataKey::parse(row.try_get("metadata_key").map_err(store_err)?)
            .ok_or_else(|| bad("metadata_key"))?,
        ciphertext: row.try_get("ciphertext").map_err(store_err)?,
        nonce: nonce.try_into().map_err(|_| bad("nonce"))?,
        salt: salt.try_into().map_err(|_| bad("salt"))?,
        passphrase_hash: row.try_get("passphrase_hash").map_err(store_err)?,
        failed_tries: u32::try_from(failed_tries).map_err(|_| bad("failed_tries"))?,
        created: row.try_get("created").map_err(store_err)?,
        expires_at: row.try_get("expires_at").map_err(store_err)?,
    })
}

fn customer_from(row: &SqliteRow) -> Result<Customer, StoreError> {
    Ok(Customer {
        custid: CustId::parse(row.try_get("custid").map_err(store_err)?)
            .ok_or_else(|| StoreError::Other("corrupt customer row".into()))?,
        email: row.try_get("email").map_err(store_err)?,
        plan: row.try_get("plan").map_err(store_err)?,
        created: row.try_get("created").map_err(store_err)?,
    })
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`) and applies the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(store_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(store_err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Other(format!("migrations failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(store_err)?;
        Ok(Self { writer, reader })
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin().await.map_err(store_err)
    }

    /// Deletes the secret and marks its metadata (received or burned), inside `tx`.
    async fn finish(
        tx: &mut Transaction<'static, Sqlite>,
        secret_key: &SecretKey,
        metadata_key: &str,
        state: MetadataState,
        now: UnixTime,
    ) -> Result<Metadata, StoreError> {
        sqlx::query("DELETE FROM secrets WHERE key = ?")
            .bind(secret_key.as_str())
            .execute(&mut **tx)
            .await
            .map_err(store_err)?;
        let column = match state {
            MetadataState::Received => "received",
            _ => "burned",
        };
        let sql = format!(
            "UPDATE metadata SET state = ?, secret_key = NULL, {column} = ?, updated = ? \
             WHERE key = ? RETURNING {METADATA_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(now)
            .bind(now)
            .bind(metadata_key)
            .fetch_one(&mut **tx)
            .await
            .map_err(store_err)?;
        metadata_from(&row)
    }
}

#[async_trait]
impl SecretRepository for SqliteStore {
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO metadata ({METADATA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            .bind(metadata.recipients.join("\n"))
            .bind(metadata.passphrase_required)
            .bind(metadata.secret_expires_at)
            .bind(metadata.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, passphrase_hash, \
             failed_tries, created, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(secret.key.as_str())
        .bind(secret.metadata_key.as_str())
        .bind(&secret.ciphertext)
        .bind(&secret.nonce[..])
        .bind(&secret.salt[..])
        .bind(&secret.passphrase_hash)
        .bind(i64::from(secret.failed_tries))
        .bind(secret.created)
        .bind(secret.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        if let Some(mail) = mail {
            sqlx::query(
                "INSERT INTO outbox (id, metadata_key, recipient, from_custid, secret_key, \
                 attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("SELECT * FROM secrets WHERE key = ? AND expires_at > ?")
            .bind(key.as_str())
            .bind(now)
            .fetch_optional(&self.reader)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(secret_from)
            .transpose()
    }

    async fn consume(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let metadata_key: Option<String> =
            sqlx::query_scalar("SELECT metadata_key FROM secrets WHERE key = ? AND expires_at > ?")
                .bind(key.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        let Some(metadata_key) = metadata_key else {
            return Ok(false);
        };
        Self::finish(&mut tx, key, &metadata_key, MetadataState::Received, now).await?;
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
            "UPDATE secrets SET failed_tries = failed_tries + 1 \
             WHERE key = ? AND expires_at > ? RETURNING failed_tries, metadata_key",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(row) = row else {
            return Ok(FailedTry::Gone);
        };
        let tries: i64 = row.try_get("failed_tries").map_err(store_err)?;
        let metadata_key: String = row.try_get("metadata_key").map_err(store_err)?;
        let outcome = if tries >= i64::from(max_tries) {
            Self::finish(&mut tx, key, &metadata_key, MetadataState::Burned, now).await?;
            FailedTry::Burned
        } else {
            FailedTry::TriesLeft(max_tries - tries as u32)
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
            format!("SELECT {METADATA_COLUMNS} FROM metadata WHERE key = ? AND expires_at > ?");
        sqlx::query(&sql)
            .bind(key.as_str())
            .bind(now)
            .fetch_optional(&self.reader)
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
             WHERE m.key = ? AND m.state = 'new' AND s.expires_at > ?",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(secret_key) = secret_key.as_deref().and_then(SecretKey::parse) else {
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
            "SELECT {METADATA_COLUMNS} FROM metadata WHERE custid = ? AND expires_at > ? \
             ORDER BY created DESC, key DESC LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(custid.as_str())
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(store_err)?
            .iter()
            .map(metadata_from)
            .collect()
    }

    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        let mut tx = self.begin().await?;
        let mut counts = [0u64; 2];
        for (slot, table) in ["secrets", "metadata"].into_iter().enumerate() {
            let sql = format!(
                "DELETE FROM {table} WHERE key IN \
                 (SELECT key FROM {table} WHERE expires_at <= ? LIMIT ?)"
            );
            counts[slot] = sqlx::query(&sql)
                .bind(now)
                .bind(i64::from(batch))
                .execute(&mut *tx)
                .await
                .map_err(store_err)?
                .rows_affected();
        }
        tx.commit().await.map_err(store_err)?;
        Ok(Swept {
            secrets: counts[0],
            metadata: counts[1],
        })
    }

    async fn purge_customer(&self, custid: &CustId, _now: UnixTime) -> Result<u64, StoreError> {
        // Secrets go with their metadata (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM metadata WHERE custid = ?")
            .bind(custid.as_str())
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.reader)
                .await
                .map_err(store_err)?;
        if applied < MIGRATOR.iter().count() as i64 {
            return Err(StoreError::Unavailable("migrations not applied".into()));
        }
        Ok(())
    }

    fn pool_usage(&self) -> Option<(u32, u32)> {
        let size = self.writer.size() + self.reader.size();
        let idle = (self.writer.num_idle() + self.reader.num_idle()) as u32;
        Some((size, idle))
    }

    async fn close(&self) {
        // The writer last: its close checkpoints the WAL into the database file.
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn outbox_from(row: &SqliteRow) -> Result<OutboxMail, StoreError> {
    let bad = |what: &str| StoreError::Other(format!("corrupt outbox row: {what}"));
    let text = |col: &str| -> Result<String, StoreError> { row.try_get(col).map_err(store_err) };
    let attempts: i64 = row.try_get("attempts").map_err(store_err)?;
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
impl Outbox for SqliteStore {
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        // The lease moves next_attempt_at forward, so a claimed message is not due again
        // (for this or another process) until the lease ends.
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = ? WHERE id IN (SELECT id FROM outbox \
             WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) \
             RETURNING id, metadata_key, recipient, from_custid, secret_key, attempts, next_attempt_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(store_err)?
        .iter()
        .map(outbox_from)
        .collect()
    }

    async fn mail_done(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
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
        sqlx::query("UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE id = ?")
            .bind(attempts as i64)
            .bind(next_attempt_at)
            .bind(id)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn mail_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.reader)
            .await
            .map_err(store_err)?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl CustomerRepository for SqliteStore {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        sqlx::query("SELECT * FROM customers WHERE custid = ?")
            .bind(custid.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(customer_from)
            .transpose()
    }

    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO customers (custid, email, plan, created) VALUES (?, ?, ?, ?)")
            .bind(customer.custid.as_str())
            .bind(&customer.email)
            .bind(&customer.plan)
            .bind(customer.created)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        sqlx::query("SELECT * FROM customers ORDER BY custid")
            .fetch_all(&self.reader)
            .await
            .map_err(store_err)?
            .iter()
            .map(customer_from)
            .collect()
    }

    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE customers SET plan = ? WHERE custid = ?")
            .bind(plan)
            .bind(custid.as_str())
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM customers WHERE custid = ?")
            .bind(custid.as_str())
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (custid, prefix, hash, created) VALUES (?, ?, ?, ?)")
            .bind(custid.as_str())
            .bind(&token.prefix)
            .bind(&token.hash)
            .bind(token.created)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query("SELECT prefix, hash, created FROM api_tokens WHERE custid = ?")
            .bind(custid.as_str())
            .fetch_all(&self.reader)
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
            "DELETE FROM api_tokens WHERE custid = ? AND substr(prefix, 1, length(?)) = ?",
        )
        .bind(custid.as_str())
        .bind(prefix)
        .bind(prefix)
        .execute(&self.writer)
        .await
        .map_err(store_err)?;
        Ok(done.rows_affected())
    }
}
