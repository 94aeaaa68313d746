//! Passphrases: slow on purpose (bcrypt). A port so tests can count the derivations and
//! hold them while others race.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto;
use crate::model::Passphrase;

pub trait PassphraseHasher: Send + Sync {
    /// bcrypt of the passphrase at `cost` under `salt`: 24 bytes that go into the value key
    /// and are never stored.
    fn derive(&self, passphrase: &Passphrase, salt: &[u8; 16], cost: u32) -> Zeroizing<[u8; 24]>;
    /// Checks a passphrase against the bcrypt verifier an older release stored.
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool;
}

/// bcrypt over a SHA-256 pre-hash, so every byte of a long passphrase counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bcrypt;

impl PassphraseHasher for Bcrypt {
    fn derive(&self, passphrase: &Passphrase, salt: &[u8; 16], cost: u32) -> Zeroizing<[u8; 24]> {
        crypto::derive_passphrase_key(passphrase, salt, cost)
    }
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool {
        crypto::verify_passphrase(passphrase, hash)
    }
}

impl<T: PassphraseHasher + ?Sized> PassphraseHasher for Arc<T> {
    fn derive(&self, passphrase: &Passphrase, salt: &[u8; 16], cost: u32) -> Zeroizing<[u8; 24]> {
        (**self).derive(passphrase, salt, cost)
    }
    fn verify(&self, passphrase: &Passphrase, hash: &str) -> bool {
        (**self).verify(passphrase, hash)
    }
}
