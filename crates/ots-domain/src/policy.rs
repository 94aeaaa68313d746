//! The rules an operator can tune. Plans arrive here as plain values from the binary's
//! configuration.

use tracing::warn;

use crate::model::{Customer, Plan, Ttl};

/// The rules an operator can tune. Plans arrive here as plain values from the binary's config.
#[derive(Clone, Debug)]
pub struct Policy {
    /// ttl when the request names none (seconds).
    pub default_ttl: i64,
    /// Shortest ttl granted (seconds); shorter requests are raised to it.
    pub min_ttl: i64,
    /// Failed passphrase tries after which a secret is burned.
    pub max_passphrase_tries: u32,
    pub bcrypt_cost: u32,
    /// Passphrase hashes computed at once (each takes a core for its duration).
    pub bcrypt_concurrency: usize,
    /// The plan of requests without credentials.
    pub anonymous_plan: Plan,
    /// Plans customers can be on.
    pub plans: Vec<Plan>,
    /// The plan of a customer whose plan name is not (or no longer) configured.
    pub default_plan: String,
    /// Whether `recipient` needs an account.
    pub require_account_for_email: bool,
    /// Most items `recent` returns.
    pub recent_limit: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_ttl: 7 * 24 * 3600,
            min_ttl: 60,
            max_passphrase_tries: 10,
            bcrypt_cost: 12,
            bcrypt_concurrency: default_bcrypt_concurrency(),
            anonymous_plan: Plan::anonymous(),
            plans: vec![Plan::basic()],
            default_plan: "basic".into(),
            require_account_for_email: false,
            recent_limit: 100,
        }
    }
}

impl Policy {
    /// The plan a customer is on; an unknown name falls back to the default plan.
    pub fn plan_for(&self, customer: &Customer) -> Plan {
        let find = |name: &str| self.plans.iter().find(|p| p.name == name).cloned();
        find(&customer.plan)
            .or_else(|| {
                warn!(custid = %customer.custid, plan = %customer.plan, "unknown plan, using the default");
                find(&self.default_plan)
            })
            .unwrap_or_else(Plan::basic)
    }

    /// Absent: the default; below the minimum: raised; above the plan's maximum: clamped.
    pub fn grant_ttl(&self, requested: Option<Ttl>, plan: &Plan) -> i64 {
        let ttl = requested.map_or(self.default_ttl, Ttl::seconds);
        ttl.min(plan.max_ttl).max(self.min_ttl)
    }
}

/// Cores bcrypt may use at once: all but one (at least one).
pub fn default_bcrypt_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_defaulted_raised_and_clamped() {
        let policy = Policy::default();
        let plan = Plan::anonymous();
        assert_eq!(policy.grant_ttl(None, &plan), 7 * 24 * 3600);
        assert_eq!(policy.grant_ttl(Some(Ttl::from_seconds(5)), &plan), 60);
        assert_eq!(policy.grant_ttl(Some(Ttl::from_seconds(-5)), &plan), 60);
        assert_eq!(
            policy.grant_ttl(Some(Ttl::from_seconds(10 * 86_400)), &plan),
            7 * 86_400
        );
        assert_eq!(policy.grant_ttl(Some(Ttl::from_seconds(3600)), &plan), 3600);
    }

    #[test]
    fn an_unknown_plan_falls_back_to_the_default() {
        let policy = Policy::default();
        let customer = Customer {
            custid: crate::CustId::parse("alice").unwrap(),
            email: None,
            plan: "gone".into(),
            created: 0,
        };
        assert_eq!(policy.plan_for(&customer), Plan::basic());
    }
}
