//! The store's check value (which master secret sealed it), and the records a release that
//! stored keys in the clear left behind: read a batch, replace each one, all or nothing.

use ots_domain::crypto::{hex, unhex};
use ots_domain::*;

use crate::outbox::insert as insert_mail;
use crate::rows::join_recipients;
use crate::rows::{self, METADATA_COLUMNS, OUTBOX_COLUMNS, SECRET_COLUMNS};
use crate::secrets::insert_secret;
use crate::{store_err, Arg, Dialect, SqlStore};

pub(crate) async fn check_value<D: Dialect>(
    store: &SqlStore<D>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut conn = store.read().await?;
    let row = D::fetch_optional(&mut conn, "SELECT sealed FROM keyring_check", vec![])
        .await
        .map_err(store_err::<D>)?;
    match row {
        Some(row) => {
            let text = D::text(&row, "sealed").map_err(store_err::<D>)?;
            let sealed = unhex(&text)
                .ok_or_else(|| StoreError::Other("corrupt keyring_check row".into()))?;
            Ok(Some(sealed))
        }
        None => Ok(None),
    }
}

/// Keeps an existing check value unless `replace`: processes that start at once on an empty
/// store all keep the first one written.
pub(crate) async fn set_check_value<D: Dialect>(
    store: &SqlStore<D>,
    sealed: &[u8],
    replace: bool,
) -> Result<(), StoreError> {
    let on_conflict = if replace {
        "DO UPDATE SET sealed = excluded.sealed"
    } else {
        "DO NOTHING"
    };
    let sql = format!(
        "INSERT INTO keyring_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) {on_conflict}"
    );
    let mut conn = store.write().await?;
    D::execute(&mut conn, &sql, vec![Arg::Text(&hex(sealed))])
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
}

/// Legacy rows are those whose key is a 31-character key, not a 64-digit digest.
pub(crate) async fn legacy_records<D: Dialect>(
    store: &SqlStore<D>,
    limit: u32,
) -> Result<Vec<LegacyRecord>, StoreError> {
    let mut conn = store.write().await?;
    let sql =
        format!("SELECT {METADATA_COLUMNS} FROM metadata WHERE length(key) = {KEY_LEN} LIMIT $1");
    let rows = D::fetch_all(&mut conn, &sql, vec![Arg::Int(i64::from(limit))])
        .await
        .map_err(store_err::<D>)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let (metadata_key, secret_key, metadata) = rows::legacy_metadata::<D>(row)?;
        let by_metadata = vec![Arg::Text(metadata_key.as_str())];
        let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE metadata_key = $1");
        let secret = D::fetch_optional(&mut conn, &sql, by_metadata.clone())
            .await
            .map_err(store_err::<D>)?
            .as_ref()
            .map(rows::legacy_secret::<D>)
            .transpose()?;
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE metadata_key = $1");
        let mails = D::fetch_all(&mut conn, &sql, by_metadata)
            .await
            .map_err(store_err::<D>)?
            .iter()
            .map(rows::legacy_mail::<D>)
            .collect::<Result<_, _>>()?;
        records.push(LegacyRecord {
            metadata_key,
            secret_key,
            metadata,
            secret,
            mails,
        });
    }
    Ok(records)
}

/// In one transaction: the old secret and mail rows go (they name the old key), the
/// metadata row takes its digest and sealed fields (keeping its place in `recent`), and the
/// upgraded secret and mails come back under the new ids.
pub(crate) async fn replace_legacy<D: Dialect>(
    store: &SqlStore<D>,
    record: &LegacyRecord,
    secret: Option<&StoredSecret>,
    metadata: &Metadata,
    mails: &[OutboxMail],
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let old = record.metadata_key.as_str();
    for table in ["outbox", "secrets"] {
        let sql = format!("DELETE FROM {table} WHERE metadata_key = $1");
        D::execute(&mut tx, &sql, vec![Arg::Text(old)])
            .await
            .map_err(store_err::<D>)?;
    }
    let (id, recipients) = (metadata.id.to_hex(), join_recipients(&metadata.recipients));
    let sealed_secret_key = metadata.sealed_secret_key.as_deref().map(hex);
    let sealed_key = metadata.sealed_key.as_deref().map(hex);
    let args = vec![
        Arg::Text(&id),
        Arg::MaybeText(sealed_secret_key.as_deref()),
        Arg::MaybeText(sealed_key.as_deref()),
        Arg::Text(&recipients),
        Arg::Text(old),
    ];
    D::execute(
        &mut tx,
        "UPDATE metadata SET key = $1, secret_key = $2, sealed_key = $3, recipients = $4 \
         WHERE key = $5",
        args,
    )
    .await
    .map_err(store_err::<D>)?;
    if let Some(secret) = secret {
        insert_secret::<D>(&mut tx, secret).await?;
    }
    for mail in mails {
        insert_mail::<D>(&mut tx, mail).await?;
    }
    tx.commit().await.map_err(store_err::<D>)
}
