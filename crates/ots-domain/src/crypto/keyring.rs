//! The master secret, previous ones during a rotation, and what the server seals with them.

use ring::{aead, hkdf};
use zeroize::Zeroizing;

use super::{
    aead_key, aead_key_salted, open, open_random, seal, seal_random, MIN_MASTER_SECRET_LEN,
    SEALED_SALT,
};
use crate::model::{KeyId, PassphraseParams, SecretKey, SecretValue, Sensitive, ValueScheme};
use crate::random::Rng;

struct Master {
    id: KeyId,
    secret: Zeroizing<Vec<u8>>,
    /// HKDF's extract of the secret for [`ValueScheme::Expanded`] value keys, done once:
    /// each value key is then one expand (three SHA-256 blocks, not eight).
    values: hkdf::Prk,
}

impl Master {
    fn new(secret: &[u8]) -> Self {
        Self {
            id: KeyId::of(secret),
            secret: Zeroizing::new(secret.to_vec()),
            values: hkdf::Salt::new(hkdf::HKDF_SHA256, EXPANDED_SALT).extract(secret),
        }
    }
}

/// The current master secret, which seals everything new, and previous ones, which still
/// open what they sealed.
pub struct Keyring {
    keys: Vec<Master>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(…)")
    }
}

/// Which master secret opens the store's check value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MasterCheck {
    /// The store had none: the current master secret sealed it now.
    FirstUse,
    /// The current master secret opens it.
    Current,
    /// Previous secret number `n` (from 1) opens it; the check value is now sealed under
    /// the current one.
    Previous(usize),
}

const VALUE_INFO: &[u8] = b"ots/v2/secret-value";
/// The salt of the extract, and the info of each expand, of [`ValueScheme::Expanded`] keys.
const EXPANDED_SALT: &[u8] = b"ots/v3/values";
const EXPANDED_INFO: &[u8] = b"ots/v3/secret-value";
const CHECK_PURPOSE: &str = "store-check";
const CHECK_PLAIN: &[u8] = b"ots: this store is sealed under this master secret";

impl Keyring {
    /// `None` when the master secret is shorter than [`MIN_MASTER_SECRET_LEN`] bytes.
    pub fn new(current: &[u8]) -> Option<Self> {
        (current.len() >= MIN_MASTER_SECRET_LEN).then(|| Self {
            keys: vec![Master::new(current)],
        })
    }

    /// Adds a previous master secret: it opens what it sealed, and seals nothing new.
    pub fn with_previous(mut self, previous: &[u8]) -> Option<Self> {
        if previous.len() < MIN_MASTER_SECRET_LEN {
            return None;
        }
        self.keys.push(Master::new(previous));
        Some(self)
    }

    pub fn current_id(&self) -> KeyId {
        self.keys[0].id
    }

    /// The ids of every master secret held, the current one first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    fn find(&self, id: KeyId) -> Option<&Master> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Every master secret, the current one first.
    pub(super) fn masters(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|k| k.secret.as_slice())
    }

    fn field_key(master: &Master, purpose: &str) -> aead::LessSafeKey {
        aead_key_salted(&SEALED_SALT, &master.secret, &[purpose.as_bytes()])
    }

    /// Seals `plain` for `purpose` under the current master secret: `key id || nonce ||
    /// ciphertext || tag`.
    pub fn seal(&self, purpose: &str, plain: &[u8], rng: &dyn Rng) -> Result<Vec<u8>, String> {
        let master = &self.keys[0];
        let mut out = master.id.0.to_vec();
        out.extend(seal_random(
            &Self::field_key(master, purpose),
            purpose.as_bytes(),
            plain,
            rng,
        )?);
        Ok(out)
    }

    /// Opens what [`Keyring::seal`] sealed for `purpose`, under whichever master secret
    /// sealed it; `None` when none of them did or the bytes were changed.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (id, rest) = sealed.split_at_checked(4)?;
        let master = self.find(KeyId(id.try_into().ok()?))?;
        open_random(&Self::field_key(master, purpose), purpose.as_bytes(), rest)
    }

    /// The salted value key ([`ValueScheme::Sealed`]): HKDF over the master secret and, with
    /// a passphrase, its bcrypt derivation, extracted under the secret's salt and bound to the
    /// secret key. Without the link (the secret key) no one derives it, not even with the
    /// master secret; with a passphrase, every guess costs a bcrypt.
    fn salted_key(
        master: &[u8],
        salt: &[u8; 16],
        secret_key: &SecretKey,
        passphrase_key: Option<&[u8; 24]>,
    ) -> aead::LessSafeKey {
        let mut ikm = Zeroizing::new(Vec::with_capacity(master.len() + 25));
        ikm.extend_from_slice(master);
        match passphrase_key {
            Some(k) => {
                ikm.push(1);
                ikm.extend_from_slice(k);
            }
            None => ikm.push(0),
        }
        aead_key(&ikm, salt, &[VALUE_INFO, secret_key.as_str().as_bytes()])
    }

    /// The expanded value key ([`ValueScheme::Expanded`], no passphrase): HKDF-Expand of the
    /// master secret's key, extracted once, for the secret's salt and secret key. As with the
    /// salted key, neither the master secret without the link nor the link without the
    /// master secret derives it.
    fn expanded_key(master: &Master, salt: &[u8; 16], secret_key: &SecretKey) -> aead::LessSafeKey {
        let info = [EXPANDED_INFO, salt, secret_key.as_str().as_bytes()];
        let okm = master
            .values
            .expand(&info, &aead::AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        aead::LessSafeKey::new(aead::UnboundKey::from(okm))
    }

    /// Encrypts a value under the current master secret; `aad` binds it to its row. With a
    /// passphrase (its bcrypt derivation, and the parameters it was made with) the key is
    /// salted ([`ValueScheme::Sealed`]); without, expanded ([`ValueScheme::Expanded`]).
    /// Returns the scheme to store beside the ciphertext.
    pub fn seal_value(
        &self,
        value: &SecretValue,
        secret_key: &SecretKey,
        passphrase: Option<(&[u8; 24], PassphraseParams)>,
        salt: &[u8; 16],
        nonce: &[u8; 12],
        aad: &[u8],
    ) -> (ValueScheme, Vec<u8>) {
        let master = &self.keys[0];
        let (key, scheme) = match passphrase {
            Some((derived, params)) => (
                Self::salted_key(&master.secret, salt, secret_key, Some(derived)),
                ValueScheme::Sealed {
                    key_id: master.id,
                    passphrase: Some(params),
                },
            ),
            None => (
                Self::expanded_key(master, salt, secret_key),
                ValueScheme::Expanded { key_id: master.id },
            ),
        };
        (scheme, seal(&key, nonce, aad, value.expose().as_bytes()))
    }

    /// Decrypts a value stored with `scheme` (`passphrase_key`: its passphrase's derivation,
    /// when it has one); `None` when a key, the passphrase's derivation or the data do not
    /// match, or the scheme is not one the keyring opens ([`ValueScheme::Legacy`]).
    #[allow(clippy::too_many_arguments)]
    pub fn open_value(
        &self,
        scheme: &ValueScheme,
        ciphertext: &[u8],
        secret_key: &SecretKey,
        passphrase_key: Option<&[u8; 24]>,
        salt: &[u8; 16],
        nonce: &[u8; 12],
        aad: &[u8],
    ) -> Option<SecretValue> {
        let key = match scheme {
            ValueScheme::Sealed { key_id, .. } => Self::salted_key(
                &self.find(*key_id)?.secret,
                salt,
                secret_key,
                passphrase_key,
            ),
            ValueScheme::Expanded { key_id } if passphrase_key.is_none() => {
                Self::expanded_key(self.find(*key_id)?, salt, secret_key)
            }
            _ => return None,
        };
        let plain = open(&key, nonce, aad, ciphertext)?;
        std::str::from_utf8(&plain).ok().map(Sensitive::new)
    }

    /// A fresh check value under the current master secret.
    pub fn seal_check(&self, rng: &dyn Rng) -> Result<Vec<u8>, String> {
        self.seal(CHECK_PURPOSE, CHECK_PLAIN, rng)
    }

    /// Which master secret opens a stored check value: `Some(0)` the current one, `Some(n)`
    /// previous number n; `None` when none does.
    pub fn opens_check(&self, sealed: &[u8]) -> Option<usize> {
        let plain = self.open(CHECK_PURPOSE, sealed)?;
        let id = KeyId(sealed[..4].try_into().ok()?);
        (plain.as_slice() == CHECK_PLAIN).then(|| self.keys.iter().position(|k| k.id == id))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRng;

    fn sk() -> SecretKey {
        SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap()
    }

    #[test]
    fn short_master_secrets_are_refused() {
        assert!(Keyring::new(&[7; 31]).is_none());
        assert!(Keyring::new(&[7; 32]).is_some());
        assert!(Keyring::new(&[7; 32])
            .unwrap()
            .with_previous(&[1; 8])
            .is_none());
    }

    const PARAMS: PassphraseParams = PassphraseParams {
        cost: 4,
        salt: [3; 16],
    };

    #[test]
    fn a_value_needs_the_master_the_secret_key_the_passphrase_and_its_row() {
        let ring = Keyring::new(&[7; 32]).unwrap();
        let (salt, nonce, pk) = ([1; 16], [2; 12], [5; 24]);
        let value = Sensitive::new("hunter2 ✓");
        let (scheme, sealed) =
            ring.seal_value(&value, &sk(), Some((&pk, PARAMS)), &salt, &nonce, b"row-1");
        assert!(matches!(scheme, ValueScheme::Sealed { passphrase: Some(p), .. } if p == PARAMS));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let open = |r: &Keyring, key: &SecretKey, pk: Option<&[u8; 24]>, aad: &[u8]| {
            r.open_value(&scheme, &sealed, key, pk, &salt, &nonce, aad)
        };
        assert_eq!(
            open(&ring, &sk(), Some(&pk), b"row-1").unwrap().expose(),
            "hunter2 ✓"
        );
        assert!(open(&ring, &sk(), Some(&[6; 24]), b"row-1").is_none());
        assert!(open(&ring, &sk(), None, b"row-1").is_none());
        assert!(open(&ring, &sk(), Some(&pk), b"row-2").is_none());
        let other = SecretKey::parse("2b6bjmudhmtiqjn2qmdaqjkqxp323gi").unwrap();
        assert!(open(&ring, &other, Some(&pk), b"row-1").is_none());
        let stranger = Keyring::new(&[8; 32]).unwrap();
        assert!(open(&stranger, &sk(), Some(&pk), b"row-1").is_none());
    }

    #[test]
    fn an_expanded_value_needs_the_master_the_secret_key_its_salt_and_its_row() {
        let ring = Keyring::new(&[7; 32]).unwrap();
        let (salt, nonce) = ([1; 16], [2; 12]);
        let (scheme, sealed) = ring.seal_value(
            &Sensitive::new("v4lue"),
            &sk(),
            None,
            &salt,
            &nonce,
            b"row-1",
        );
        assert!(
            scheme
                == ValueScheme::Expanded {
                    key_id: ring.current_id()
                }
        );
        let open = |r: &Keyring, key: &SecretKey, salt: &[u8; 16], aad: &[u8]| {
            r.open_value(&scheme, &sealed, key, None, salt, &nonce, aad)
        };
        assert_eq!(
            open(&ring, &sk(), &salt, b"row-1").unwrap().expose(),
            "v4lue"
        );
        assert!(
            open(&ring, &sk(), &[9; 16], b"row-1").is_none(),
            "the salt counts"
        );
        assert!(open(&ring, &sk(), &salt, b"row-2").is_none());
        let other = SecretKey::parse("2b6bjmudhmtiqjn2qmdaqjkqxp323gi").unwrap();
        assert!(open(&ring, &other, &salt, b"row-1").is_none());
        assert!(open(&Keyring::new(&[8; 32]).unwrap(), &sk(), &salt, b"row-1").is_none());
        // Not under the salted derivation of the same inputs, nor with a passphrase's.
        let as_salted = ValueScheme::Sealed {
            key_id: ring.current_id(),
            passphrase: None,
        };
        assert!(ring
            .open_value(&as_salted, &sealed, &sk(), None, &salt, &nonce, b"row-1")
            .is_none());
        assert!(ring
            .open_value(
                &scheme,
                &sealed,
                &sk(),
                Some(&[5; 24]),
                &salt,
                &nonce,
                b"row-1"
            )
            .is_none());
    }

    #[test]
    fn a_salted_value_without_a_passphrase_still_opens() {
        // What earlier releases wrote for a secret without a passphrase.
        let ring = Keyring::new(&[7; 32]).unwrap();
        let (salt, nonce) = ([1; 16], [2; 12]);
        let key = Keyring::salted_key(&[7; 32], &salt, &sk(), None);
        let sealed = seal(&key, &nonce, b"row", b"older");
        let scheme = ValueScheme::Sealed {
            key_id: ring.current_id(),
            passphrase: None,
        };
        let opened = ring.open_value(&scheme, &sealed, &sk(), None, &salt, &nonce, b"row");
        assert_eq!(opened.unwrap().expose(), "older");
    }

    #[test]
    fn rotation_keeps_old_seals_open_and_seals_new_ones_under_the_current_secret() {
        let rng = SystemRng::new();
        let old = Keyring::new(&[7; 32]).unwrap();
        let sealed_before = old.seal("mail", b"jane@example.com", &rng).unwrap();
        let check_before = old.seal_check(&rng).unwrap();
        let (scheme, value) =
            old.seal_value(&Sensitive::new("v"), &sk(), None, &[1; 16], &[2; 12], b"");

        let rotated = Keyring::new(&[8; 32])
            .unwrap()
            .with_previous(&[7; 32])
            .unwrap();
        assert_eq!(
            &rotated.open("mail", &sealed_before).unwrap()[..],
            b"jane@example.com"
        );
        assert!(
            rotated.open("other", &sealed_before).is_none(),
            "purpose-bound"
        );
        assert_eq!(rotated.opens_check(&check_before), Some(1));
        assert!(rotated
            .open_value(&scheme, &value, &sk(), None, &[1; 16], &[2; 12], b"")
            .is_some());
        let sealed_after = rotated.seal("mail", b"x", &rng).unwrap();
        assert_eq!(sealed_after[..4], rotated.current_id().0);
        assert!(old.open("mail", &sealed_after).is_none());
        assert_eq!(
            rotated.opens_check(&rotated.seal_check(&rng).unwrap()),
            Some(0)
        );

        let wrong = Keyring::new(&[9; 32]).unwrap();
        assert_eq!(wrong.opens_check(&check_before), None);
        assert!(wrong.open("mail", &sealed_before).is_none());
    }
}
