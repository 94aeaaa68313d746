//! Rate limits per route class, per client address (anonymous requests) or per customer,
//! with quotas from the caller's plan. GCRA through `governor`, one keyed limiter per plan
//! and class, in this process's memory.

use std::collections::HashMap;
use std::net::IpAddr;
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

impl RouteClass {
    const ALL: [Self; 3] = [Self::Create, Self::Reveal, Self::Other];

    fn index(self) -> usize {
        self as usize
    }
}

/// Whose requests a limit counts: a client by its address (anonymous requests and failed
/// logins) or a customer. Kept as it is, not formatted into a string, so a request's check
/// neither formats nor allocates for an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    Address(IpAddr),
    /// What a trusted proxy's header gave that is not an IP address, as given.
    OtherAddress(String),
    Customer(String),
}

/// Decides whether a request may go on; `Err(wait)` says when to retry.
pub trait Limiter: Send + Sync {
    fn check(&self, plan: &str, class: RouteClass, key: &RateKey) -> Result<(), Duration>;
}

type Keyed<C> =
    RateLimiter<RateKey, DashMapStateStore<RateKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters of every plan, one per route class.
pub struct RateLimits<C: Clock = DefaultClock> {
    limiters: HashMap<String, [Keyed<C>; 3]>,
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
        let limiters = plans
            .iter()
            .map(|(plan, limits)| {
                let of = |class| {
                    RateLimiter::dashmap_with_clock(quota(limits.get(class)), clock.clone())
                };
                (plan.clone(), RouteClass::ALL.map(of))
            })
            .collect();
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
    fn check(&self, plan: &str, class: RouteClass, key: &RateKey) -> Result<(), Duration> {
        let limiters = self
            .limiters
            .get(plan)
            .or_else(|| self.limiters.get(&self.fallback));
        let Some(limiter) = limiters.map(|l| &l[class.index()]) else {
            return Ok(());
        };
        // Forget idle keys now and then, so memory follows the active clients only.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            for l in self.limiters.values().flatten() {
                l.retain_recent();
            }
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter_clock_now(limiter)))
    }
}

fn limiter_clock_now<C: Clock>(limiter: &Keyed<C>) -> C::Instant {
    limiter.clock().now()
}

/// No limits at all (tests that are not about limits, benchmarks of the ceiling).
pub struct Unlimited;

impl Limiter for Unlimited {
    fn check(&self, _: &str, _: RouteClass, _: &RateKey) -> Result<(), Duration> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32) -> HashMap<String, ClassLimits> {
        let one = Limit {
            burst,
            per_minute: 1,
        };
        HashMap::from([(
            "anonymous".to_string(),
            ClassLimits {
                create: one,
                reveal: one,
                other: one,
            },
        )])
    }

    #[test]
    fn each_key_and_class_has_its_own_bucket_and_unknown_plans_fall_back() {
        let limits = RateLimits::new(&limits(1), "anonymous");
        let ip = RateKey::Address("192.0.2.7".parse().unwrap());
        assert!(limits.check("anonymous", RouteClass::Create, &ip).is_ok());
        let wait = limits
            .check("anonymous", RouteClass::Create, &ip)
            .unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        // Another class, another address, a customer or a proxy's non-address named alike:
        // each still has its first request.
        assert!(limits.check("anonymous", RouteClass::Reveal, &ip).is_ok());
        let other = RateKey::Address("192.0.2.8".parse().unwrap());
        assert!(limits
            .check("anonymous", RouteClass::Create, &other)
            .is_ok());
        let customer = RateKey::Customer("192.0.2.7".into());
        assert!(limits
            .check("anonymous", RouteClass::Create, &customer)
            .is_ok());
        let raw = RateKey::OtherAddress("192.0.2.7".into());
        assert!(limits.check("anonymous", RouteClass::Create, &raw).is_ok());
        // A plan without limits of its own counts in the fallback's: the customer's one
        // request is spent.
        assert!(limits
            .check("basic", RouteClass::Create, &customer)
            .is_err());
    }
}
