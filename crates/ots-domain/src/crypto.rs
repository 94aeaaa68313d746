//! Value encryption (AES-256-GCM under an HKDF-SHA256 key), passphrase hashing (bcrypt over a
//! SHA-256 pre-hash) and API-token hashing.

use ring::{aead, digest, hkdf};
use zeroize::Zeroizing;

use crate::model::{MetadataKey, Passphrase, SecretKey, SecretValue, Sensitive};

/// Shortest master secret accepted, in bytes.
pub const MIN_MASTER_SECRET_LEN: usize = 32;

const KEY_INFO: &[u8] = b"ots/v1/secret-value/aes-256-gcm";

/// Encrypts and decrypts secret values with keys derived from the server's master secret.
pub struct Cipher {
    master: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(…)")
    }
}

/// What [`Cipher::seal`] returns, ready to store.
pub struct Sealed {
    pub ciphertext: Vec<u8>,
}

impl Cipher {
    /// `None` when the master secret is shorter than [`MIN_MASTER_SECRET_LEN`] bytes.
    pub fn new(master_secret: &[u8]) -> Option<Self> {
        (master_secret.len() >= MIN_MASTER_SECRET_LEN).then(|| Self {
            master: Zeroizing::new(master_secret.to_vec()),
        })
    }

    /// The per-secret key: HKDF-SHA256 with the secret's random salt over the master secret
    /// and the passphrase's digest, bound to the secret key.
    fn key(
        &self,
        salt: &[u8; 16],
        secret_key: &SecretKey,
        passphrase: Option<&Passphrase>,
    ) -> aead::LessSafeKey {
        let mut ikm = Zeroizing::new(Vec::with_capacity(self.master.len() + 33));
        ikm.extend_from_slice(&self.master);
        match passphrase {
            Some(p) => {
                ikm.push(1);
                ikm.extend_from_slice(
                    digest::digest(&digest::SHA256, p.expose().as_bytes()).as_ref(),
                );
            }
            None => ikm.push(0),
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
        let info = [KEY_INFO, secret_key.as_str().as_bytes()];
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        aead::LessSafeKey::new(aead::UnboundKey::from(okm))
    }

    fn aad(secret_key: &SecretKey, metadata_key: &MetadataKey) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(metadata_key.as_str().as_bytes());
        aad.push(b':');
        aad.extend_from_slice(secret_key.as_str().as_bytes());
        aad
    }

    /// Encrypts `value`; the ciphertext is authenticated with both keys.
    pub fn seal(
        &self,
        value: &SecretValue,
        secret_key: &SecretKey,
        metadata_key: &MetadataKey,
        passphrase: Option<&Passphrase>,
        salt: &[u8; 16],
        nonce: &[u8; 12],
    ) -> Sealed {
        let key = self.key(salt, secret_key, passphrase);
        let mut buf = value.expose().as_bytes().to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(Self::aad(secret_key, metadata_key)),
            &mut buf,
        )
        .expect("AES-GCM sealing fails only for inputs beyond 64 GiB");
        Sealed { ciphertext: buf }
    }

    /// Decrypts a stored value; `None` when the key, passphrase or data do not match.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        ciphertext: &[u8],
        secret_key: &SecretKey,
        metadata_key: &MetadataKey,
        passphrase: Option<&Passphrase>,
        salt: &[u8; 16],
        nonce: &[u8; 12],
    ) -> Option<SecretValue> {
        let key = self.key(salt, secret_key, passphrase);
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(*nonce),
                aead::Aad::from(Self::aad(secret_key, metadata_key)),
                &mut buf,
            )
            .ok()?;
        let text = std::str::from_utf8(plain).ok()?;
        Some(Sensitive::new(text))
    }
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

/// Hashes a passphrase with bcrypt. Slow on purpose: call it off the async workers.
pub fn hash_passphrase(passphrase: &Passphrase, cost: u32) -> Result<String, String> {
    bcrypt::hash(prehash(passphrase).as_bytes(), cost).map_err(|e| e.to_string())
}

/// Checks a passphrase against its bcrypt hash. Slow on purpose: call it off the async workers.
pub fn verify_passphrase(passphrase: &Passphrase, hash: &str) -> bool {
    bcrypt::verify(prehash(passphrase).as_bytes(), hash).unwrap_or(false)
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

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SecretKey, MetadataKey) {
        (
            SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap(),
            MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap(),
        )
    }

    #[test]
    fn short_master_secrets_are_refused() {
        assert!(Cipher::new(&[7; 31]).is_none());
        assert!(Cipher::new(&[7; 32]).is_some());
    }

    #[test]
    fn seal_then_open_round_trips_and_binds_everything() {
        let cipher = Cipher::new(&[7; 32]).unwrap();
        let (sk, mk) = keys();
        let pass = Passphrase::parse("correct horse").unwrap();
        let value = Sensitive::new("hunter2 ✓");
        let (salt, nonce) = ([1; 16], [2; 12]);
        let sealed = cipher.seal(&value, &sk, &mk, Some(&pass), &salt, &nonce);
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        let open = |c: &Cipher, p: Option<&Passphrase>, mk: &MetadataKey, salt: &[u8; 16]| {
            c.open(&sealed.ciphertext, &sk, mk, p, salt, &nonce)
        };
        assert_eq!(
            open(&cipher, Some(&pass), &mk, &salt).unwrap().expose(),
            "hunter2 ✓"
        );
        let wrong = Passphrase::parse("correct horsE").unwrap();
        assert!(open(&cipher, Some(&wrong), &mk, &salt).is_none());
        assert!(open(&cipher, None, &mk, &salt).is_none());
        assert!(open(&cipher, Some(&pass), &mk, &[9; 16]).is_none());
        let other_mk = MetadataKey::parse("2b6bjmudhmtiqjn2qmdaqjkqxp323gi").unwrap();
        assert!(open(&cipher, Some(&pass), &other_mk, &salt).is_none());
        let other_master = Cipher::new(&[8; 32]).unwrap();
        assert!(open(&other_master, Some(&pass), &mk, &salt).is_none());
    }

    #[test]
    fn every_byte_of_a_long_passphrase_counts() {
        let long = "x".repeat(100);
        let a = Passphrase::parse(&long).unwrap();
        let b = Passphrase::parse(&format!("{}y", &long[..99])).unwrap();
        let hash = hash_passphrase(&a, 4).unwrap();
        assert!(verify_passphrase(&a, &hash));
        assert!(!verify_passphrase(&b, &hash));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
