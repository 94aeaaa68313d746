//! Keys and identities: secret and metadata keys, customer ids, and API credentials.

use std::fmt;

use crate::hex::{hex, unhex};
use crate::model::Sensitive;
use crate::random::{random_string, Rng};

/// Length of secret and metadata keys: 31 base-36 characters carry 160.3 bits.
pub const KEY_LEN: usize = 31;
/// Alphabet of keys: lowercase base 36.
pub const KEY_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts exactly [`KEY_LEN`] lowercase base-36 characters.
            pub fn parse(raw: &str) -> Option<Self> {
                let ok = raw.len() == KEY_LEN
                    && raw.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
                ok.then(|| Self(raw.to_owned()))
            }

            /// A fresh random key from the CSPRNG.
            pub fn generate<R: Rng + ?Sized>(rng: &R) -> Result<Self, String> {
                random_string(rng, KEY_LEN, KEY_ALPHABET).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Keys are capabilities: logs get a short prefix only.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.0[..4])
            }
        }
    };
}

key_type!(
    /// The shareable key of a secret.
    SecretKey
);
key_type!(
    /// The creator's private key of a secret's metadata.
    MetadataKey
);

impl SecretKey {
    /// The secret key `metadata_key` derives (see [`crate::crypto::derive_under_key`]): the
    /// creator gets it back from the metadata key alone, so the store keeps nothing of it,
    /// and nothing of the metadata key can be worked back from it. `None` (under 10^-20) for
    /// a metadata key that derives none; the share then draws another metadata key.
    pub fn derived_from(metadata_key: &MetadataKey) -> Option<Self> {
        crate::crypto::derive_under_key(
            metadata_key.as_str(),
            crate::crypto::purpose::DERIVED_SECRET_KEY,
            KEY_LEN,
            KEY_ALPHABET,
        )
        .map(Self)
    }
}

/// What a row is found by: SHA-256 over a tag and the key. A key carries 160 random bits,
/// so a stored id gives nothing to work back from, and nothing to present to the API.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident of $key:ident, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            pub fn of(key: &$key) -> Self {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                ctx.update($tag);
                ctx.update(key.as_str().as_bytes());
                let mut id = [0u8; 32];
                id.copy_from_slice(ctx.finish().as_ref());
                Self(id)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// 64 lowercase hex digits, as stored.
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }

            pub fn from_hex(raw: &str) -> Option<Self> {
                unhex(raw)?.try_into().ok().map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.to_hex()[..8])
            }
        }
    };
}

id_type!(
    /// The stored identity of a secret: a digest of its key.
    SecretId of SecretKey, b"ots/v2/secret-id:"
);
id_type!(
    /// The stored identity of a metadata record: a digest of its key.
    MetadataId of MetadataKey, b"ots/v2/metadata-id:"
);

/// Names a master secret without revealing it: the first 4 bytes of an HMAC under it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    pub(crate) fn of(master: &[u8]) -> Self {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, master),
            b"ots/v2/key-id",
        );
        let mut id = [0u8; 4];
        id.copy_from_slice(&tag.as_ref()[..4]);
        Self(id)
    }

    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        unhex(raw)?.try_into().ok().map(Self)
    }
}

/// A customer id; `anon` is the anonymous customer.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct CustId(String);

impl CustId {
    pub const ANONYMOUS: &'static str = "anon";

    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.to_owned())
    }

    /// 1–64 characters of letters, digits and `._@+-`; `anon` is reserved.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw != Self::ANONYMOUS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_anonymous(&self) -> bool {
        self.0 == Self::ANONYMOUS
    }
}

impl fmt::Display for CustId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller presents to be a customer: a custid and an API token. The token is never
/// printed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Credentials {
    pub custid: CustId,
    token: Sensitive,
}

impl Credentials {
    /// `None` when the custid cannot be one (the caller answers "not authorized", never a
    /// fall-back to anonymous).
    pub fn parse(custid: &str, token: &str) -> Option<Self> {
        Some(Self {
            custid: CustId::parse(custid)?,
            token: Sensitive::new(token),
        })
    }

    pub fn token(&self) -> &str {
        self.token.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_only_31_lowercase_base36() {
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").is_some());
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu").is_none());
        assert!(SecretKey::parse("153L8vbwqx5taskp92pf05uvgjefvu9").is_none());
        assert!(SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefv/9").is_none());
        assert!(MetadataKey::parse("").is_none());
    }

    #[test]
    fn a_metadata_key_derives_one_secret_key_that_is_no_digest_of_it() {
        let rng = crate::random::SystemRng::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let key = MetadataKey::generate(&rng).unwrap();
            let derived = SecretKey::derived_from(&key).expect("64 bytes give 31 letters");
            assert_eq!(SecretKey::parse(derived.as_str()), Some(derived.clone()));
            assert_eq!(SecretKey::derived_from(&key), Some(derived.clone()));
            assert_ne!(derived.as_str(), key.as_str());
            assert!(
                seen.insert(derived.clone()),
                "two metadata keys derived one key"
            );
            // Neither id (what the store keeps) gives the derived key in any form.
            for id in [
                MetadataId::of(&key).to_hex(),
                SecretId::of(&derived).to_hex(),
            ] {
                assert!(!id.contains(&derived.as_str()[..8]));
            }
        }
        // The letters are spread over the whole alphabet, as random keys' are.
        let letters: std::collections::HashSet<u8> =
            seen.iter().flat_map(|k| k.as_str().bytes()).collect();
        assert_eq!(letters.len(), KEY_ALPHABET.len());
        // A fixed vector (HKDF-SHA256 per RFC 5869, checked with Python's hmac): a change to
        // the derivation would strand every unread secret's link in its creator's view.
        let key = MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap();
        assert_eq!(
            SecretKey::derived_from(&key).unwrap().as_str(),
            "dexp4cxcxawflmvopkbho82tzgc1a80"
        );
    }

    #[test]
    fn keys_and_tokens_never_print_whole() {
        let key = SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap();
        assert!(!format!("{key:?}").contains("153l8vbwqx5taskp92pf05uvgjefvu9"));
        let creds = Credentials::parse("alice", "tok-hunter2-secret").unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert_eq!(creds.token(), "tok-hunter2-secret");
    }

    #[test]
    fn ids_are_digests_that_round_trip_as_hex() {
        let key = SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap();
        let id = SecretId::of(&key);
        assert_eq!(id, SecretId::of(&key));
        assert_eq!(SecretId::from_hex(&id.to_hex()), Some(id));
        assert!(!id.to_hex().contains(key.as_str()));
        let same_text = MetadataKey::parse(key.as_str()).unwrap();
        assert_ne!(
            MetadataId::of(&same_text).as_bytes(),
            id.as_bytes(),
            "a secret id and a metadata id never collide"
        );
        assert!(SecretId::from_hex("abc").is_none());
    }

    #[test]
    fn custids_are_checked_and_anon_is_reserved() {
        assert!(CustId::parse("alice.b+1@example-co").is_some());
        assert!(CustId::parse("anon").is_none());
        assert!(CustId::parse("").is_none());
        assert!(CustId::parse("a b").is_none());
        assert!(CustId::parse(&"x".repeat(65)).is_none());
        assert!(Credentials::parse("anon", "whatever").is_none());
    }
}
