//! Recipient mail through a real SMTP server on loopback: the link arrives (never the value)
//! and opens the secret; an SMTP outage loses nothing and sends once; a secret read before its
//! mail goes out is not mailed.

use std::time::Duration;

use ots_tests::smtp::SmtpSink;
use ots_tests::{free_port, Config, Server, TempDir};

fn mail_config(data: &TempDir, smtp_port: u16, server_port: u16) -> Config {
    let mut config = Config::sqlite(&data.0);
    config.set("OTS_SMTP_URL", &format!("smtp://127.0.0.1:{smtp_port}"));
    config.set("OTS_MAIL_FROM", "ots <noreply@ots.test>");
    config.set("OTS_PUBLIC_URL", &format!("http://127.0.0.1:{server_port}"));
    config.set("OTS_MAIL_POLL_MS", "100");
    config
}

/// The `/secret/KEY` link in a delivered message (undoing quoted-printable soft breaks).
fn link_key(data: &str) -> String {
    let flat = data.replace("=\n", "");
    let at = flat.find("/secret/").expect("a link in the message") + "/secret/".len();
    flat[at..at + 31].to_owned()
}

async fn share_to(server: &Server, secret: &str, recipient: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let (status, body) = crate::post_form(
        &client,
        &server.url("/api/v1/share"),
        &[("secret", secret), ("recipient", recipient)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipient_gets_a_link_that_reveals_the_secret() {
    let sink = SmtpSink::start(0).await;
    let data = TempDir::new("mail");
    let port = free_port();
    let server = Server::start_on(&mail_config(&data, sink.port, port), port).await;

    let body = share_to(&server, "the launch code", "jane.doe@example.com").await;
    assert_eq!(body["recipient"], serde_json::json!(["ja***@ex***.com"]));
    let message = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert!(message.rcpt_to[0].contains("jane.doe@example.com"));
    assert!(message.mail_from.contains("noreply@ots.test"));
    assert!(
        message.data.contains("Subject: Someone sent you a secret"),
        "{}",
        message.data
    );
    assert!(message.data.contains("text/plain") && message.data.contains("text/html"));
    assert!(!message.data.contains("launch code"), "never the value");
    let key = link_key(&message.data);
    assert_eq!(key, body["secret_key"].as_str().unwrap());
    assert!(message
        .data
        .contains(&format!("http://127.0.0.1:{port}/secret/")));

    let client = reqwest::Client::new();
    let (status, secret) =
        crate::post_form(&client, &server.url(&format!("/api/v1/secret/{key}")), &[]).await;
    assert_eq!(
        (status, secret["value"].as_str()),
        (200, Some("the launch code"))
    );
    assert!(
        !server.log_text().contains("jane.doe@example.com"),
        "logs never hold the address in full"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_loses_nothing_and_the_mail_arrives_once() {
    let smtp_port = free_port();
    let data = TempDir::new("mail-outage");
    let port = free_port();
    let server = Server::start_on(&mail_config(&data, smtp_port, port), port).await;

    share_to(&server, "patience", "joe@example.com").await;
    server
        .wait_for_log("sending mail failed", Duration::from_secs(20))
        .await;
    let sink = SmtpSink::start(smtp_port).await;
    let got = sink.wait_for(1, Duration::from_secs(30)).await;
    assert!(got[0].rcpt_to[0].contains("joe@example.com"));
    // Several more poll rounds: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.received().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_a_secret_already_read_is_dropped() {
    let smtp_port = free_port();
    let data = TempDir::new("mail-drop");
    let port = free_port();
    let server = Server::start_on(&mail_config(&data, smtp_port, port), port).await;

    let body = share_to(&server, "too late", "kim@example.com").await;
    server
        .wait_for_log("sending mail failed", Duration::from_secs(20))
        .await;
    let key = body["secret_key"].as_str().unwrap();
    let (status, _) = crate::post_form(
        &reqwest::Client::new(),
        &server.url(&format!("/api/v1/secret/{key}")),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let sink = SmtpSink::start(smtp_port).await;
    server
        .wait_for_log("mail dropped", Duration::from_secs(30))
        .await;
    assert!(
        sink.received().is_empty(),
        "a read secret's mail is not sent"
    );
}
