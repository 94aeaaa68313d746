//! A store written by the previous release (keys in the clear, schema at migration 3)
//! upgrades at start without loss: old links reveal, old metadata keys show and burn, a
//! customer's recent lists the old records, pending mail goes out with the right link; and
//! afterwards no row holds a key. The master secret is proved before serving: one that opens
//! nothing stops the server, and a rotation keeps old rows readable.

use std::borrow::Cow;
use std::time::Duration;

use ots_domain::crypto::{hash_passphrase, hash_token, seal_legacy_value};
use ots_domain::{random_string, MetadataKey, Passphrase, SecretKey, Sensitive, SystemRng};
use ots_tests::smtp::SmtpSink;
use ots_tests::{free_port, fresh_database, Config, Server, TempDir};
use serde_json::Value;

const MASTER: &str = "e2e-master-secret-0123456789abcdef";
const TOKEN: &str = "alice-token-0123456789";

/// One value bound to a statement of the previous release's schema.
enum Arg {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    MaybeInt(Option<i64>),
    Bytes(Vec<u8>),
    Bool(bool),
}

struct Statement(&'static str, Vec<Arg>);

/// The records the previous release would have written, with what they should show.
struct Legacy {
    statements: Vec<Statement>,
    /// anonymous, no passphrase, mail pending.
    mailed: (String, String),
    /// alice's, with a passphrase, one failed try already.
    guarded: (String, String),
    /// alice's, received before the upgrade.
    received: String,
    /// anonymous, no passphrase: to burn.
    to_burn: (String, String),
}

fn key() -> String {
    random_string(
        &SystemRng::new(),
        31,
        b"0123456789abcdefghijklmnopqrstuvwxyz",
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sealed(value: &str, sk: &str, mk: &str, passphrase: Option<&str>) -> Arg {
    Arg::Bytes(seal_legacy_value(
        MASTER.as_bytes(),
        &Sensitive::new(value),
        &SecretKey::parse(sk).unwrap(),
        &MetadataKey::parse(mk).unwrap(),
        passphrase.and_then(Passphrase::parse).as_ref(),
        &[1; 16],
        &[2; 12],
    ))
}

const METADATA: &str = "INSERT INTO metadata (key, custid, secret_key, ttl, state, created, \
     updated, received, burned, recipients, passphrase_required, secret_expires_at, \
     expires_at) VALUES ($1, $2, $3, 3600, $4, $5, $5, $6, NULL, $7, $8, $9, $10)";
const SECRET: &str = "INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, \
     passphrase_hash, failed_tries, created, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
     $8, $9)";

fn legacy() -> Legacy {
    let t = now();
    let (mailed, guarded, to_burn) = ((key(), key()), (key(), key()), (key(), key()));
    let received = key();
    let mut statements = vec![
        Statement(
            "INSERT INTO customers (custid, email, plan, created) VALUES ('alice', NULL, 'basic', $1)",
            vec![Arg::Int(t)],
        ),
        Statement(
            "INSERT INTO api_tokens (custid, prefix, hash, created) VALUES ('alice', $1, $2, $3)",
            vec![
                Arg::Text(TOKEN[..8].into()),
                Arg::Bytes(hash_token(TOKEN)),
                Arg::Int(t),
            ],
        ),
    ];
    // (secret key, metadata key, custid, created, recipients, passphrase, value, tries)
    let live = [
        (
            &mailed,
            "anon",
            t - 30,
            "jane.doe@example.com",
            None,
            "mailed value",
            0,
        ),
        (
            &guarded,
            "alice",
            t - 50,
            "",
            Some("old passphrase"),
            "guarded value",
            1,
        ),
        (&to_burn, "anon", t - 20, "", None, "value to burn", 0),
    ];
    for ((sk, mk), custid, created, recipients, passphrase, value, tries) in live {
        statements.push(Statement(
            METADATA,
            vec![
                Arg::Text(mk.clone()),
                Arg::Text(custid.into()),
                Arg::MaybeText(Some(sk.clone())),
                Arg::Text("new".into()),
                Arg::Int(created),
                Arg::MaybeInt(None),
                Arg::Text(recipients.into()),
                Arg::Bool(passphrase.is_some()),
                Arg::Int(created + 3600),
                Arg::Int(created + 7200),
            ],
        ));
        statements.push(Statement(
            SECRET,
            vec![
                Arg::Text(sk.clone()),
                Arg::Text(mk.clone()),
                sealed(value, sk, mk, passphrase),
                Arg::Bytes(vec![2; 12]),
                Arg::Bytes(vec![1; 16]),
                Arg::MaybeText(
                    passphrase.map(|p| hash_passphrase(&Passphrase::parse(p).unwrap(), 4).unwrap()),
                ),
                Arg::Int(tries),
                Arg::Int(created),
                Arg::Int(created + 3600),
            ],
        ));
    }
    statements.push(Statement(
        METADATA,
        vec![
            Arg::Text(received.clone()),
            Arg::Text("alice".into()),
            Arg::MaybeText(None),
            Arg::Text("received".into()),
            Arg::Int(t - 100),
            Arg::MaybeInt(Some(t - 90)),
            Arg::Text(String::new()),
            Arg::Bool(false),
            Arg::Int(t - 100 + 3600),
            Arg::Int(t - 100 + 7200),
        ],
    ));
    statements.push(Statement(
        "INSERT INTO outbox (id, metadata_key, recipient, from_custid, secret_key, attempts, \
         next_attempt_at) VALUES ('legacy-mail', $1, 'jane.doe@example.com', 'anon', $2, 0, $3)",
        vec![
            Arg::Text(mailed.1.clone()),
            Arg::Text(mailed.0.clone()),
            Arg::Int(t),
        ],
    ));
    Legacy {
        statements,
        mailed,
        guarded,
        received,
        to_burn,
    }
}

/// The previous release's migrations (all but this release's last).
fn previous_release(migrator: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    let count = migrator.iter().count();
    sqlx::migrate::Migrator {
        migrations: Cow::Owned(migrator.iter().take(count - 1).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// Runs the statements on a pool of either database (the SQL is the same).
macro_rules! write_legacy {
    ($pool:expr, $statements:expr) => {
        for Statement(sql, args) in $statements {
            let mut query = sqlx::query(sql);
            for arg in args {
                query = match arg {
                    Arg::Text(v) => query.bind(v),
                    Arg::MaybeText(v) => query.bind(v),
                    Arg::Int(v) => query.bind(v),
                    Arg::MaybeInt(v) => query.bind(v),
                    Arg::Bytes(v) => query.bind(v),
                    Arg::Bool(v) => query.bind(v),
                };
            }
            query.execute($pool).await.expect("write a legacy row");
        }
    };
}

async fn post(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    crate::post_form(&reqwest::Client::new(), &server.url(path), form).await
}

/// Through the upgraded server: every old key still does what it did.
async fn assert_upgraded(server: &Server, sink: &SmtpSink, legacy: &Legacy) {
    let (mailed_sk, mailed_mk) = &legacy.mailed;
    let message = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert!(message.rcpt_to[0].contains("jane.doe@example.com"));
    assert!(
        message.data.replace("=\n", "").contains(mailed_sk.as_str()),
        "the pending mail carries the old link"
    );
    let (status, md) = crate::get(
        &reqwest::Client::new(),
        &server.url(&format!("/api/v1/private/{mailed_mk}")),
    )
    .await;
    assert_eq!(status, 200, "{md}");
    assert_eq!(md["secret_key"], mailed_sk.as_str());
    assert_eq!(md["recipient"], serde_json::json!(["ja***@ex***.com"]));
    let (status, body) = post(server, &format!("/api/v1/secret/{mailed_sk}"), &[]).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("mailed value"))
    );

    let (guarded_sk, guarded_mk) = &legacy.guarded;
    let path = format!("/api/v1/secret/{guarded_sk}");
    let (status, body) = post(server, &path, &[("passphrase", "wrong")]).await;
    assert_eq!(
        (status, body["tries_left"].as_u64()),
        (403, Some(8)),
        "{body}"
    );
    let (status, body) = post(server, &path, &[("passphrase", "old passphrase")]).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("guarded value"))
    );

    let resp = reqwest::Client::new()
        .get(server.url("/api/v1/private/recent"))
        .basic_auth("alice", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recent: Value = resp.json().await.unwrap();
    let keys: Vec<&str> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metadata_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [guarded_mk.as_str(), legacy.received.as_str()]);
    assert_eq!(recent[0]["state"], "received");

    let (burn_sk, burn_mk) = &legacy.to_burn;
    let (status, body) = post(server, &format!("/api/v1/private/{burn_mk}/burn"), &[]).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("burned")));
    let (status, _) = post(server, &format!("/api/v1/secret/{burn_sk}"), &[]).await;
    assert_eq!(status, 404);
}

fn all_keys(legacy: &Legacy) -> Vec<&String> {
    let pairs = [&legacy.mailed, &legacy.guarded, &legacy.to_burn];
    let mut keys: Vec<&String> = pairs.iter().flat_map(|(a, b)| [a, b]).collect();
    keys.push(&legacy.received);
    keys
}

fn upgrade_config(data: &TempDir, url: Option<&str>, sink: &SmtpSink, port: u16) -> Config {
    let mut config = match url {
        Some(url) => Config::postgres(&data.0, url),
        None => Config::sqlite(&data.0),
    };
    config.set("OTS_SMTP_URL", &format!("smtp://127.0.0.1:{}", sink.port));
    config.set("OTS_MAIL_FROM", "ots <noreply@ots.test>");
    config.set("OTS_PUBLIC_URL", &format!("http://127.0.0.1:{port}"));
    config.set("OTS_MAIL_POLL_MS", "100");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_the_previous_release_upgrades_without_loss() {
    let data = TempDir::new("upgrade-sqlite");
    let path = data.0.join("ots.db");
    let mut legacy = legacy();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    previous_release(&ots_store_sqlite::MIGRATOR)
        .run(&pool)
        .await
        .unwrap();
    write_legacy!(&pool, std::mem::take(&mut legacy.statements));
    pool.close().await;

    let sink = SmtpSink::start(0).await;
    let port = free_port();
    let server = Server::start_on(&upgrade_config(&data, None, &sink, port), port).await;
    assert_upgraded(&server, &sink, &legacy).await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for (table, column) in [
        ("metadata", "key"),
        ("secrets", "key"),
        ("outbox", "metadata_key"),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE length({column}) <> 64");
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 0, "{table} rows are keyed by digests only");
    }
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT key || coalesce(secret_key, '') FROM metadata")
            .fetch_all(&pool)
            .await
            .unwrap();
    for key in all_keys(&legacy) {
        assert!(
            rows.iter().all(|r| !r.contains(key.as_str())),
            "{key} left in metadata"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_of_the_previous_release_upgrades_without_loss() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let mut legacy = legacy();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    previous_release(&ots_store_postgres::MIGRATOR)
        .run(&pool)
        .await
        .unwrap();
    write_legacy!(&pool, std::mem::take(&mut legacy.statements));

    let data = TempDir::new("upgrade-pg");
    let sink = SmtpSink::start(0).await;
    let port = free_port();
    let config = upgrade_config(&data, Some(&db.url), &sink, port);
    // `ots migrate` upgrades before any server starts.
    let (code, _, err) = config.run(&["migrate"], "");
    assert_eq!(code, 0, "{err}");
    let server = Server::start_on(&config, port).await;
    assert_upgraded(&server, &sink, &legacy).await;
    drop(server);

    let out = std::process::Command::new("pg_dump")
        .arg(&db.url)
        .output()
        .expect("pg_dump runs");
    let dump = String::from_utf8_lossy(&out.stdout);
    for key in all_keys(&legacy) {
        assert!(
            !dump.contains(key.as_str()),
            "{key} is still in the database"
        );
    }
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_secret_that_opens_nothing_stops_the_server_and_rotation_keeps_rows() {
    let data = TempDir::new("master-check");
    let mut config = Config::sqlite(&data.0);
    let server = Server::start(&config).await;
    let (status, shared) = post(
        &server,
        "/api/v1/share",
        &[("secret", "before the rotation")],
    )
    .await;
    assert_eq!(status, 200);
    drop(server);

    let new_secret = "a-new-master-secret-9876543210fedcba";
    config.set("OTS_SECRET", new_secret);
    let (code, _, err) = config
        .run_for(
            &["serve", "--listen", "127.0.0.1:0"],
            Duration::from_secs(60),
        )
        .expect("serve stops by itself");
    assert_ne!(
        code, 0,
        "serve must refuse a master secret that opens nothing"
    );
    assert!(err.contains("does not open this store"), "{err}");
    let (code, _, err) = config.run(&["config", "check"], "");
    assert_ne!(code, 0);
    assert!(err.contains("does not open this store"), "{err}");

    config.set("OTS_SECRET_PREVIOUS", MASTER);
    let (code, out, err) = config.run(&["config", "check"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("previous master secret number 1"), "{out}");
    let server = Server::start(&config).await;
    let key = shared["secret_key"].as_str().unwrap();
    let (status, body) = post(&server, &format!("/api/v1/secret/{key}"), &[]).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("before the rotation"))
    );
    let (status, fresh) = post(&server, "/api/v1/share", &[("secret", "after")]).await;
    assert_eq!(status, 200);
    drop(server);

    // The rotation is done: the check value and new rows are under the new secret alone.
    config.set("OTS_SECRET_PREVIOUS", "");
    let (code, out, err) = config.run(&["config", "check"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the current master secret"), "{out}");
    let server = Server::start(&config).await;
    let key = fresh["secret_key"].as_str().unwrap();
    let (status, body) = post(&server, &format!("/api/v1/secret/{key}"), &[]).await;
    assert_eq!((status, body["value"].as_str()), (200, Some("after")));
}
