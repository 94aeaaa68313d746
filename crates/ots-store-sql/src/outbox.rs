//! Mail waiting to be delivered, in the same database as the secrets.

use async_trait::async_trait;

use ots_domain::crypto::hex;
use ots_domain::*;

use crate::rows::{self, OUTBOX_COLUMNS};
use crate::{store_err, Arg, Conn, Dialect, SqlStore};

/// A mail row's values as bound text.
pub(crate) struct MailRow<'m> {
    mail: &'m OutboxMail,
    metadata_id: String,
    to: String,
    link: String,
}

impl<'m> MailRow<'m> {
    pub(crate) fn of(mail: &'m OutboxMail) -> Self {
        Self {
            mail,
            metadata_id: mail.metadata_id.to_hex(),
            to: hex(&mail.sealed_to),
            link: hex(&mail.sealed_secret_key),
        }
    }

    pub(crate) const COUNT: usize = 7;

    /// `INSERT INTO outbox …` of `rows` rows, with placeholders from `$first`.
    pub(crate) fn insert_sql(first: usize, rows: usize) -> String {
        format!(
            "INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES {}",
            crate::secrets::value_rows(first, Self::COUNT, rows)
        )
    }

    pub(crate) fn args(&self) -> Vec<Arg<'_>> {
        vec![
            Arg::Text(&self.mail.id),
            Arg::Text(&self.metadata_id),
            Arg::Text(&self.to),
            Arg::Text(self.mail.from_custid.as_str()),
            Arg::Text(&self.link),
            Arg::Int(i64::from(self.mail.attempts)),
            Arg::Int(self.mail.next_attempt_at),
        ]
    }
}

/// Adds a mail inside the share's transaction.
pub(crate) async fn insert<D: Dialect>(
    conn: &mut Conn<D>,
    mail: &OutboxMail,
) -> Result<(), StoreError> {
    let row = MailRow::of(mail);
    D::execute(conn, &MailRow::insert_sql(1, 1), row.args())
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
}

#[async_trait]
impl<D: Dialect> Outbox for SqlStore<D> {
    async fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        // The lease moves next_attempt_at forward, so a claimed message is not due again
        // (for this or another process) until the lease ends.
        let sql = format!(
            "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM outbox \
             WHERE next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{}) \
             RETURNING {OUTBOX_COLUMNS}",
            D::SKIP_LOCKED
        );
        let args = vec![
            Arg::Int(lease_until),
            Arg::Int(now),
            Arg::Int(i64::from(limit)),
        ];
        let mut conn = self.write().await?;
        D::fetch_all(&mut conn, &sql, args)
            .await
            .map_err(store_err::<D>)?
            .iter()
            .map(rows::outbox::<D>)
            .collect()
    }

    async fn mail_done(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        D::execute(
            &mut conn,
            "DELETE FROM outbox WHERE id = $1",
            vec![Arg::Text(id)],
        )
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
    }

    async fn mail_retry(
        &self,
        id: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        D::execute(
            &mut conn,
            "UPDATE outbox SET attempts = $1, next_attempt_at = $2 WHERE id = $3",
            vec![
                Arg::Int(i64::from(attempts)),
                Arg::Int(next_attempt_at),
                Arg::Text(id),
            ],
        )
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
    }

    async fn mail_backlog(&self) -> Result<u64, StoreError> {
        let mut conn = self.read().await?;
        let row = D::fetch_optional(&mut conn, "SELECT count(*) AS n FROM outbox", vec![])
            .await
            .map_err(store_err::<D>)?;
        let n = match row {
            Some(row) => D::int(&row, "n").map_err(store_err::<D>)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    }
}
