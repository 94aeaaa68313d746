//! A timer that wakes the load generator's runtime at the instant asked.
//!
//! tokio's timer wakes a task on the first millisecond tick at or after its deadline, and the
//! runtime looks at its timers only between polls: a fixed-rate schedule sent through
//! `tokio::time::sleep_until` went out 0.86–0.96 ms late at p50 and 1.9–2.0 ms at p99 on a free
//! connection, and as each op's latency counts from when it was due, that lateness of the
//! generator's own was counted in every op. The kernel's timerfd (`CLOCK_MONOTONIC`, which is
//! also what `Instant` reads on Linux) fires at the nanosecond asked, and the runtime sees it
//! as soon as its thread gets a core, like any socket it watches.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use tokio::io::unix::AsyncFd;

/// One timerfd, armed for one instant at a time.
pub struct Precise {
    fd: AsyncFd<OwnedFd>,
    /// An `Instant` and the monotonic clock's reading at it, to turn the one into the other.
    origin: (Instant, Duration),
}

impl Precise {
    /// A timer on the runtime this is called from.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let now = clock_gettime(ClockId::Monotonic);
        let origin = (
            Instant::now(),
            Duration::new(now.tv_sec as u64, now.tv_nsec as u32),
        );
        // `AsyncFd::new` is deprecated for inners whose fd may change or close under it; an
        // `OwnedFd` holds one open fd for its whole life, which is what the replacement,
        // `unsafe fn register`, asks its caller to promise (and the workspace forbids
        // `unsafe`).
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Self { fd, origin })
    }

    /// The monotonic clock's reading at `at`.
    fn timespec(&self, at: Instant) -> Timespec {
        let (instant, clock) = self.origin;
        let t = match at.checked_duration_since(instant) {
            Some(after) => clock + after,
            None => clock.saturating_sub(instant - at),
        };
        Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos().into(),
        }
    }

    /// Returns at `due`, or at once when `due` has passed.
    pub async fn sleep_until(&self, due: Instant) -> io::Result<()> {
        if due <= Instant::now() {
            return Ok(());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let armed = Itimerspec {
            it_interval: zero,
            it_value: self.timespec(due),
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &armed)?;
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(read) => return read.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_wakes_at_the_instant_asked_and_not_before() {
        let timer = Precise::new().expect("a timerfd");
        for wait_us in [300u64, 1_500, 2_200] {
            let due = Instant::now() + Duration::from_micros(wait_us);
            timer.sleep_until(due).await.expect("the timer fires");
            assert!(Instant::now() >= due, "woke before {wait_us} µs had passed");
        }
        // A deadline already past returns at once, with nothing armed.
        let past = Instant::now() - Duration::from_millis(5);
        timer.sleep_until(past).await.expect("no wait");
    }
}
