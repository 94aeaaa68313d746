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
