//! The driven ports: what the domain needs from the outside world, named for that need.
//! (Time and randomness are ports too: [`crate::Clock`], [`crate::Rng`]; events are
//! [`crate::EventSink`].)
//!
//! Every method that must be atomic says so with MUST; the contract suite in
//! `ots-store-contract` checks each store against these words.

mod customers;
mod hasher;
mod mail;
mod store;

pub use customers::CustomerRepository;
pub use hasher::{Bcrypt, PassphraseHasher};
pub use mail::{Mailer, SecretLinkMail};
pub use store::*;
