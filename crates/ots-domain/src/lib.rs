//! The heart of ots: what a secret is, how it moves from `new` to `received`, `burned` or
//! `expired`, the use cases that move it, and the ports the outside world plugs into.
//!
//! Nothing here knows about HTTP, SQL or SMTP: adapters depend on this crate, never the reverse.

pub mod accounts;
pub mod crypto;
pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use accounts::Accounts;
pub use crypto::Cipher;
pub use error::{OtsError, StoreError};
pub use model::*;
pub use ports::*;
pub use service::{
    random_string, Caller, MailReport, Peek, Policy, Revealed, Service, ShareInput, Shared,
};
