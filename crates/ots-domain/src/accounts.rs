//! Customer administration: accounts, their plans and their API tokens.

use crate::clock::Clock;
use crate::crypto;
use crate::error::{OtsError, StoreError};
use crate::model::*;
use crate::policy::Policy;
use crate::ports::*;
use crate::random::{random_string, Rng};

/// Shortest prefix accepted to name a token to revoke.
pub const MIN_REVOKE_PREFIX: usize = 4;

/// The admin use cases, apart from the secret use cases: they need no master secret.
pub struct Accounts<S, C, K, R> {
    secrets: S,
    customers: C,
    clock: K,
    rng: R,
    policy: Policy,
}

impl<S, C, K, R> Accounts<S, C, K, R>
where
    S: SecretRepository,
    C: CustomerRepository,
    K: Clock,
    R: Rng,
{
    pub fn new(secrets: S, customers: C, clock: K, rng: R, policy: Policy) -> Self {
        Self {
            secrets,
            customers,
            clock,
            rng,
            policy,
        }
    }

    fn custid(raw: &str) -> Result<CustId, OtsError> {
        CustId::parse(raw).ok_or_else(|| {
            OtsError::Invalid(format!(
                "invalid custid {raw:?}: use 1-64 letters, digits or ._@+- (not `anon`)"
            ))
        })
    }

    fn check_plan(&self, plan: &str) -> Result<(), OtsError> {
        if self.policy.plans.iter().any(|p| p.name == plan) {
            Ok(())
        } else {
            let known: Vec<&str> = self.policy.plans.iter().map(|p| p.name.as_str()).collect();
            Err(OtsError::Invalid(format!(
                "unknown plan {plan:?}: configured plans are {}",
                known.join(", ")
            )))
        }
    }

    async fn existing(&self, raw: &str) -> Result<CustId, OtsError> {
        let custid = Self::custid(raw)?;
        match self.customers.find_customer(&custid).await? {
            Some(_) => Ok(custid),
            None => Err(OtsError::UnknownCustomer),
        }
    }

    /// Creates a customer on `plan` (or the default plan).
    pub async fn add_customer(
        &self,
        custid: &str,
        email: Option<&str>,
        plan: Option<&str>,
    ) -> Result<Customer, OtsError> {
        let custid = Self::custid(custid)?;
        let email = match email {
            Some(raw) => Some(Email::parse(raw).ok_or(OtsError::InvalidRecipient)?),
            None => None,
        };
        let plan = plan.unwrap_or(&self.policy.default_plan);
        self.check_plan(plan)?;
        let customer = Customer {
            custid,
            email: email.map(|e| e.as_str().to_owned()),
            plan: plan.to_owned(),
            created: self.clock.now(),
        };
        self.customers
            .add_customer(&customer)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    OtsError::Conflict(format!("customer {} already exists", customer.custid))
                }
                other => other.into(),
            })?;
        Ok(customer)
    }

    pub async fn list_customers(&self) -> Result<Vec<Customer>, OtsError> {
        Ok(self.customers.list_customers().await?)
    }

    pub async fn set_plan(&self, custid: &str, plan: &str) -> Result<(), OtsError> {
        self.check_plan(plan)?;
        let custid = Self::custid(custid)?;
        if self.customers.set_plan(&custid, plan).await? {
            Ok(())
        } else {
            Err(OtsError::UnknownCustomer)
        }
    }

    /// Removes a customer: its unread secrets are burned and its metadata forgotten first,
    /// then the account and its tokens. Returns how many secrets went.
    pub async fn remove_customer(&self, custid: &str) -> Result<u64, OtsError> {
        let custid = self.existing(custid).await?;
        let purged = self
            .secrets
            .purge_customer(&custid, self.clock.now())
            .await?;
        self.customers.remove_customer(&custid).await?;
        Ok(purged)
    }

    /// Issues a new API token (40 base-36 characters, 206 bits). It is returned once and
    /// stored only as a hash.
    pub async fn issue_token(&self, custid: &str) -> Result<String, OtsError> {
        let token = random_string(&self.rng, 40, KEY_ALPHABET).map_err(OtsError::Internal)?;
        self.import_token(custid, &token).await?;
        Ok(token)
    }

    /// Registers a token the customer already uses elsewhere (a move from another
    /// OneTimeSecret deployment keeps existing scripts working).
    pub async fn import_token(&self, custid: &str, token: &str) -> Result<(), OtsError> {
        if token.len() < 8 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(OtsError::Invalid(
                "a token needs at least 8 characters and no blanks".into(),
            ));
        }
        let custid = self.existing(custid).await?;
        let stored = StoredToken {
            prefix: token.chars().take(8).collect(),
            hash: crypto::hash_token(token),
            created: self.clock.now(),
        };
        self.customers
            .add_token(&custid, &stored)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => OtsError::Conflict(format!(
                    "{custid} already has a token starting with {:?}",
                    stored.prefix
                )),
                other => other.into(),
            })
    }

    /// Revokes the customer's tokens that start with `prefix` (at least 4 characters).
    pub async fn revoke_tokens(&self, custid: &str, prefix: &str) -> Result<u64, OtsError> {
        if prefix.len() < MIN_REVOKE_PREFIX {
            return Err(OtsError::Invalid(format!(
                "name the token by at least {MIN_REVOKE_PREFIX} leading characters"
            )));
        }
        let custid = self.existing(custid).await?;
        let prefix: String = prefix.chars().take(8).collect();
        Ok(self.customers.revoke_tokens(&custid, &prefix).await?)
    }
}
