//! The admin CLI against a store a server is using: customers, tokens, exit codes.

use ots_tests::{Config, Server, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_used_and_revoked_while_the_server_runs() {
    let data = TempDir::new("admin");
    let config = Config::sqlite(&data.0);
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();

    assert_eq!(
        config
            .run(
                &["customer", "add", "alice", "--email", "alice@example.com"],
                ""
            )
            .0,
        0
    );
    let (code, _, err) = config.run(&["customer", "add", "alice"], "");
    assert_eq!(code, 4, "duplicate: {err}");
    assert!(err.contains("already exists"));
    assert_eq!(
        config.run(&["token", "issue", "nobody"], "").0,
        3,
        "unknown customer"
    );
    assert_eq!(
        config.run(&["customer", "plan", "alice", "platinum"], "").0,
        5,
        "unknown plan"
    );
    assert_eq!(
        config.run(&["customer", "add", "anon"], "").0,
        5,
        "reserved custid"
    );

    let (code, token, _) = config.run(&["token", "issue", "alice"], "");
    assert_eq!(code, 0);
    let token = token.trim().to_owned();
    assert_eq!(token.len(), 40);

    let authcheck = |user: &str, token: &str| {
        client
            .get(server.url("/api/v1/authcheck"))
            .basic_auth(user, Some(token))
            .send()
    };
    let resp = authcheck("alice", &token).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["custid"],
        "alice"
    );
    assert_eq!(
        authcheck("alice", "wrong-token")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    let resp = client
        .post(server.url("/api/v1/share"))
        .basic_auth("alice", Some(&token))
        .form(&[("secret", "hers")])
        .send()
        .await
        .unwrap();
    let shared: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(shared["custid"], "alice");

    assert_eq!(
        config.run(&["token", "revoke", "alice", &token[..6]], "").0,
        0
    );
    assert_eq!(
        authcheck("alice", &token).await.unwrap().status().as_u16(),
        401,
        "revoked"
    );

    let (code, out, _) = config.run(&["customer", "list"], "");
    assert_eq!(code, 0);
    assert!(out.contains("alice\tbasic\talice@example.com"), "{out}");

    assert_eq!(config.run(&["customer", "remove", "alice"], "").0, 0);
    let key = shared["secret_key"].as_str().unwrap();
    let (status, _) =
        crate::post_form(&client, &server.url(&format!("/api/v1/secret/{key}")), &[]).await;
    assert_eq!(status, 404, "a removed customer's secrets are burned");
    assert_eq!(config.run(&["customer", "remove", "alice"], "").0, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_rate_limits_come_from_the_config_file() {
    let data = TempDir::new("plans");
    let mut config = Config::sqlite(&data.0);
    ots_tests::write_config(
        &mut config,
        &data.0,
        r#"
        [plans.anonymous]
        rate_limits.create = { burst = 2, per_minute = 1 }
        [plans.pro]
        max_secret_bytes = 20000
        max_ttl = 7776000
        "#,
    );
    assert_eq!(
        config
            .run(&["customer", "add", "bob", "--plan", "pro"], "")
            .0,
        0
    );
    let (_, token, _) = config.run(&["token", "issue", "bob"], "");
    let token = token.trim().to_owned();
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();
    let big = "x".repeat(15000);

    let (status, body) =
        crate::post_form(&client, &server.url("/api/v1/share"), &[("secret", &big)]).await;
    assert_eq!(status, 400, "anonymous plan caps at 1024 bytes: {body}");
    assert!(body["message"].as_str().unwrap().contains("1024"));
    let resp = client
        .post(server.url("/api/v1/share"))
        .basic_auth("bob", Some(&token))
        .form(&[("secret", big.as_str()), ("ttl", "7776000")])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (body["custid"].as_str(), body["ttl"].as_i64()),
        (Some("bob"), Some(7776000)),
        "{body}"
    );

    let (status, _) =
        crate::post_form(&client, &server.url("/api/v1/share"), &[("secret", "a")]).await;
    assert_eq!(status, 200, "second anonymous create of the burst");
    let resp = client
        .post(server.url("/api/v1/share"))
        .form(&[("secret", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Too many requests"));
}

#[test]
fn config_check_layers_file_env_and_flags_and_names_what_is_wrong() {
    let data = TempDir::new("config");
    let mut config = Config::sqlite(&data.0);
    ots_tests::write_config(
        &mut config,
        &data.0,
        "listen = \"127.0.0.1:9999\"\nbcrypt_cost = 6\n[plans.pro]\nmax_secret_bytes = 5000\n",
    );
    config.set("OTS_BCRYPT_COST", "7");
    let (code, out, err) = config.run(&["config", "check", "--listen", "127.0.0.1:8888"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("listen: 127.0.0.1:8888"),
        "a flag wins over the file: {out}"
    );
    assert!(
        out.contains("bcrypt cost: 7"),
        "the environment wins over the file: {out}"
    );
    assert!(out.contains("plan pro: 5000 bytes"), "{out}");
    assert!(
        out.contains("public url: http://127.0.0.1:8888 (the listen address"),
        "without a public URL, links follow the listen address in force: {out}"
    );
    assert!(out.contains("configuration OK"));

    for (file, needle) in [
        ("lisen = \"x\"\n", "unknown setting `lisen`"),
        ("default_plan = \"gold\"\n", "gold"),
        (
            "database_url = \"mysql://db\"\n",
            "unsupported database URL",
        ),
    ] {
        let dir = TempDir::new("config-bad");
        let mut bad = Config::sqlite(&dir.0);
        ots_tests::write_config(&mut bad, &dir.0, file);
        let (code, _, err) = bad.run(&["config", "check"], "");
        assert_ne!(code, 0, "{file}");
        assert!(err.contains(needle), "{file}: {err}");
    }
    config.set("OTS_SECRET", "too short");
    let (code, _, err) = config.run(&["config", "check"], "");
    assert_eq!(code, 1);
    assert!(err.contains("too short"), "{err}");
}

/// Without `OTS_PUBLIC_URL`, the links pages show name the address the server listens on
/// (its port, not the default's), so a server moved to another port links to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_name_the_listen_address_when_no_public_url_is_set() {
    let data = TempDir::new("links");
    let server = Server::start(&Config::sqlite(&data.0)).await;
    let client = reqwest::Client::new();
    let (status, shared) = crate::post_form(
        &client,
        &server.url("/api/v1/share"),
        &[("secret", "where am I")],
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    let page = client
        .get(server.url(&format!(
            "/private/{}",
            shared["metadata_key"].as_str().unwrap()
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap().replace("&#x2f;", "/");
    let link = format!(
        "http://127.0.0.1:{}/secret/{}",
        server.port,
        shared["secret_key"].as_str().unwrap()
    );
    assert!(html.contains(&link), "{link} not in the page: {html}");
}
