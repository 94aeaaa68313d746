//! Postgres goes away: requests answer 503 with a JSON message and status says `offline`;
//! it comes back: the same server process recovers without a restart. The outage is made by
//! a TCP proxy between ots and Postgres that the test cuts and restores.

use std::sync::{Arc, Mutex};

use ots_tests::{fresh_database, Config, Server, TempDir};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards 127.0.0.1:port to the Postgres of `upstream`; `cut` drops every connection.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept_tasks = tasks.clone();
        let target = upstream.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_tasks.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(acceptor);
        Self {
            port,
            upstream,
            tasks,
        }
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// `postgres://user@host:port/db` → (`host:port`, the URL with `127.0.0.1:proxy_port`).
fn split(url: &str, proxy_port: u16) -> (String, String) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    let authority = &url[after_scheme..authority_end];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let hostport = if hostport.contains(':') {
        hostport
    } else {
        format!("{hostport}:5432")
    };
    let proxied = format!(
        "{}{userinfo}127.0.0.1:{proxy_port}{}",
        &url[..after_scheme],
        &url[authority_end..]
    );
    (hostport, proxied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_is_503_then_recovers_without_restart() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (upstream, _) = split(&db.url, 0);
    let proxy = Proxy::start(upstream, 0).await;
    let (_, proxied_url) = split(&db.url, proxy.port);
    let data = TempDir::new("outage");
    let mut config = Config::postgres(&data.0, &proxied_url);
    config.set("OTS_DB_ACQUIRE_TIMEOUT_MS", "1000");
    let server = Server::start(&config).await;
    let client = reqwest::Client::new();

    let (status, before) =
        crate::post_form(&client, &server.url("/api/v1/share"), &[("secret", "kept")]).await;
    assert_eq!(status, 200);

    proxy.cut();
    let (status, body) = crate::get(&client, &server.url("/api/v1/status")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("offline")),
        "{body}"
    );
    let (status, body) =
        crate::post_form(&client, &server.url("/api/v1/share"), &[("secret", "x")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "{body}"
    );
    let key = before["secret_key"].as_str().unwrap();
    let (status, _) =
        crate::post_form(&client, &server.url(&format!("/api/v1/secret/{key}")), &[]).await;
    assert_eq!(
        status, 503,
        "a reveal during the outage fails without consuming the secret"
    );

    let restored = Proxy::start(proxy.upstream.clone(), proxy.port).await;
    let (status, body) = crate::get(&client, &server.url("/api/v1/status")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("nominal")),
        "{body}"
    );
    let (status, body) =
        crate::post_form(&client, &server.url(&format!("/api/v1/secret/{key}")), &[]).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("kept")),
        "{body}"
    );

    restored.cut();
    drop(server);
    db.drop_database().await;
}
