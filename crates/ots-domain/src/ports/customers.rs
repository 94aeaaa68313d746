//! Customer accounts and their API tokens.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::*;

/// Where customer accounts and their API tokens live.
#[async_trait]
pub trait CustomerRepository: Send + Sync {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError>;
    /// MUST fail with [`StoreError::Conflict`] when the custid exists.
    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError>;
    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError>;
    /// Returns whether the customer existed.
    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError>;
    /// Removes the customer and all its tokens. Returns whether it existed.
    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError>;
    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError>;
    /// The hashes of the customer's live tokens; the caller compares in constant time.
    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError>;
    /// Revokes the tokens whose prefix starts with `prefix`; returns how many.
    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError>;
}

#[async_trait]
impl<T: CustomerRepository + ?Sized> CustomerRepository for Arc<T> {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        (**self).find_customer(custid).await
    }
    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        (**self).add_customer(customer).await
    }
    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        (**self).list_customers().await
    }
    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        (**self).set_plan(custid, plan).await
    }
    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        (**self).remove_customer(custid).await
    }
    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        (**self).add_token(custid, token).await
    }
    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        (**self).tokens(custid).await
    }
    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError> {
        (**self).revoke_tokens(custid, prefix).await
    }
}
