//! Adapters of the mailer port.

use async_trait::async_trait;
use ots_domain::{obfuscate_email, Mailer, SecretLinkMail};

/// Writes a log line instead of sending mail: for development and for deployments without
/// SMTP. The line names the recipient obfuscated and never the link (the key is a capability).
#[derive(Clone, Debug, Default)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String> {
        tracing::info!(
            to = %obfuscate_email(&mail.to),
            from = %mail.from_custid,
            "mail not sent (no SMTP configured): a secret link for the recipient"
        );
        Ok(())
    }
}
