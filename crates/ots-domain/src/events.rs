//! What happened to secrets, said by the use cases as it happens. Metrics and logs subscribe
//! through the [`EventSink`] port instead of guessing from routes and status codes.

use std::sync::Arc;

use tracing::info;

use crate::model::CustId;

/// One thing that happened to a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A secret was stored (by share or generate).
    Created {
        custid: CustId,
        ttl: i64,
        passphrase: bool,
        mail: bool,
    },
    /// Its one reader got the value.
    Revealed,
    /// Its creator destroyed it unread.
    Burned,
    /// A wrong or missing passphrase; `tries_left == 0` means this try burned it.
    WrongPassphrase { tries_left: u32 },
    /// The sweep deleted secrets that expired unread, and metadata past its life.
    Expired { secrets: u64, metadata: u64 },
}

impl Event {
    /// A short stable name (metric label, log field).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "created",
            Event::Revealed => "revealed",
            Event::Burned => "burned",
            Event::WrongPassphrase { .. } => "wrong_passphrase",
            Event::Expired { .. } => "expired",
        }
    }
}

/// Hears every [`Event`]. MUST NOT block: it runs inside the use case.
pub trait EventSink: Send + Sync {
    fn record(&self, event: &Event);
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn record(&self, event: &Event) {
        (**self).record(event)
    }
}

/// Several sinks hear each event, in order.
impl<T: EventSink> EventSink for Vec<T> {
    fn record(&self, event: &Event) {
        for sink in self {
            sink.record(event);
        }
    }
}

/// Events as log lines (no keys, values or addresses: events carry none).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

impl EventSink for LogEvents {
    fn record(&self, event: &Event) {
        match event {
            Event::Created {
                custid,
                ttl,
                passphrase,
                mail,
            } => info!(%custid, ttl, passphrase, mail, "secret created"),
            Event::Revealed => info!("secret revealed"),
            Event::Burned => info!("secret burned"),
            Event::WrongPassphrase { tries_left: 0 } => {
                info!("secret burned after too many wrong passphrases")
            }
            Event::WrongPassphrase { tries_left } => info!(tries_left, "wrong passphrase"),
            Event::Expired { secrets, metadata } => {
                info!(secrets, metadata, "swept expired rows")
            }
        }
    }
}
