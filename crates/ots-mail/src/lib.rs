//! Adapters of the mailer port: SMTP (lettre) and a log-only mailer for development.
//!
//! The message carries a link to the recipient's page for the secret and the sender's custid;
//! never the secret's value (the mailer is never given it).

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
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

/// Sends mail through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.email)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// `url`: `smtp://HOST:PORT` (plain), `smtp://USER:PASS@HOST:587?tls=starttls` (or
    /// `tls=required`; `tls=opportunistic` upgrades when offered), `smtps://USER:PASS@HOST`
    /// (TLS from the start). `from`: the sender address. `public_url`: the base of links.
    pub fn new(url: &str, from: &str, public_url: &str) -> Result<Self, String> {
        let url = url.replace("tls=starttls", "tls=required");
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|e| format!("invalid SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid sender address {from:?}: {e}"))?;
        Ok(Self {
            transport,
            from,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The link the recipient follows: the browser page, which never reveals on a plain GET.
    pub fn link(&self, mail: &SecretLinkMail) -> String {
        format!("{}/secret/{}", self.public_url, mail.secret_key)
    }

    /// The message for `mail`: plain-text and HTML parts, the link and the sender, no value.
    pub fn message(&self, mail: &SecretLinkMail) -> Result<Message, String> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid recipient: {e}"))?;
        let sender = if mail.from_custid.is_anonymous() {
            "Someone".to_owned()
        } else {
            mail.from_custid.to_string()
        };
        let link = self.link(mail);
        let plain = format!(
            "Hello,\n\n{sender} sent you a secret. It can be viewed once, then it is gone:\n\n\
             {link}\n\nIf you were not expecting it, you can ignore this message.\n"
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif\">\
             <p>Hello,</p><p><strong>{}</strong> sent you a secret. It can be viewed once, \
             then it is gone:</p><p><a href=\"{link}\">{link}</a></p>\
             <p>If you were not expecting it, you can ignore this message.</p></body></html>",
            html_escape(&sender)
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("{sender} sent you a secret"))
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|e| format!("building the message: {e}"))
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &SecretLinkMail) -> Result<(), String> {
        let message = self.message(mail)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_domain::{CustId, SecretKey};

    #[test]
    fn the_message_links_to_the_page_and_names_the_sender() {
        let mailer = SmtpMailer::new(
            "smtp://127.0.0.1:2525",
            "ots <ots@example.com>",
            "https://s.example.com/",
        )
        .unwrap();
        let mail = SecretLinkMail {
            to: "jane@example.com".into(),
            from_custid: CustId::parse("alice").unwrap(),
            secret_key: SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap(),
        };
        assert_eq!(
            mailer.link(&mail),
            "https://s.example.com/secret/153l8vbwqx5taskp92pf05uvgjefvu9"
        );
        let text = String::from_utf8(mailer.message(&mail).unwrap().formatted()).unwrap();
        assert!(text.contains("Subject: alice sent you a secret"));
        assert!(text.contains("text/plain") && text.contains("text/html"));
        assert!(text.contains("https://s.example.com/secret/153l8vbwqx5taskp92pf05uvgjefvu9"));
    }

    #[test]
    fn urls_and_senders_are_checked() {
        assert!(SmtpMailer::new(
            "smtp://u:p@mail.example.com:587?tls=starttls",
            "a@example.com",
            "http://x"
        )
        .is_ok());
        assert!(
            SmtpMailer::new("smtps://u:p@mail.example.com", "a@example.com", "http://x").is_ok()
        );
        assert!(SmtpMailer::new("http://mail.example.com", "a@example.com", "http://x").is_err());
        assert!(SmtpMailer::new("smtp://127.0.0.1:2525", "not an address", "http://x").is_err());
    }
}
