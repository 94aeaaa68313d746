//! The value format of releases that stored keys in the clear (scheme 1): the value key
//! derives from the master secret, a SHA-256 of the passphrase and the secret key; the
//! ciphertext is bound to both keys; the passphrase is checked against a bcrypt verifier.
//! Rows written that way stay revealable with their old links after an upgrade; nothing new
//! is written in it.

use ring::{aead, digest};
use zeroize::Zeroizing;

use super::{aead_key, open, prehash, seal, Keyring};
use crate::model::{MetadataKey, Passphrase, SecretKey, SecretValue, Sensitive};

const KEY_INFO: &[u8] = b"ots/v1/secret-value/aes-256-gcm";

fn value_key(
    master: &[u8],
    salt: &[u8; 16],
    secret_key: &SecretKey,
    passphrase: Option<&Passphrase>,
) -> aead::LessSafeKey {
    let mut ikm = Zeroizing::new(Vec::with_capacity(master.len() + 33));
    ikm.extend_from_slice(master);
    match passphrase {
        Some(p) => {
            ikm.push(1);
            ikm.extend_from_slice(digest::digest(&digest::SHA256, p.expose().as_bytes()).as_ref());
        }
        None => ikm.push(0),
    }
    aead_key(&ikm, salt, &[KEY_INFO, secret_key.as_str().as_bytes()])
}

fn aad(secret_key: &SecretKey, metadata_key: &MetadataKey) -> Vec<u8> {
    format!("{metadata_key}:{secret_key}").into_bytes()
}

/// Opens a scheme-1 value with whichever master secret of the keyring sealed it.
#[allow(clippy::too_many_arguments)]
pub fn open_legacy_value(
    keyring: &Keyring,
    ciphertext: &[u8],
    secret_key: &SecretKey,
    metadata_key: &MetadataKey,
    passphrase: Option<&Passphrase>,
    salt: &[u8; 16],
    nonce: &[u8; 12],
) -> Option<SecretValue> {
    keyring.masters().find_map(|master| {
        let key = value_key(master, salt, secret_key, passphrase);
        let plain = open(&key, nonce, &aad(secret_key, metadata_key), ciphertext)?;
        std::str::from_utf8(&plain).ok().map(Sensitive::new)
    })
}

/// Seals a value as a scheme-1 release did: what the upgrade tests write to stand for rows
/// of the previous release.
#[doc(hidden)]
pub fn seal_legacy_value(
    master: &[u8],
    value: &SecretValue,
    secret_key: &SecretKey,
    metadata_key: &MetadataKey,
    passphrase: Option<&Passphrase>,
    salt: &[u8; 16],
    nonce: &[u8; 12],
) -> Vec<u8> {
    let key = value_key(master, salt, secret_key, passphrase);
    seal(
        &key,
        nonce,
        &aad(secret_key, metadata_key),
        value.expose().as_bytes(),
    )
}

/// A scheme-1 passphrase verifier: bcrypt of the pre-hash.
pub fn hash_passphrase(passphrase: &Passphrase, cost: u32) -> Result<String, String> {
    bcrypt::hash(prehash(passphrase).as_bytes(), cost).map_err(|e| e.to_string())
}

/// Checks a passphrase against a scheme-1 verifier. Slow on purpose.
pub fn verify_passphrase(passphrase: &Passphrase, hash: &str) -> bool {
    bcrypt::verify(prehash(passphrase).as_bytes(), hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_value_opens_with_its_keys_and_passphrase_only() {
        let sk = SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap();
        let mk = MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap();
        let pass = Passphrase::parse("correct horse").unwrap();
        let (salt, nonce) = ([1; 16], [2; 12]);
        let sealed = seal_legacy_value(
            &[7; 32],
            &Sensitive::new("hunter2"),
            &sk,
            &mk,
            Some(&pass),
            &salt,
            &nonce,
        );
        let ring = Keyring::new(&[8; 32])
            .unwrap()
            .with_previous(&[7; 32])
            .unwrap();
        let open = |p: Option<&Passphrase>, mk: &MetadataKey| {
            open_legacy_value(&ring, &sealed, &sk, mk, p, &salt, &nonce)
        };
        assert_eq!(open(Some(&pass), &mk).unwrap().expose(), "hunter2");
        assert!(open(None, &mk).is_none());
        let other = MetadataKey::parse("2b6bjmudhmtiqjn2qmdaqjkqxp323gi").unwrap();
        assert!(open(Some(&pass), &other).is_none());
        assert!(Keyring::new(&[8; 32])
            .map(|r| open_legacy_value(&r, &sealed, &sk, &mk, Some(&pass), &salt, &nonce))
            .unwrap()
            .is_none());
        let hash = hash_passphrase(&pass, 4).unwrap();
        assert!(verify_passphrase(&pass, &hash));
        assert!(!verify_passphrase(&Passphrase::parse("x").unwrap(), &hash));
    }
}
