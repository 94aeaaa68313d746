//! The heart of ots: what a secret is, how it moves from `new` to `received`, `burned` or
//! `expired`, the use cases that move it, and the ports the outside world plugs into.
//!
//! Nothing here knows about HTTP, SQL or SMTP: adapters depend on this crate, never the reverse.
//!
//! Modules depend downwards only: `random`, `clock`, `hex` and `error` on nothing; `model` on
//! those; `crypto`, `ports`, `events` and `policy` on `model`; `usecases` on those; `service`
//! (its implementation) and `accounts` on everything above.

pub mod accounts;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod events;
pub mod hex;
pub mod model;
pub mod policy;
pub mod ports;
pub mod random;
pub mod service;
pub mod usecases;

pub use accounts::Accounts;
pub use clock::{Clock, SystemClock, UnixTime};
pub use crypto::{Keyring, MasterCheck};
pub use error::{OtsError, StoreError};
pub use events::{Event, EventSink, LogEvents};
pub use model::*;
pub use policy::{default_bcrypt_concurrency, Policy};
pub use ports::*;
pub use random::{random_string, Rng, SystemRng};
pub use service::{MailReport, Service};
pub use usecases::{Caller, Peek, Revealed, SecretUseCases, ShareInput, Shared};
