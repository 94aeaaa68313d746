//! Column lists and row mapping, for both dialects. A row that does not parse into its
//! domain record is an error naming the table and column, never silently dropped.

use ots_domain::crypto::unhex;
use ots_domain::*;

use crate::{store_err, Dialect, RowOf};

pub(crate) const METADATA_COLUMNS: &str = "key, custid, secret_key, sealed_key, ttl, state, \
     created, updated, received, burned, recipients, passphrase_required, secret_expires_at, \
     expires_at";
pub(crate) const SECRET_COLUMNS: &str = "key, metadata_key, ciphertext, nonce, salt, scheme, \
     key_id, passphrase_cost, passphrase_salt, passphrase_hash, legacy_aad, failed_tries, \
     created, expires_at";
pub(crate) const OUTBOX_COLUMNS: &str =
    "id, metadata_key, recipient, from_custid, secret_key, attempts, next_attempt_at";
pub(crate) const CUSTOMER_COLUMNS: &str = "custid, email, plan, created";

/// A row read by column name, whatever ran its statement: a sqlx row of a [`Dialect`], or a
/// row of the SQLite writer's own connection (see [`crate::InlineWriter`]).
pub trait RowSource {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
    fn maybe_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn boolean(&self, col: &str) -> Result<bool, StoreError>;
}

impl<T: RowSource + ?Sized> RowSource for &T {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        (**self).text(col)
    }

    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        (**self).maybe_text(col)
    }

    fn int(&self, col: &str) -> Result<i64, StoreError> {
        (**self).int(col)
    }

    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        (**self).maybe_int(col)
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        (**self).bytes(col)
    }

    fn maybe_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).maybe_bytes(col)
    }

    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        (**self).boolean(col)
    }
}

/// A sqlx row of dialect `D`.
struct Sqlx<'r, D: Dialect>(&'r RowOf<D>);

impl<D: Dialect> RowSource for Sqlx<'_, D> {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        D::text(self.0, col).map_err(store_err::<D>)
    }

    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        D::maybe_text(self.0, col).map_err(store_err::<D>)
    }

    fn int(&self, col: &str) -> Result<i64, StoreError> {
        D::int(self.0, col).map_err(store_err::<D>)
    }

    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        D::maybe_int(self.0, col).map_err(store_err::<D>)
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        D::bytes(self.0, col).map_err(store_err::<D>)
    }

    fn maybe_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        D::maybe_bytes(self.0, col).map_err(store_err::<D>)
    }

    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        D::boolean(self.0, col).map_err(store_err::<D>)
    }
}

/// Reads one row of `table`, turning driver errors and unparseable values into store errors.
struct Fields<R: RowSource> {
    row: R,
    table: &'static str,
}

impl<R: RowSource> Fields<R> {
    fn new(row: R, table: &'static str) -> Self {
        Self { row, table }
    }

    fn corrupt(&self, col: &str) -> StoreError {
        StoreError::Other(format!("corrupt {} row: {col}", self.table))
    }

    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.row.text(col)
    }

    fn maybe_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.row.maybe_text(col)
    }

    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.row.int(col)
    }

    fn maybe_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.row.maybe_int(col)
    }

    fn count(&self, col: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(col)?).map_err(|_| self.corrupt(col))
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.row.bytes(col)
    }

    fn array<const N: usize>(&self, col: &str) -> Result<[u8; N], StoreError> {
        self.bytes(col)?.try_into().map_err(|_| self.corrupt(col))
    }

    fn maybe_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.row.maybe_bytes(col)
    }

    /// Bytes stored as hex in a text column.
    fn hex(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.parsed(col, unhex)
    }

    fn maybe_hex(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.maybe_parsed(col, unhex)
    }

    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        self.row.boolean(col)
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
    let f = Fields::new(Sqlx::<D>(row), "metadata");
    let sealed = (f.maybe_hex("secret_key")?, f.maybe_hex("sealed_key")?);
    metadata_with(&f, f.parsed("key", MetadataId::from_hex)?, sealed)
}

/// A metadata row with its id and sealed keys as given: the other columns mean the same in
/// legacy and current rows.
fn metadata_with<R: RowSource>(
    f: &Fields<R>,
    id: MetadataId,
    (sealed_secret_key, sealed_key): (Option<Vec<u8>>, Option<Vec<u8>>),
) -> Result<Metadata, StoreError> {
    Ok(Metadata {
        id,
        custid: f.custid("custid")?,
        sealed_secret_key,
        sealed_key,
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
    secret_of(Sqlx::<D>(row))
}

/// A secret row, from whatever ran its statement.
pub(crate) fn secret_of(row: impl RowSource) -> Result<StoredSecret, StoreError> {
    let f = Fields::new(row, "secrets");
    let scheme = match f.int("scheme")? {
        2 => ValueScheme::Sealed {
            key_id: f.parsed("key_id", KeyId::from_hex)?,
            passphrase: match f.maybe_int("passphrase_cost")? {
                Some(cost) => Some(PassphraseParams {
                    cost: u32::try_from(cost).map_err(|_| f.corrupt("passphrase_cost"))?,
                    salt: f
                        .maybe_bytes("passphrase_salt")?
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| f.corrupt("passphrase_salt"))?,
                }),
                None => None,
            },
        },
        3 => ValueScheme::Expanded {
            key_id: f.parsed("key_id", KeyId::from_hex)?,
        },
        1 => ValueScheme::Legacy {
            passphrase_hash: f
                .maybe_text("passphrase_hash")?
                .ok_or_else(|| f.corrupt("passphrase_hash"))?,
            sealed_metadata_key: f.hex("legacy_aad")?,
        },
        _ => return Err(f.corrupt("scheme")),
    };
    Ok(StoredSecret {
        id: f.parsed("key", SecretId::from_hex)?,
        metadata_id: f.parsed("metadata_key", MetadataId::from_hex)?,
        ciphertext: f.bytes("ciphertext")?,
        nonce: f.array("nonce")?,
        salt: f.array("salt")?,
        scheme,
        failed_tries: f.count("failed_tries")?,
        created: f.int("created")?,
        expires_at: f.int("expires_at")?,
    })
}

pub(crate) fn outbox<D: Dialect>(row: &RowOf<D>) -> Result<OutboxMail, StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "outbox");
    Ok(OutboxMail {
        id: f.text("id")?,
        metadata_id: f.parsed("metadata_key", MetadataId::from_hex)?,
        from_custid: f.custid("from_custid")?,
        sealed_to: f.hex("recipient")?,
        sealed_secret_key: f.hex("secret_key")?,
        attempts: f.count("attempts")?,
        next_attempt_at: f.int("next_attempt_at")?,
    })
}

/// A metadata row a release that stored keys wrote: its keys in the clear, full addresses.
pub(crate) fn legacy_metadata<D: Dialect>(
    row: &RowOf<D>,
) -> Result<(MetadataKey, Option<SecretKey>, Metadata), StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "metadata");
    let key = f.parsed("key", MetadataKey::parse)?;
    let metadata = metadata_with(&f, MetadataId::of(&key), (None, None))?;
    Ok((
        key,
        f.maybe_parsed("secret_key", SecretKey::parse)?,
        metadata,
    ))
}

pub(crate) fn legacy_secret<D: Dialect>(row: &RowOf<D>) -> Result<LegacySecret, StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "secrets");
    Ok(LegacySecret {
        ciphertext: f.bytes("ciphertext")?,
        nonce: f.array("nonce")?,
        salt: f.array("salt")?,
        passphrase_hash: f.maybe_text("passphrase_hash")?,
        failed_tries: f.count("failed_tries")?,
        created: f.int("created")?,
        expires_at: f.int("expires_at")?,
    })
}

pub(crate) fn legacy_mail<D: Dialect>(row: &RowOf<D>) -> Result<LegacyMail, StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "outbox");
    Ok(LegacyMail {
        id: f.text("id")?,
        to: f.text("recipient")?,
        from_custid: f.custid("from_custid")?,
        attempts: f.count("attempts")?,
        next_attempt_at: f.int("next_attempt_at")?,
    })
}

pub(crate) fn customer<D: Dialect>(row: &RowOf<D>) -> Result<Customer, StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "customers");
    Ok(Customer {
        custid: f.parsed("custid", CustId::parse)?,
        email: f.maybe_text("email")?,
        plan: f.text("plan")?,
        created: f.int("created")?,
    })
}

pub(crate) fn token<D: Dialect>(row: &RowOf<D>) -> Result<StoredToken, StoreError> {
    let f = Fields::new(Sqlx::<D>(row), "api_tokens");
    Ok(StoredToken {
        prefix: f.text("prefix")?,
        hash: f.bytes("hash")?,
        created: f.int("created")?,
    })
}

/// Recipients are stored one per line (an address holds no line break: see `Email`).
pub fn join_recipients(recipients: &[String]) -> String {
    recipients.join("\n")
}

fn split_recipients(stored: &str) -> Vec<String> {
    stored.lines().map(str::to_owned).collect()
}
