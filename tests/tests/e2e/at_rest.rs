//! A copy of the database opens nothing: after anonymous and customer shares, with and
//! without passphrases, with recipients, and by generate, the raw store (SQLite's files, WAL
//! included; a `pg_dump`) holds none of the keys, values, passphrases, tokens or addresses,
//! raw or in hex, and no 31-character base-36 string in it reaches a secret through the API.

use std::collections::BTreeSet;

use ots_tests::{fresh_database, Config, Server, TempDir};
use serde_json::Value;

/// What the scenario handed to the server or got back: none of it may be in the store.
struct Needles {
    /// Secret and metadata keys.
    keys: Vec<String>,
    /// Values, passphrases, the API token, recipient addresses.
    secrets: Vec<String>,
}

const TOKEN_USER: &str = "alice";

/// One share: the route, whether as the customer, and the form.
type Share = (&'static str, bool, &'static [(&'static str, &'static str)]);

/// Creates a customer with a token, then shares every kind of secret through the API.
async fn populate(config: &Config, server: &Server) -> Needles {
    let (code, _, err) = config.run(&["customer", "add", TOKEN_USER], "");
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = config.run(&["token", "issue", TOKEN_USER], "");
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let client = reqwest::Client::new();
    let mut needles = Needles {
        keys: Vec::new(),
        secrets: vec![token.clone()],
    };
    let shares: [Share; 6] = [
        ("/api/v1/share", false, &[("secret", "anon plain value")]),
        (
            "/api/v1/share",
            false,
            &[
                ("secret", "anon guarded value"),
                ("passphrase", "anon passphrase"),
            ],
        ),
        (
            "/api/v1/share",
            true,
            &[
                ("secret", "customer guarded value"),
                ("passphrase", "customer passphrase"),
                ("recipient", "jane.doe@example.com"),
            ],
        ),
        ("/api/v1/share", true, &[("secret", "customer plain value")]),
        (
            "/api/v1/generate",
            true,
            &[("passphrase", "generated passphrase")],
        ),
        (
            "/api/v1/generate",
            false,
            &[("recipient", "bob.smith@example.org")],
        ),
    ];
    for (path, as_customer, form) in shares {
        let mut req = client.post(server.url(path)).form(form);
        if as_customer {
            req = req.basic_auth(TOKEN_USER, Some(&token));
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        for field in ["secret_key", "metadata_key"] {
            needles.keys.push(body[field].as_str().unwrap().to_owned());
        }
        if let Some(value) = body["value"].as_str() {
            needles.secrets.push(value.to_owned());
        }
        needles
            .secrets
            .extend(form.iter().map(|(_, v)| v.to_string()));
    }
    // One read, one burn: received and burned metadata are in the store too.
    let read = &needles.keys[0];
    let resp = client
        .post(server.url(&format!("/api/v1/secret/{read}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let burn = &needles.keys[7];
    let resp = client
        .post(server.url(&format!("/api/v1/private/{burn}/burn")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    needles
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every string of 31 base-36 characters in `dump` (each window of longer runs too).
fn key_shaped(dump: &[u8]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let is_base36 = |b: &u8| b.is_ascii_digit() || b.is_ascii_lowercase();
    for run in dump.split(|b| !is_base36(b)).filter(|r| r.len() >= 31) {
        for window in run.windows(31) {
            found.insert(String::from_utf8(window.to_vec()).unwrap());
        }
    }
    found
}

/// The dump holds no needle, raw or hex; every key-shaped string in it is unknown to the API.
async fn assert_opens_nothing(dump: &[u8], needles: &Needles, server: &Server) {
    let text = String::from_utf8_lossy(dump).to_lowercase();
    for needle in needles.keys.iter().chain(&needles.secrets) {
        let lower = needle.to_lowercase();
        assert!(!text.contains(&lower), "{needle:?} is in the store");
        assert!(
            !text.contains(&hex(needle.as_bytes())),
            "{needle:?} is in the store in hex"
        );
    }
    let candidates = key_shaped(dump);
    assert!(
        !candidates.is_empty(),
        "the dump holds digests, so it has key-shaped strings to try"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();
    let candidates: Vec<String> = candidates.into_iter().collect();
    for chunk in candidates.chunks(32) {
        let tries: Vec<_> = chunk
            .iter()
            .flat_map(|s| {
                [
                    format!("/api/v1/secret/{s}"),
                    format!("/api/v1/private/{s}"),
                ]
            })
            .map(|path| {
                let (client, url) = (client.clone(), server.url(&path));
                tokio::spawn(async move {
                    let status = client.get(&url).send().await.expect("request").status();
                    (url, status.as_u16())
                })
            })
            .collect();
        for attempt in tries {
            let (url, status) = attempt.await.unwrap();
            assert_eq!(status, 404, "{url} reached something");
        }
    }
}

fn read_sqlite_files(data: &TempDir) -> Vec<u8> {
    let mut dump = Vec::new();
    for name in ["ots.db", "ots.db-wal", "ots.db-shm"] {
        if let Ok(bytes) = std::fs::read(data.0.join(name)) {
            dump.extend(bytes);
        }
    }
    assert!(dump.len() > 4096, "the SQLite files were read");
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_of_the_sqlite_files_opens_nothing() {
    let data = TempDir::new("at-rest-sqlite");
    let config = Config::sqlite(&data.0);
    let server = Server::start(&config).await;
    let needles = populate(&config, &server).await;
    // While the server runs (recent pages in the WAL), then after it stops (checkpointed).
    assert_opens_nothing(&read_sqlite_files(&data), &needles, &server).await;
    drop(server);
    let dump = read_sqlite_files(&data);
    let server = Server::start(&config).await;
    assert_opens_nothing(&dump, &needles, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pg_dump_opens_nothing() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let data = TempDir::new("at-rest-pg");
    let config = Config::postgres(&data.0, &db.url);
    let server = Server::start(&config).await;
    let needles = populate(&config, &server).await;
    let out = std::process::Command::new("pg_dump")
        .arg(&db.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("COPY public.metadata"));
    assert_opens_nothing(&out.stdout, &needles, &server).await;
    drop(server);
    db.drop_database().await;
}
