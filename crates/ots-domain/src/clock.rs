//! Time as the domain sees it: unix seconds from a port, so tests move a fake clock instead
//! of sleeping.

/// Unix seconds, UTC.
pub type UnixTime = i64;

/// The current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixTime;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> UnixTime {
        (**self).now()
    }
}
