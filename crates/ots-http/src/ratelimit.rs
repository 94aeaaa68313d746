//! Rate limits per route class, per client address (anonymous requests) or per customer,
//! with quotas from the caller's plan. GCRA through `governor`, one keyed limiter per plan
//! and class, in this process's memory.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// What a route does, for rate limiting: creating, revealing, or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Create,
    Reveal,
    Other,
}

/// A quota: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub per_minute: u32,
}

impl Default for Limit {
    /// Generous enough for scripts: bursts of 300 and 1000 a minute.
    fn default() -> Self {
        Self {
            burst: 300,
            per_minute: 1000,
        }
    }
}

/// A plan's quotas, one per route class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassLimits {
    pub create: Limit,
    pub reveal: Limit,
    pub other: Limit,
}

impl ClassLimits {
    fn get(&self, class: RouteClass) -> Limit {
        match class {
            RouteClass::Create => self.create,
            RouteClass::Reveal => self.reveal,
            RouteClass::Other => self.other,
        }
    }
}

/// Decides whether a request may go on; `Err(wait)` says when to retry.
pub trait Limiter: Send + Sync {
    fn check(&self, plan: &str, class: RouteClass, key: &str) -> Result<(), Duration>;
}

type Keyed<C> =
    RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters of every plan and class.
pub struct RateLimits<C: Clock = DefaultClock> {
    limiters: HashMap<(String, RouteClass), Keyed<C>>,
    fallback: String,
    checks: AtomicU64,
}

fn quota(limit: Limit) -> Quota {
    let per_minute = NonZeroU32::new(limit.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

impl RateLimits<DefaultClock> {
    pub fn new(plans: &HashMap<String, ClassLimits>, fallback: &str) -> Self {
        Self::with_clock(plans, fallback, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// `fallback`: the plan whose limits apply to a plan name without any.
    pub fn with_clock(plans: &HashMap<String, ClassLimits>, fallback: &str, clock: C) -> Self {
        let mut limiters = HashMap::new();
        for (plan, limits) in plans {
            for class in [RouteClass::Create, RouteClass::Reveal, RouteClass::Other] {
                let limiter =
                    RateLimiter::dashmap_with_clock(quota(limits.get(class)), clock.clone());
                limiters.insert((plan.clone(), class), limiter);
            }
        }
        Self {
            limiters,
            fallback: fallback.to_owned(),
            checks: AtomicU64::new(0),
        }
    }
}

impl<C: Clock + Send + Sync> Limiter for RateLimits<C>
where
    C::Instant: Send + Sync,
{
    fn check(&self, plan: &str, class: RouteClass, key: &str) -> Result<(), Duration> {
        let limiter = self
            .limiters
            .get(&(plan.to_owned(), class))
            .or_else(|| self.limiters.get(&(self.fallback.clone(), class)));
        let Some(limiter) = limiter else {
            return Ok(());
        };
        // Forget idle keys now and then, so memory follows the active clients only.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            for l in self.limiters.values() {
                l.retain_recent();
            }
        }
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(limiter_clock_now(limiter)))
    }
}

fn limiter_clock_now<C: Clock>(limiter: &Keyed<C>) -> C::Instant {
    limiter.clock().now()
}

/// No limits at all (tests that are not about limits, benchmarks of the ceiling).
pub struct Unlimited;

impl Limiter for Unlimited {
    fn check(&self, _: &str, _: RouteClass, _: &str) -> Result<(), Duration> {
        Ok(())
    }
}
