//! The cryptography, in one place:
//!
//! - [`Keyring`]: the master secret (and previous ones, during a rotation), what the server
//!   seals with, and the value keys derived from it;
//! - [`seal_under_key`]/[`open_under_key`]: sealing under a key the user holds (the creator's
//!   metadata key), which the server never stores;
//! - passphrases: bcrypt of a SHA-256 pre-hash, as the derivation that goes into a value key;
//! - API tokens: SHA-256, compared in constant time.
//!
//! Every seal is AES-256-GCM under an HKDF-SHA256 key, with a fresh random nonce stored in
//! front of the ciphertext.

use std::sync::LazyLock;

use ring::{aead, digest, hkdf};
use zeroize::Zeroizing;

use crate::model::Passphrase;
use crate::random::Rng;

mod keyring;
mod legacy;

pub use crate::hex::{hex, unhex};

pub use keyring::{Keyring, MasterCheck};
pub use legacy::{hash_passphrase, open_legacy_value, seal_legacy_value, verify_passphrase};

/// What each sealed field is for: a seal opens only for its own purpose.
pub mod purpose {
    /// The secret key, under the metadata key (the creator's view; shares before secret keys
    /// derived from metadata keys, and what the upgrade of an older store seals).
    pub const CREATOR_SECRET_KEY: &str = "creator/secret-key";
    /// The secret key, derived from the metadata key (the creator's view of later shares).
    pub const DERIVED_SECRET_KEY: &str = "creator/derived-secret-key";
    /// A customer's metadata key, under the master secret (`recent`).
    pub const RECENT_KEY: &str = "recent/metadata-key";
    /// A recipient's address, under the master secret (the outbox).
    pub const MAIL_TO: &str = "mail/to";
    /// The secret key of a link to mail, under the master secret (the outbox).
    pub const MAIL_LINK: &str = "mail/secret-key";
    /// The metadata key a legacy value is bound to, under the secret key.
    pub const LEGACY_METADATA_KEY: &str = "legacy/metadata-key";
}

/// Shortest master secret accepted, in bytes.
pub const MIN_MASTER_SECRET_LEN: usize = 32;

const NONCE_LEN: usize = 12;

/// The salts that are constants, keyed once: `hkdf::Salt::new` computes HMAC's two padded key
/// blocks, about a fifth of an HKDF's SHA-256 work, and these two run on every share.
static HELD_SALT: LazyLock<hkdf::Salt> =
    LazyLock::new(|| hkdf::Salt::new(hkdf::HKDF_SHA256, b"ots/v2/held"));
static SEALED_SALT: LazyLock<hkdf::Salt> =
    LazyLock::new(|| hkdf::Salt::new(hkdf::HKDF_SHA256, b"ots/v2/sealed"));

/// An AES-256-GCM key from HKDF-SHA256 over `ikm`, with `salt`, for `info`.
fn aead_key(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> aead::LessSafeKey {
    aead_key_salted(&hkdf::Salt::new(hkdf::HKDF_SHA256, salt), ikm, info)
}

/// [`aead_key`] with the salt already keyed.
fn aead_key_salted(salt: &hkdf::Salt, ikm: &[u8], info: &[&[u8]]) -> aead::LessSafeKey {
    let prk = salt.extract(ikm);
    let okm = prk
        .expand(info, &aead::AES_256_GCM)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

/// `nonce || ciphertext || tag` under `key`, the nonce fresh from `rng`.
fn seal_random(
    key: &aead::LessSafeKey,
    aad: &[u8],
    plain: &[u8],
    rng: &dyn Rng,
) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&seal(key, &nonce, aad, plain));
    Ok(out)
}

fn open_random(key: &aead::LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    open(key, nonce.try_into().ok()?, aad, ciphertext)
}

fn seal(key: &aead::LessSafeKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(*nonce),
        aead::Aad::from(aad),
        &mut buf,
    )
    .expect("AES-GCM sealing fails only for inputs beyond 64 GiB");
    buf
}

fn open(
    key: &aead::LessSafeKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

/// Seals `plain` under a key derived from `held` alone: a key a user holds and the server
/// does not store (the creator's metadata key), so only that user can open it.
pub fn seal_under_key(
    held: &str,
    purpose: &str,
    plain: &[u8],
    rng: &dyn Rng,
) -> Result<Vec<u8>, String> {
    let key = aead_key_salted(&HELD_SALT, held.as_bytes(), &[purpose.as_bytes()]);
    seal_random(&key, purpose.as_bytes(), plain, rng)
}

pub fn open_under_key(held: &str, purpose: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let key = aead_key_salted(&HELD_SALT, held.as_bytes(), &[purpose.as_bytes()]);
    open_random(&key, purpose.as_bytes(), sealed)
}

/// What a metadata record holds for its secret key when that key derives from the metadata
/// key ([`crate::model::SecretKey::derived_from`]): nothing. A seal is never empty (it holds at
/// least a nonce and a tag), so the two cannot be mistaken for each other.
pub const DERIVED_FROM_METADATA_KEY: &[u8] = &[];

/// HKDF-SHA256 output long enough for [`derive_under_key`]: 64 bytes give the 31 letters of a
/// key unless 34 of them are rejected, which at 4/256 a byte does not happen (under 10^-20).
struct Derived;

impl hkdf::KeyType for Derived {
    fn len(&self) -> usize {
        64
    }
}

/// `len` letters of `alphabet` derived from `held` (a key a user holds) alone, for `purpose`:
/// HKDF-SHA256 with the held salt, its output mapped to letters as random ones are. The same
/// key always gives the same letters, and nothing of `held` can be worked back from them. `None`
/// in the case (under 10^-20) that the output has too few bytes to map.
pub fn derive_under_key<const N: usize>(
    held: &str,
    purpose: &str,
    len: usize,
    alphabet: &[u8; N],
) -> Option<String> {
    let mut okm = Zeroizing::new([0u8; 64]);
    HELD_SALT
        .extract(held.as_bytes())
        .expand(&[purpose.as_bytes()], Derived)
        .and_then(|okm_| okm_.fill(&mut okm[..]))
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    let mut out = vec![0u8; len];
    (crate::random::letters(&okm[..], alphabet, &mut out) == len)
        .then(|| String::from_utf8(out).expect("an ASCII alphabet"))
}

/// bcrypt reads at most 72 bytes; a SHA-256 pre-hash (hex, 64 bytes) makes every byte of a
/// passphrase of any length count.
fn prehash(passphrase: &Passphrase) -> Zeroizing<String> {
    Zeroizing::new(hex(digest::digest(
        &digest::SHA256,
        passphrase.expose().as_bytes(),
    )
    .as_ref()))
}

/// bcrypt of the passphrase at `cost` under `salt`: 24 bytes that go into the value key and
/// are never stored. Slow on purpose: call it off the async workers.
pub fn derive_passphrase_key(
    passphrase: &Passphrase,
    salt: &[u8; 16],
    cost: u32,
) -> Zeroizing<[u8; 24]> {
    Zeroizing::new(bcrypt::bcrypt(cost, *salt, prehash(passphrase).as_bytes()))
}

/// API tokens carry ≥160 random bits, so one SHA-256 is an adequate stored hash.
pub fn hash_token(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRng;

    #[test]
    fn a_held_key_seal_opens_only_with_that_key_and_purpose() {
        let rng = SystemRng::new();
        let sealed = seal_under_key("metadata-key-1", "secret-key", b"s3cret", &rng).unwrap();
        let opened = open_under_key("metadata-key-1", "secret-key", &sealed).unwrap();
        assert_eq!(&opened[..], b"s3cret");
        assert!(open_under_key("metadata-key-2", "secret-key", &sealed).is_none());
        assert!(open_under_key("metadata-key-1", "other", &sealed).is_none());
        assert!(open_under_key("metadata-key-1", "secret-key", &sealed[..5]).is_none());
        let again = seal_under_key("metadata-key-1", "secret-key", b"s3cret", &rng).unwrap();
        assert_ne!(sealed, again, "a fresh nonce every time");
    }

    #[test]
    fn the_salts_keyed_once_derive_the_keys_a_fresh_salt_derives() {
        // What earlier releases sealed, with the salt keyed per call, must still open.
        let rng = SystemRng::new();
        for (cached, salt) in [
            (&*HELD_SALT, &b"ots/v2/held"[..]),
            (&SEALED_SALT, b"ots/v2/sealed"),
        ] {
            let ikm = b"some held key or master secret";
            let sealed =
                seal_random(&aead_key(ikm, salt, &[b"purpose"]), b"aad", b"v", &rng).unwrap();
            let key = aead_key_salted(cached, ikm, &[b"purpose"]);
            assert_eq!(&open_random(&key, b"aad", &sealed).unwrap()[..], b"v");
            let other = aead_key_salted(cached, b"another key", &[b"purpose"]);
            assert!(open_random(&other, b"aad", &sealed).is_none());
        }
    }

    #[test]
    fn the_passphrase_key_is_bcrypt_and_every_byte_counts() {
        let long = "x".repeat(100);
        let a = Passphrase::parse(&long).unwrap();
        let b = Passphrase::parse(&format!("{}y", &long[..99])).unwrap();
        let salt = [3; 16];
        assert_eq!(
            *derive_passphrase_key(&a, &salt, 4),
            *derive_passphrase_key(&a, &salt, 4)
        );
        assert_ne!(
            *derive_passphrase_key(&a, &salt, 4),
            *derive_passphrase_key(&b, &salt, 4)
        );
        assert_ne!(
            *derive_passphrase_key(&a, &salt, 4),
            *derive_passphrase_key(&a, &[4; 16], 4)
        );
        assert_ne!(
            *derive_passphrase_key(&a, &salt, 4),
            *derive_passphrase_key(&a, &salt, 5),
            "the cost is part of the derivation"
        );
    }

    #[test]
    fn tokens_compare_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
