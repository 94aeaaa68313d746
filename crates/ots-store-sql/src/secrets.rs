//! Secrets and their metadata. Every change that must be atomic runs in one transaction on
//! the writer: with Postgres the dialect's row locks make concurrent callers (across
//! processes) wait for each other; with SQLite the single writer connection does.

use async_trait::async_trait;

use ots_domain::*;

use ots_domain::crypto::hex;

use crate::held::Held;
use crate::merged::{Reveal, Write};
use crate::rows::{self, join_recipients, METADATA_COLUMNS, SECRET_COLUMNS};
use crate::{store_err, Arg, Conn, Dialect, RowOf, SqlStore};

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

/// `($first, …, $first + n - 1)`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// `rows` tuples of `n` placeholders each, numbered on from `$first`.
pub(crate) fn value_rows(first: usize, n: usize, rows: usize) -> String {
    let tuples: Vec<String> = (0..rows).map(|r| placeholders(first + r * n, n)).collect();
    tuples.join(", ")
}

/// A metadata row's values as bound text.
pub(crate) struct MetadataRow<'m> {
    metadata: &'m Metadata,
    id: String,
    recipients: String,
    sealed_secret_key: Option<String>,
    sealed_key: Option<String>,
}

impl<'m> MetadataRow<'m> {
    pub(crate) const COUNT: usize = 14;

    pub(crate) fn of(metadata: &'m Metadata) -> Self {
        Self {
            metadata,
            id: metadata.id.to_hex(),
            recipients: join_recipients(&metadata.recipients),
            sealed_secret_key: metadata.sealed_secret_key.as_deref().map(hex),
            sealed_key: metadata.sealed_key.as_deref().map(hex),
        }
    }

    /// `INSERT INTO metadata …` of `rows` rows, with placeholders from `$first`.
    pub(crate) fn insert_sql(first: usize, rows: usize) -> String {
        format!(
            "INSERT INTO metadata ({METADATA_COLUMNS}) VALUES {}",
            value_rows(first, Self::COUNT, rows)
        )
    }

    pub(crate) fn args(&self) -> Vec<Arg<'_>> {
        let m = self.metadata;
        vec![
            Arg::Text(&self.id),
            Arg::Text(m.custid.as_str()),
            Arg::MaybeText(self.sealed_secret_key.as_deref()),
            Arg::MaybeText(self.sealed_key.as_deref()),
            Arg::Int(m.ttl),
            Arg::Text(m.state.as_str()),
            Arg::Int(m.created),
            Arg::Int(m.updated),
            Arg::MaybeInt(m.received),
            Arg::MaybeInt(m.burned),
            Arg::Text(&self.recipients),
            Arg::Bool(m.passphrase_required),
            Arg::Int(m.secret_expires_at),
            Arg::Int(m.expires_at),
        ]
    }
}

/// A secret row's values as bound text.
pub(crate) struct SecretRow<'s> {
    secret: &'s StoredSecret,
    id: String,
    metadata_id: String,
    scheme: i64,
    key_id: Option<String>,
    params: Option<PassphraseParams>,
    hash: Option<&'s str>,
    aad: Option<String>,
}

impl<'s> SecretRow<'s> {
    pub(crate) const COUNT: usize = 14;

    pub(crate) fn of(secret: &'s StoredSecret) -> Self {
        let (scheme, key_id, params, hash, aad) = match &secret.scheme {
            ValueScheme::Sealed { key_id, passphrase } => {
                (2, Some(key_id.to_hex()), *passphrase, None, None)
            }
            ValueScheme::Expanded { key_id } => (3, Some(key_id.to_hex()), None, None, None),
            ValueScheme::Legacy {
                passphrase_hash,
                sealed_metadata_key,
            } => (
                1,
                None,
                None,
                Some(passphrase_hash.as_str()),
                Some(hex(sealed_metadata_key)),
            ),
        };
        Self {
            secret,
            id: secret.id.to_hex(),
            metadata_id: secret.metadata_id.to_hex(),
            scheme,
            key_id,
            params,
            hash,
            aad,
        }
    }

    /// `INSERT INTO secrets …` of `rows` rows, with placeholders from `$first`.
    pub(crate) fn insert_sql(first: usize, rows: usize) -> String {
        format!(
            "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES {}",
            value_rows(first, Self::COUNT, rows)
        )
    }

    pub(crate) fn args(&self) -> Vec<Arg<'_>> {
        let s = self.secret;
        vec![
            Arg::Text(&self.id),
            Arg::Text(&self.metadata_id),
            Arg::Bytes(&s.ciphertext),
            Arg::Bytes(&s.nonce),
            Arg::Bytes(&s.salt),
            Arg::Int(self.scheme),
            Arg::MaybeText(self.key_id.as_deref()),
            Arg::MaybeInt(self.params.as_ref().map(|p| i64::from(p.cost))),
            Arg::MaybeBytes(self.params.as_ref().map(|p| &p.salt[..])),
            Arg::MaybeText(self.hash),
            Arg::MaybeText(self.aad.as_deref()),
            Arg::Int(i64::from(s.failed_tries)),
            Arg::Int(s.created),
            Arg::Int(s.expires_at),
        ]
    }
}

pub(crate) async fn insert_secret<D: Dialect>(
    conn: &mut Conn<D>,
    secret: &StoredSecret,
) -> Result<(), StoreError> {
    let row = SecretRow::of(secret);
    D::execute(conn, &SecretRow::insert_sql(1, 1), row.args())
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
}

impl<D: Dialect> SqlStore<D> {
    /// The row of `table` with `key` that is still alive at `now`, read without locks.
    async fn find_live<T>(
        &self,
        table: &str,
        columns: &str,
        key: &str,
        now: UnixTime,
        map: fn(&RowOf<D>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let sql = format!("SELECT {columns} FROM {table} WHERE key = $1 AND expires_at > $2");
        let mut conn = self.read().await?;
        D::fetch_optional(&mut conn, &sql, vec![Arg::Text(key), Arg::Int(now)])
            .await
            .map_err(store_err::<D>)?
            .as_ref()
            .map(map)
            .transpose()
    }

    /// Deletes a live secret and marks its metadata `state` (received or burned), in one
    /// transaction that first locks the secret's row; `false` when it was already gone.
    async fn take_secret(
        &self,
        id: &SecretId,
        now: UnixTime,
        state: MetadataState,
    ) -> Result<bool, StoreError> {
        let key = id.to_hex();
        self.transact(move |conn| {
            let key = key.clone();
            Box::pin(async move {
                // Waits while another caller holds the row; once that one commits, the row
                // is gone and this finds nothing.
                let sql = format!(
                    "SELECT metadata_key FROM secrets WHERE key = $1 AND expires_at > $2{}",
                    D::FOR_UPDATE
                );
                let row = D::fetch_optional(conn, &sql, vec![Arg::Text(&key), Arg::Int(now)])
                    .await
                    .map_err(store_err::<D>)?;
                let Some(row) = row else {
                    return Ok(false);
                };
                let metadata_key = D::text(&row, "metadata_key").map_err(store_err::<D>)?;
                finish::<D>(conn, &key, &metadata_key, state, now).await?;
                Ok(true)
            })
        })
        .await
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
        let share = std::sync::Arc::new((secret.clone(), metadata.clone(), mail.cloned()));
        match (&self.merge, &self.commit) {
            (Some(merge), _) => merge.share(share).await,
            (None, Some(commit)) => commit.share(share).await,
            (None, None) => self
                .write_now(&mut Held::default(), &[Write::Share(share)])
                .await
                .remove(0)
                .map(|_| ()),
        }
    }

    async fn find_secret(
        &self,
        id: &SecretId,
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        self.find_live(
            "secrets",
            SECRET_COLUMNS,
            &id.to_hex(),
            now,
            rows::secret::<D>,
        )
        .await
    }

    async fn consume(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        self.take_secret(id, now, MetadataState::Received).await
    }

    /// The `DELETE` takes the row lock: of concurrent callers one deletes the row, and the
    /// others, once it commits, find none. On Postgres the metadata is marked in the same
    /// statement; on SQLite the single writer runs both statements in one transaction.
    /// Concurrent calls are merged into one statement when the store merges writes.
    async fn consume_unprotected(
        &self,
        id: &SecretId,
        key_ids: &[KeyId],
        now: UnixTime,
    ) -> Result<Option<StoredSecret>, StoreError> {
        if key_ids.is_empty() {
            return Ok(None);
        }
        let reveal = Reveal {
            key: id.to_hex(),
            key_ids: std::sync::Arc::new(key_ids.iter().map(|k| k.to_hex()).collect()),
            now,
        };
        match (&self.merge, &self.commit) {
            (Some(merge), _) => merge.reveal(reveal).await,
            (None, Some(commit)) => commit.reveal(reveal).await,
            (None, None) => self
                .write_now(&mut Held::default(), &[Write::Reveal(reveal)])
                .await
                .remove(0),
        }
    }

    async fn take_try(
        &self,
        id: &SecretId,
        max_tries: u32,
        now: UnixTime,
    ) -> Result<TryTaken, StoreError> {
        let key = id.to_hex();
        self.transact(move |conn| {
            let key = key.clone();
            Box::pin(async move {
                // One statement: the row lock (Postgres) or the single writer (SQLite) makes
                // the read-compare-increment atomic, so no more than `max_tries` ever succeed.
                let args = vec![
                    Arg::Text(&key),
                    Arg::Int(now),
                    Arg::Int(i64::from(max_tries)),
                ];
                let taken = D::fetch_optional(
                    conn,
                    "UPDATE secrets SET failed_tries = failed_tries + 1 \
                     WHERE key = $1 AND expires_at > $2 AND failed_tries < $3 \
                     RETURNING failed_tries",
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
                    conn,
                    "SELECT 1 AS one FROM secrets WHERE key = $1 AND expires_at > $2",
                    vec![Arg::Text(&key), Arg::Int(now)],
                )
                .await
                .map_err(store_err::<D>)?;
                Ok(if exists.is_some() {
                    TryTaken::NoneLeft
                } else {
                    TryTaken::Gone
                })
            })
        })
        .await
    }

    async fn exhaust(&self, id: &SecretId, now: UnixTime) -> Result<bool, StoreError> {
        self.take_secret(id, now, MetadataState::Burned).await
    }

    async fn find_metadata(
        &self,
        id: &MetadataId,
        now: UnixTime,
    ) -> Result<Option<Metadata>, StoreError> {
        self.find_live(
            "metadata",
            METADATA_COLUMNS,
            &id.to_hex(),
            now,
            rows::metadata::<D>,
        )
        .await
    }

    async fn burn(&self, id: &MetadataId, now: UnixTime) -> Result<Option<Metadata>, StoreError> {
        let key = id.to_hex();
        self.transact(move |conn| {
            let key = key.clone();
            Box::pin(async move {
                let sql = format!(
                    "SELECT s.key AS secret_key FROM metadata m \
                     JOIN secrets s ON s.metadata_key = m.key \
                     WHERE m.key = $1 AND m.state = 'new' AND s.expires_at > $2{}",
                    D::FOR_UPDATE_BOTH
                );
                let row = D::fetch_optional(conn, &sql, vec![Arg::Text(&key), Arg::Int(now)])
                    .await
                    .map_err(store_err::<D>)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let secret_key = D::text(&row, "secret_key").map_err(store_err::<D>)?;
                let burned =
                    finish::<D>(conn, &secret_key, &key, MetadataState::Burned, now).await?;
                Ok(Some(burned))
            })
        })
        .await
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

    async fn check_value(&self) -> Result<Option<Vec<u8>>, StoreError> {
        crate::upgrade::check_value(self).await
    }

    async fn init_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        crate::upgrade::set_check_value(self, sealed, false).await
    }

    async fn replace_check_value(&self, sealed: &[u8]) -> Result<(), StoreError> {
        crate::upgrade::set_check_value(self, sealed, true).await
    }

    async fn legacy_records(&self, limit: u32) -> Result<Vec<LegacyRecord>, StoreError> {
        crate::upgrade::legacy_records(self, limit).await
    }

    async fn replace_legacy(
        &self,
        record: &LegacyRecord,
        secret: Option<&StoredSecret>,
        metadata: &Metadata,
        mails: &[OutboxMail],
    ) -> Result<(), StoreError> {
        crate::upgrade::replace_legacy(self, record, secret, metadata, mails).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.schema_is_current().await
    }

    fn pool_usage(&self) -> Option<(u32, u32)> {
        Some(SqlStore::pool_usage(self))
    }

    fn write_batches(&self) -> Option<WriteBatches> {
        SqlStore::write_batches(self)
    }

    async fn close(&self) {
        SqlStore::close(self).await
    }
}
