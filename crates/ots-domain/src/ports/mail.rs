//! Sending mail about secrets.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{CustId, SecretKey};

/// A message telling a recipient that a secret waits for them. Carries the key, never the
/// value: the adapter turns the key into a link.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretLinkMail {
    pub to: String,
    pub from_custid: CustId,
    pub secret_key: SecretKey,
}

/// Sends mail about secrets.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String>;
}

#[async_trait]
impl<T: Mailer + ?Sized> Mailer for Arc<T> {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String> {
        (**self).send(mail).await
    }
}
