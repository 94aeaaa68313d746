//! The Rust client generated from the committed spec (`ots-client`), and the terminal
//! commands built on it, against the real server.

use std::io::Write;
use std::process::{Command, Stdio};

use ots_client::{types, Error, Login};
use ots_tests::{ots_client_binary, Config, Server, TempDir};

/// A customer with a fresh token, made with the admin commands.
fn customer(config: &Config, custid: &str) -> Login {
    let (code, _, err) = config.run(&["customer", "add", custid, "--email", "c@example.com"], "");
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = config.run(&["token", "issue", custid], "");
    assert_eq!(code, 0, "{err}");
    Login {
        custid: custid.to_owned(),
        apitoken: token.trim().to_owned(),
    }
}

fn status_of<T>(result: Result<T, Error<types::Error>>) -> (u16, types::Error) {
    match result {
        Err(Error::ErrorResponse(response)) => (response.status().as_u16(), response.into_inner()),
        Err(other) => panic!("not an API error: {other}"),
        Ok(_) => panic!("succeeded"),
    }
}

#[tokio::test]
async fn the_generated_client_round_trips_every_use() {
    let data = TempDir::new("client-lib");
    let config = Config::sqlite(&data.0);
    let login = customer(&config, "alice");
    let server = Server::start(&config).await;
    let alice = server.client(Some(&login));
    let anonymous = server.client(None);

    assert_eq!(alice.check_auth().await.unwrap().custid, "alice");
    let shared = alice
        .share_secret(&types::ShareParams {
            secret: "from rust".parse().unwrap(),
            passphrase: Some("pw".into()),
            ttl: Some(3600),
            recipient: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (shared.state, shared.ttl, shared.passphrase_required),
        (types::State::New, 3600, true)
    );
    let key = shared
        .secret_key
        .clone()
        .expect("a new secret shows its key");

    let wrong = types::RevealParams {
        passphrase: Some("nope".into()),
    };
    let (status, body) = status_of(anonymous.reveal_secret(&key, &wrong).await);
    assert_eq!((status, body.tries_left), (403, Some(9)));
    let right = types::RevealParams {
        passphrase: Some("pw".into()),
    };
    let revealed = anonymous.reveal_secret(&key, &right).await.unwrap();
    assert_eq!(revealed.value, "from rust");
    let (status, body) = status_of(anonymous.reveal_secret(&key, &right).await);
    assert_eq!((status, body.message.as_str()), (404, "Unknown secret"));

    let seen = alice.get_metadata(&shared.metadata_key).await.unwrap();
    assert_eq!(seen.state, types::State::Received);
    assert!(seen.secret_key.is_none() && seen.received.is_some());

    let generated = alice
        .generate_secret(&types::GenerateParams {
            passphrase: None,
            ttl: Some(600),
            recipient: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(generated.value.as_deref().map(str::len), Some(12));
    let burned = alice.burn_secret(&generated.metadata_key).await.unwrap();
    assert_eq!(burned.state, types::State::Burned);
    let gone = generated.secret_key.unwrap();
    let (status, _) = status_of(anonymous.reveal_secret_by_get(&gone, None).await);
    assert_eq!(status, 404);

    let recent = alice.list_recent(None).await.unwrap().into_inner();
    let keys: Vec<&str> = recent.iter().map(|m| m.metadata_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            generated.metadata_key.as_str(),
            shared.metadata_key.as_str()
        ]
    );
    let (status, _) = status_of(anonymous.list_recent(None).await);
    assert_eq!(status, 401);
}

/// Runs `ots-client ARGS…` with `env` and `stdin`; (exit code, stdout, stderr).
fn ots_client(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut cmd = Command::new(ots_client_binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("OTS_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ots-client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("wait for ots-client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_terminal_commands_share_reveal_show_and_burn() {
    let data = TempDir::new("client-cli");
    let config = Config::sqlite(&data.0);
    let login = customer(&config, "bob");
    let server = Server::start(&config).await;
    let base = server.url("");
    let creds = [
        ("OTS_CUSTID", "bob"),
        ("OTS_APITOKEN", login.apitoken.as_str()),
    ];

    // share from stdin: the link on stdout, the private link on stderr
    let (code, out, err) = ots_client(
        &["--server", &base, "share", "--ttl", "600"],
        &creds,
        "multi\nline value\n",
    );
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    let link = out.trim();
    assert!(link.starts_with(&format!("{base}/secret/")), "{out}");
    let private = err
        .split_whitespace()
        .find(|w| w.contains("/private/"))
        .expect("a private link on stderr")
        .to_owned();

    // reveal the link (its own server), once
    let (code, out, err) = ots_client(&["reveal", link], &[], "");
    assert_eq!(
        (code, out.as_str()),
        (0, "multi\nline value"),
        "{err}\n{}",
        server.log_text()
    );
    let (code, _, err) = ots_client(&["reveal", link], &[], "");
    assert_eq!(code, 1);
    assert!(err.contains("Unknown secret (404)"), "{err}");

    // metadata of the private link: received, owned by bob
    let (code, out, err) = ots_client(&["metadata", &private], &creds, "");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    let seen: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (seen["state"].as_str(), seen["custid"].as_str()),
        (Some("received"), Some("bob"))
    );

    // a passphrase from the environment; a reveal without it is refused and keeps it
    let pass = [("OTS_PASSPHRASE", "correct horse")];
    let (code, out, err) = ots_client(&["--server", &base, "share"], &pass, "guarded");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    let guarded = out.trim().to_owned();
    let (code, _, err) = ots_client(&["reveal", &guarded], &[], "");
    assert_eq!(code, 1);
    assert!(err.contains("(403)"), "{err}");
    let (code, out, _) = ots_client(&["reveal", &guarded], &pass, "");
    assert_eq!((code, out.as_str()), (0, "guarded"));

    // burn by metadata key alone, against --server
    let (code, _, err) = ots_client(&["--server", &base, "share"], &[], "to burn");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    let key = err.trim().rsplit('/').next().unwrap().to_owned();
    let (code, out, err) = ots_client(&["--server", &base, "burn", &key], &[], "");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    assert!(out.contains("\"state\": \"burned\""), "{out}");

    // recent needs credentials; with them, bob's secrets newest first
    let (code, _, err) = ots_client(&["--server", &base, "recent"], &[], "");
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = ots_client(&["--server", &base, "recent"], &creds, "");
    assert_eq!(code, 0, "{err}\n{}", server.log_text());
    let recent: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(recent.len(), 1, "{out}");

    // bad input: an empty stdin, a link that is not one
    let (code, _, err) = ots_client(&["--server", &base, "share"], &[], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ots_client(&["reveal", "https://example.com/nothing"], &[], "");
    assert_eq!(code, 2, "{err}");
}
