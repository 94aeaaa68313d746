//! Secrets and their metadata. Every change that must be atomic runs in one transaction on
//! the writer: with Postgres the dialect's row locks make concurrent callers (across
//! processes) wait for each other; with SQLite the single writer connection does.

use async_trait::async_trait;

use ots_domain::*;

use crate::rows::{self, join_recipients, METADATA_COLUMNS, SECRET_COLUMNS};
use crate::{store_err, Arg, Conn, Dialect, SqlStore};

/// Deletes the secret and marks its metadata received or burned, inside the caller's
/// transaction; returns the updated metadata.
async fn finish<D: Dialect>(
    conn: &mut Conn<D>,
    secret_key: &str,
    metadata_key: &str,
    state: MetadataState,
    now: UnixTime,
) -> Result<Metadata, StoreError> {
    D::execute(
        conn,
        "DELETE FROM secrets WHERE key = $1",
        vec![Arg::Text(secret_key)],
    )
    .await
    .map_err(store_err::<D>)?;
    let column = match state {
        MetadataState::Received => "received",
        _ => "burned",
    };
    let sql = format!(
        "UPDATE metadata SET state = $1, secret_key = NULL, {column} = $2, updated = $2 \
         WHERE key = $3 RETURNING {METADATA_COLUMNS}"
    );
    let args = vec![
        Arg::Text(state.as_str()),
        Arg::Int(now),
        Arg::Text(metadata_key),
    ];
    let row = D::fetch_optional(conn, &sql, args)
        .await
        .map_err(store_err::<D>)?
        .ok_or_else(|| StoreError::Other("a secret without its metadata".into()))?;
    rows::metadata::<D>(&row)
}

impl<D: Dialect> SqlStore<D> {
    /// Deletes a live secret and marks its metadata `state` (received or burned), in one
    /// transaction that first locks the secret's row; `false` when it was already gone.
    async fn take_secret(
        &self,
        key: &SecretKey,
        now: UnixTime,
        state: MetadataState,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Waits while another caller holds the row; once that one commits, the row is gone
        // and this finds nothing.
        let sql = format!(
            "SELECT metadata_key FROM secrets WHERE key = $1 AND expires_at > $2{}",
            D::FOR_UPDATE
        );
        let row = D::fetch_optional(&mut tx, &sql, vec![Arg::Text(key.as_str()), Arg::Int(now)])
            .await
            .map_err(store_err::<D>)?;
        let Some(row) = row else {
            return Ok(false);
        };
        let metadata_key = D::text(&row, "metadata_key").map_err(store_err::<D>)?;
        finish::<D>(&mut tx, key.as_str(), &metadata_key, state, now).await?;
        tx.commit().await.map_err(store_err::<D>)?;
        Ok(true)
    }
}

#[async_trait]
impl<D: Dialect> SecretRepository for SqlStore<D> {
    async fn create(
        &self,
        secret: &StoredSecret,
        metadata: &Metadata,
        mail: Option<&OutboxMail>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let recipients = join_recipients(&metadata.recipients);
        let sql = format!(
            "INSERT INTO metadata ({METADATA_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let args = vec![
            Arg::Text(metadata.key.as_str()),
            Arg::Text(metadata.custid.as_str()),
            Arg::MaybeText(metadata.secret_key.as_ref().map(SecretKey::as_str)),
            Arg::Int(metadata.ttl),
            Arg::Text(metadata.state.as_str()),
            Arg::Int(metadata.created),
            Arg::Int(metadata.updated),
            Arg::MaybeInt(metadata.received),
            Arg::MaybeInt(metadata.burned),
            Arg::Text(&recipients),
            Arg::Bool(metadata.passphrase_required),
            Arg::Int(metadata.secret_expires_at),
            Arg::Int(metadata.expires_at),
        ];
        D::execute(&mut tx, &sql, args)
            .await
            .map_err(store_err::<D>)?;
        let sql = format!(
            "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let args = vec![
            Arg::Text(secret.key.as_str()),
            Arg::Text(secret.metadata_key.as_str()),
            Arg::Bytes(&secret.ciphertext),
            Arg::Bytes(&secret.nonce),
            Arg::Bytes(&secret.salt),
            Arg::MaybeText(secret.passphrase_hash.as_deref()),
            Arg::Int(i64::from(secret.failed_tries)),
            Arg::Int(secret.created),
            Arg::Int(secret.expires_at),
        ];
        D::execute(&mut tx, &sql, args)
            .await
            .map_err(store_err::<D>)?;
        if let Some(mail) = mail {
            crate::outbox::insert::<D>(&mut tx, mail).await?;
        }
        tx.commit().await.map_err(store_err::<D>)
    }

    async fn find_secret(
        &self,
        key: &SecretKey,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        let sql =
            format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE key = $1 AND expires_at > $2");
        let mut conn = self.read().await?;
        D::fetch_optional(
            &mut conn,
            &sql,
            vec![Arg::Text(key.as_str()), Arg::Int(now)],
        )
        .await
        .map_err(store_err::<D>)?
        .as_ref()
        .map(rows::secret::<D>)
        .transpose()
    }

    async fn consume(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        self.take_secret(key, now, MetadataState::Received).await
    }

    async fn take_try(
        &self,
        key: &SecretKey,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError> {
        // One statement: the row lock (Postgres) or the single writer (SQLite) makes the
        // read-compare-increment atomic, so no more than `max_tries` ever succeed.
        let mut conn = self.write().await?;
        let args = vec![
            Arg::Text(key.as_str()),
            Arg::Int(now),
            Arg::Int(i64::from(max_tries)),
        ];
        let taken = D::fetch_optional(
            &mut conn,
            "UPDATE secrets SET failed_tries = failed_tries + 1 \
             WHERE key = $1 AND expires_at > $2 AND failed_tries < $3 RETURNING failed_tries",
            args,
        )
        .await
        .map_err(store_err::<D>)?;
        if let Some(row) = taken {
            let tries = D::int(&row, "failed_tries").map_err(store_err::<D>)?;
            let left = i64::from(max_tries) - tries;
            return Ok(TryTaken::Taken {
                left: left.max(0) as u32,
            });
        }
        let exists = D::fetch_optional(
            &mut conn,
            "SELECT 1 AS one FROM secrets WHERE key = $1 AND expires_at > $2",
            vec![Arg::Text(key.as_str()), Arg::Int(now)],
        )
        .await
        .map_err(store_err::<D>)?;
        Ok(if exists.is_some() {
            TryTaken::NoneLeft
        } else {
            TryTaken::Gone
        })
    }

    async fn exhaust(&self, key: &SecretKey, now: UnixTime) -> Result<bool, StoreError> {
        self.take_secret(key, now, MetadataState::Burned).await
    }

    async fn find_metadata(
        &self,
        key: &MetadataKey,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        let sql =
            format!("SELECT {METADATA_COLUMNS} FROM metadata WHERE key = $1 AND expires_at > $2");
        let mut conn = self.read().await?;
        D::fetch_optional(
            &mut conn,
            &sql,
            vec![Arg::Text(key.as_str()), Arg::Int(now)],
        )
        .await
        .map_err(store_err::<D>)?
        .as_ref()
        .map(rows::metadata::<D>)
        .transpose()
    }

    async fn burn(&self, key: &MetadataKey, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT s.key AS secret_key FROM metadata m JOIN secrets s ON s.metadata_key = m.key \
             WHERE m.key = $1 AND m.state = 'new' AND s.expires_at > $2{}",
            D::FOR_UPDATE_BOTH
        );
        let row = D::fetch_optional(&mut tx, &sql, vec![Arg::Text(key.as_str()), Arg::Int(now)])
            .await
            .map_err(store_err::<D>)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let secret_key = D::text(&row, "secret_key").map_err(store_err::<D>)?;
        let metadata = finish::<D>(
            &mut tx,
            &secret_key,
            key.as_str(),
            MetadataState::Burned,
            now,
        )
        .await?;
        tx.commit().await.map_err(store_err::<D>)?;
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
             ORDER BY created DESC, {} DESC LIMIT $3",
            D::INSERTION_ORDER
        );
        let args = vec![
            Arg::Text(custid.as_str()),
            Arg::Int(now),
            Arg::Int(i64::from(limit)),
        ];
        let mut conn = self.read().await?;
        D::fetch_all(&mut conn, &sql, args)
            .await
            .map_err(store_err::<D>)?
            .iter()
            .map(rows::metadata::<D>)
            .collect()
    }

    /// Each batch is one statement; with Postgres, `SKIP LOCKED` lets sweeps in several
    /// processes take disjoint batches without waiting on each other.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> Result<Swept, StoreError> {
        let mut counts = [0u64; 2];
        let mut conn = self.write().await?;
        for (slot, table) in ["secrets", "metadata"].into_iter().enumerate() {
            let sql = format!(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
                 WHERE expires_at <= $1 LIMIT $2{})",
                D::SKIP_LOCKED
            );
            counts[slot] = D::execute(&mut conn, &sql, vec![Arg::Int(now), Arg::Int(batch.into())])
                .await
                .map_err(store_err::<D>)?;
        }
        Ok(Swept {
            secrets: counts[0],
            metadata: counts[1],
        })
    }

    async fn purge_customer(&self, custid: &CustId, _now: UnixTime) -> Result<u64, StoreError> {
        // Secrets and mail go with their metadata (ON DELETE CASCADE).
        let mut conn = self.write().await?;
        D::execute(
            &mut conn,
            "DELETE FROM metadata WHERE custid = $1",
            vec![Arg::Text(custid.as_str())],
        )
        .await
        .map_err(store_err::<D>)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.schema_is_current().await
    }

    fn pool_usage(&self) -> Option<(u32, u32)> {
        Some(SqlStore::pool_usage(self))
    }

    async fn close(&self) {
        SqlStore::close(self).await
    }
}
