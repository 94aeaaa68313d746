//! Customer accounts and the hashes of their API tokens.

use async_trait::async_trait;

use ots_domain::*;

use crate::rows::{self, CUSTOMER_COLUMNS};
use crate::{store_err, Arg, Dialect, SqlStore};

impl<D: Dialect> SqlStore<D> {
    /// Runs one change on the writer and says how many rows it touched.
    async fn change(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        D::execute(&mut conn, sql, args)
            .await
            .map_err(store_err::<D>)
    }
}

#[async_trait]
impl<D: Dialect> CustomerRepository for SqlStore<D> {
    async fn find_customer(&self, custid: &CustId) -> Result<Option<Customer>, StoreError> {
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE custid = $1");
        let mut conn = self.read().await?;
        D::fetch_optional(&mut conn, &sql, vec![Arg::Text(custid.as_str())])
            .await
            .map_err(store_err::<D>)?
            .as_ref()
            .map(rows::customer::<D>)
            .transpose()
    }

    async fn add_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES ($1, $2, $3, $4)");
        let args = vec![
            Arg::Text(customer.custid.as_str()),
            Arg::MaybeText(customer.email.as_deref()),
            Arg::Text(&customer.plan),
            Arg::Int(customer.created),
        ];
        self.change(&sql, args).await.map(|_| ())
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, StoreError> {
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY custid");
        let mut conn = self.read().await?;
        D::fetch_all(&mut conn, &sql, vec![])
            .await
            .map_err(store_err::<D>)?
            .iter()
            .map(rows::customer::<D>)
            .collect()
    }

    async fn set_plan(&self, custid: &CustId, plan: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE customers SET plan = $1 WHERE custid = $2";
        let changed = self
            .change(sql, vec![Arg::Text(plan), Arg::Text(custid.as_str())])
            .await?;
        Ok(changed > 0)
    }

    async fn remove_customer(&self, custid: &CustId) -> Result<bool, StoreError> {
        let sql = "DELETE FROM customers WHERE custid = $1";
        Ok(self.change(sql, vec![Arg::Text(custid.as_str())]).await? > 0)
    }

    async fn add_token(&self, custid: &CustId, token: &StoredToken) -> Result<(), StoreError> {
        let sql = "INSERT INTO api_tokens (custid, prefix, hash, created) VALUES ($1, $2, $3, $4)";
        let args = vec![
            Arg::Text(custid.as_str()),
            Arg::Text(&token.prefix),
            Arg::Bytes(&token.hash),
            Arg::Int(token.created),
        ];
        self.change(sql, args).await.map(|_| ())
    }

    async fn tokens(&self, custid: &CustId) -> Result<Vec<StoredToken>, StoreError> {
        let sql = "SELECT prefix, hash, created FROM api_tokens WHERE custid = $1";
        let mut conn = self.read().await?;
        D::fetch_all(&mut conn, sql, vec![Arg::Text(custid.as_str())])
            .await
            .map_err(store_err::<D>)?
            .iter()
            .map(rows::token::<D>)
            .collect()
    }

    async fn revoke_tokens(&self, custid: &CustId, prefix: &str) -> Result<u64, StoreError> {
        let sql = "DELETE FROM api_tokens WHERE custid = $1 AND substr(prefix, 1, length($2)) = $2";
        self.change(sql, vec![Arg::Text(custid.as_str()), Arg::Text(prefix)])
            .await
    }
}
