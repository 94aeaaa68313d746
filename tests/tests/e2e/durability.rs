//! What was acknowledged survives a SIGKILL: SQLite (the default) and Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ots_tests::{fresh_database, Config, Server, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_keeps_every_unread_secret_readable_once() {
    let data = TempDir::new("restart-sqlite");
    let server = Server::start(&Config::sqlite(&data.0)).await;
    let client = reqwest::Client::new();
    let mut shared = Vec::new();
    for i in 0..20 {
        let passphrase = if i % 2 == 0 { "pp" } else { "" };
        let (status, body) = crate::post_form(
            &client,
            &server.url("/api/v1/share"),
            &[("secret", &format!("v{i}")), ("passphrase", passphrase)],
        )
        .await;
        assert_eq!(status, 200);
        shared.push((
            body["secret_key"].as_str().unwrap().to_owned(),
            format!("v{i}"),
            passphrase,
        ));
    }
    let server = server.restart_after_kill().await;
    for (key, value, passphrase) in &shared {
        let url = server.url(&format!("/api/v1/secret/{key}"));
        let (status, body) = crate::post_form(&client, &url, &[("passphrase", passphrase)]).await;
        assert_eq!(
            (status, body["value"].as_str()),
            (200, Some(value.as_str())),
            "{body}"
        );
        let (status, _) = crate::post_form(&client, &url, &[("passphrase", passphrase)]).await;
        assert_eq!(status, 404);
    }
}

#[derive(Default)]
struct Ledger {
    /// Acknowledged shares not yet revealed: key → value.
    unread: HashMap<String, String>,
    /// Reveals whose answer never came: their secret may or may not be gone.
    uncertain: Vec<String>,
    acknowledged: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sigkill_mid_stream_loses_no_acknowledged_share() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let data = TempDir::new("kill-pg");
    let server = Server::start(&Config::postgres(&data.0, &db.url)).await;
    drop(kill_mid_stream(server, 4).await);
    db.drop_database().await;
}

/// SQLite commits writes in groups: with many clients a group holds many shares, and each
/// is acknowledged only once its group is durable, so a SIGKILL loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigkill_mid_stream_loses_no_acknowledged_share() {
    let data = TempDir::new("kill-sqlite");
    let server = Server::start(&Config::sqlite(&data.0)).await;
    drop(kill_mid_stream(server, 16).await);
}

/// Clients share (and reveal every third) in a stream; the server is SIGKILLed mid-stream
/// and restarted; every acknowledged share that was not revealed must reveal once.
async fn kill_mid_stream(server: Server, clients: usize) -> Server {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1024);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The clients share and reveal in a stream until the server dies under them.
    let mut workers = Vec::new();
    for w in 0..clients {
        let (ledger, tx, base, stop) = (ledger.clone(), tx.clone(), server.url(""), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..10_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let value = format!("w{w}-{i}");
                let Ok(resp) = client
                    .post(format!("{base}/api/v1/share"))
                    .form(&[("secret", &value)])
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                let key = body["secret_key"]
                    .as_str()
                    .expect("share answered")
                    .to_owned();
                {
                    let mut l = ledger.lock().unwrap();
                    l.unread.insert(key.clone(), value);
                    l.acknowledged += 1;
                }
                let _ = tx.send(()).await;
                if i % 3 == 0 {
                    // Reveal what was just shared; if no answer comes, the outcome is unknown.
                    ledger.lock().unwrap().uncertain.push(key.clone());
                    let Ok(resp) = client
                        .post(format!("{base}/api/v1/secret/{key}"))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(body) = resp.json::<serde_json::Value>().await else {
                        return;
                    };
                    let mut l = ledger.lock().unwrap();
                    l.uncertain.retain(|k| k != &key);
                    assert!(body["value"].is_string(), "a fresh secret reveals: {body}");
                    l.unread.remove(&key);
                }
            }
        }));
    }
    drop(tx);
    for _ in 0..150 {
        rx.recv().await.expect("the stream is running");
    }
    // /metrics counts the store's commits and the writes they carried: every share
    // acknowledged so far among them.
    let acknowledged = ledger.lock().unwrap().acknowledged as u64;
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics text");
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{metrics}"))
    };
    let (batches, writes) = (
        counter("ots_store_write_batches_total"),
        counter("ots_store_batched_writes_total"),
    );
    assert!(
        writes >= acknowledged && (1..=writes).contains(&batches),
        "{acknowledged} shares acknowledged, {writes} writes in {batches} batches"
    );
    // And how long they took to commit: every batch that has answered, timed once (one
    // still running is counted in the batches, not yet here).
    let timed = counter("ots_store_batch_seconds_count");
    assert!(
        (1..=batches).contains(&timed),
        "{timed} batches timed of {batches}"
    );
    assert_eq!(
        counter(r#"ots_store_batch_seconds_bucket{le="+Inf"}"#),
        timed
    );
    // And each write from its queue to its answer, timed before it is answered: every
    // acknowledged share among them.
    let answered = counter("ots_store_write_seconds_count");
    assert!(
        (acknowledged..=writes).contains(&answered),
        "{answered} writes timed, {acknowledged} shares acknowledged, {writes} writes"
    );
    assert_eq!(
        counter(r#"ots_store_write_seconds_bucket{le="+Inf"}"#),
        answered
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let server = server.restart_after_kill().await;
    for worker in workers {
        worker.await.expect("worker ended without panicking");
    }

    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    assert!(ledger.acknowledged >= 150);
    let client = reqwest::Client::new();
    for (key, value) in &ledger.unread {
        if ledger.uncertain.contains(key) {
            continue;
        }
        let url = server.url(&format!("/api/v1/secret/{key}"));
        let (status, body) = crate::post_form(&client, &url, &[]).await;
        assert_eq!(
            (status, body["value"].as_str()),
            (200, Some(value.as_str())),
            "acknowledged share {key} lost: {body}"
        );
        let (status, _) = crate::post_form(&client, &url, &[]).await;
        assert_eq!(status, 404, "revealed twice");
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_keeps_unread_secrets() {
    let data = TempDir::new("sigterm");
    let config = Config::sqlite(&data.0);
    let mut server = Server::start(&config).await;
    let client = reqwest::Client::new();
    let (_, body) = crate::post_form(
        &client,
        &server.url("/api/v1/share"),
        &[("secret", "kept across a clean stop")],
    )
    .await;
    let key = body["secret_key"].as_str().unwrap().to_owned();
    assert_eq!(
        server.terminate(),
        Some(0),
        "a clean exit: {}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(
        log.contains("shutting down") && log.contains("ots stopped"),
        "{log}"
    );
    drop(server);
    // A clean stop copies the log into the database file: that one file, as a backup of it
    // alone would keep, holds every secret.
    let wal = data.0.join("ots.db-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the log is empty or gone after a clean stop");
    for leftover in ["ots.db-wal", "ots.db-shm"] {
        let _ = std::fs::remove_file(data.0.join(leftover));
    }
    let server = Server::start(&config).await;
    let (status, body) =
        crate::post_form(&client, &server.url(&format!("/api/v1/secret/{key}")), &[]).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("kept across a clean stop"))
    );
}

/// SIGTERM stops the accepting at once, and a request already in flight still gets its
/// answer: each HTTP worker finishes what it holds (within `OTS_SHUTDOWN_GRACE`) before the
/// process exits. The request is a share with a passphrase at a bcrypt cost that keeps it
/// busy for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish() {
    let data = TempDir::new("sigterm-in-flight");
    let mut config = Config::sqlite(&data.0);
    config.set("OTS_BCRYPT_COST", "14");
    let mut server = Server::start(&config).await;
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/api/v1/share"));
        async move {
            crate::post_form(
                &client,
                &url,
                &[
                    ("secret", "answered after SIGTERM"),
                    ("passphrase", "a slow hash"),
                ],
            )
            .await
        }
    });
    // The request is on its way long before this.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.signal_term();
    server
        .wait_for_log("shutting down", std::time::Duration::from_secs(10))
        .await;
    assert!(
        !slow.is_finished(),
        "the share was answered before SIGTERM, so nothing was in flight: raise the bcrypt cost"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the request in flight was cut off: {body}");
    assert!(body["secret_key"].is_string(), "{body}");
    assert_eq!(server.wait_exit(), Some(0), "{}", server.log_text());
    assert!(server.log_text().contains("ots stopped"));
}
