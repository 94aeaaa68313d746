//! Column lists and row mapping, for both dialects. A row that does not parse into its
//! domain record is an error naming the table and column, never silently dropped.

use ots_domain::*;

use crate::{store_err, Dialect, RowOf};

pub(crate) const METADATA_COLUMNS: &str = "key, custid, secret_key, ttl, state, created, \
     updated, received, burned, recipients, passphrase_required, secret_expires_at, expires_at";
pub(crate) const SECRET_COLUMNS: &str = "key, metadata_key, ciphertext, nonce, salt, \
     passphrase_hash, failed_tries, created, expires_at";
pub(crate) const OUTBOX_COLUMNS: &str =
    "id, metadata_key, recipient, from_custid, secret_key, attempts, next_attempt_at";
pub(crate) const CUSTOMER_COLUMNS: &str = "custid, email, plan, created";

/// Reads one row of `table`, turning sqlx errors and unparseable values into store errors.
struct Fields<'r, D: Dialect> {
    row: &'r RowOf<D>,
    table: &'static str,
}

impl<'r, D: Dialect> Fields<'r, D> {
    fn new(row: &'r RowOf<D>, table: &'static str) -> Self {
        Self { row, table }
    }

    fn corrupt(&self, col: &str) -> StoreError {
        StoreError::Other(format!("corrupt {} row: {col}", self.table))
    }

    fn text(&self, col: &str) -> Result<String, StoreError> {
        D::text(self.row, col).map_err(store_err::<D>)
    }

    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        D::maybe_text(self.row, col).map_err(store_err::<D>)
    }

    fn int(&self, col: &str) -> Result<i64, StoreError> {
        D::int(self.row, col).map_err(store_err::<D>)
    }

    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        D::maybe_int(self.row, col).map_err(store_err::<D>)
    }

    fn count(&self, col: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(col)?).map_err(|_| self.corrupt(col))
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        D::bytes(self.row, col).map_err(store_err::<D>)
    }

    fn array<const N: usize>(&self, col: &str) -> Result<[u8; N], StoreError> {
        self.bytes(col)?.try_into().map_err(|_| self.corrupt(col))
    }

    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        D::boolean(self.row, col).map_err(store_err::<D>)
    }

    fn parsed<T>(&self, col: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
        parse(&self.text(col)?).ok_or_else(|| self.corrupt(col))
    }

    fn maybe_parsed<T>(
        &self,
        col: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        match self.maybe_text(col)? {
            Some(raw) => parse(&raw).map(Some).ok_or_else(|| self.corrupt(col)),
            None => Ok(None),
        }
    }

    /// A stored custid: `anon`, or one that parses.
    fn custid(&self, col: &str) -> Result<CustId, StoreError> {
        self.parsed(col, |raw| {
            if raw == CustId::ANONYMOUS {
                Some(CustId::anonymous())
            } else {
                CustId::parse(raw)
            }
        })
    }
}

pub(crate) fn metadata<D: Dialect>(row: &RowOf<D>) -> Result<Metadata, StoreError> {
    let f = Fields::<D>::new(row, "metadata");
    Ok(Metadata {
        key: f.parsed("key", MetadataKey::parse)?,
        custid: f.custid("custid")?,
        secret_key: f.maybe_parsed("secret_key", SecretKey::parse)?,
        ttl: f.int("ttl")?,
        state: f.parsed("state", MetadataState::parse)?,
        created: f.int("created")?,
        updated: f.int("updated")?,
        received: f.maybe_int("received")?,
        burned: f.maybe_int("burned")?,
        recipients: split_recipients(&f.text("recipients")?),
        passphrase_required: f.boolean("passphrase_required")?,
        secret_expires_at: f.int("secret_expires_at")?,
        expires_at: f.int("expires_at")?,
    })
}

pub(crate) fn secret<D: Dialect>(row: &RowOf<D>) -> Result<StoredSecret, StoreError> {
    let f = Fields::<D>::new(row, "secrets");
    Ok(StoredSecret {
        key: f.parsed("key", SecretKey::parse)?,
        metadata_key: f.parsed("metadata_key", MetadataKey::parse)?,
        ciphertext: f.bytes("ciphertext")?,
        nonce: f.array("nonce")?,
        salt: f.array("salt")?,
        passphrase_hash: f.maybe_text("passphrase_hash")?,
        failed_tries: f.count("failed_tries")?,
        created: f.int("created")?,
        expires_at: f.int("expires_at")?,
    })
}

pub(crate) fn outbox<D: Dialect>(row: &RowOf<D>) -> Result<OutboxMail, StoreError> {
    let f = Fields::<D>::new(row, "outbox");
    Ok(OutboxMail {
        id: f.text("id")?,
        metadata_key: f.parsed("metadata_key", MetadataKey::parse)?,
        mail: SecretLinkMail {
            to: f.text("recipient")?,
            from_custid: f.custid("from_custid")?,
            secret_key: f.parsed("secret_key", SecretKey::parse)?,
        },
        attempts: f.count("attempts")?,
        next_attempt_at: f.int("next_attempt_at")?,
    })
}

pub(crate) fn customer<D: Dialect>(row: &RowOf<D>) -> Result<Customer, StoreError> {
    let f = Fields::<D>::new(row, "customers");
    Ok(Customer {
        custid: f.parsed("custid", CustId::parse)?,
        email: f.maybe_text("email")?,
        plan: f.text("plan")?,
        created: f.int("created")?,
    })
}

pub(crate) fn token<D: Dialect>(row: &RowOf<D>) -> Result<StoredToken, StoreError> {
    let f = Fields::<D>::new(row, "api_tokens");
    Ok(StoredToken {
        prefix: f.text("prefix")?,
        hash: f.bytes("hash")?,
        created: f.int("created")?,
    })
}

/// Recipients are stored one per line (an address holds no line break: see `Email`).
pub(crate) fn join_recipients(recipients: &[String]) -> String {
    recipients.join("\n")
}

fn split_recipients(stored: &str) -> Vec<String> {
    stored.lines().map(str::to_owned).collect()
}
