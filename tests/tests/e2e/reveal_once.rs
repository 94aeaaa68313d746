//! Reveal exactly once through the real binary: 256 concurrent reveals of one secret, on one
//! SQLite server and split across two server processes sharing one Postgres database.

use ots_tests::{fresh_database, Config, Server, TempDir};

/// Fires 256 concurrent reveals of `key`, alternating between `urls`; returns the values got.
async fn reveal_256(urls: &[String], key: &str) -> Vec<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let url = format!("{}/api/v1/secret/{key}", urls[i % urls.len()]);
            let client = client.clone();
            tokio::spawn(async move {
                let resp = client.post(url).send().await.expect("request");
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.expect("JSON");
                (status, body)
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => values.push(body["value"].as_str().unwrap().to_owned()),
            404 => assert_eq!(body["message"], "Unknown secret"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    values
}

/// Shares `value` through the generated client; returns its secret key.
async fn share(url: &str, value: &str) -> String {
    let body = ots_client::types::ShareParams {
        secret: value.parse().unwrap(),
        passphrase: None,
        ttl: None,
        recipient: None,
    };
    let shared = ots_client::connect(url, None)
        .unwrap()
        .share_secret(&body)
        .await
        .expect("share");
    shared.into_inner().secret_key.expect("a new secret's key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_server_reveals_once_under_256_concurrent_requests() {
    let data = TempDir::new("once-sqlite");
    let server = Server::start(&Config::sqlite(&data.0)).await;
    let urls = vec![server.url("")];
    for round in 0..3 {
        let key = share(&urls[0], &format!("value {round}")).await;
        assert_eq!(
            reveal_256(&urls, &key).await,
            vec![format!("value {round}")],
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_reveal_once() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (a_dir, b_dir) = (TempDir::new("once-pg-a"), TempDir::new("once-pg-b"));
    let a = Server::start(&Config::postgres(&a_dir.0, &db.url)).await;
    let b = Server::start(&Config::postgres(&b_dir.0, &db.url)).await;
    let urls = vec![a.url(""), b.url("")];
    for round in 0..5 {
        // Shared on one process, revealed through both.
        let key = share(&urls[round % 2], &format!("pg value {round}")).await;
        assert_eq!(
            reveal_256(&urls, &key).await,
            vec![format!("pg value {round}")],
            "round {round}"
        );
    }
    drop((a, b));
    db.drop_database().await;
}
