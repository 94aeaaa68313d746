//! The release `ots` binary as the benchmark runs it, and the requests it is driven with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(7199)
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub struct Server {
    pub child: Child,
    pub base: Arc<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary on `database_url`, with rate limits out of the way, and waits
/// until it is ready.
pub async fn start_ots(database_url: &str, dir: &Path, bcrypt_cost: u32) -> Result<Server> {
    let bin = workspace().join("target/release/ots");
    if !bin.exists() {
        bail!(
            "no release binary at {}: run `cargo build --release -p ots-server`",
            bin.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        "[plans.anonymous.rate_limits]\ncreate = { burst = 10000000, per_minute = 100000000 }\n\
         reveal = { burst = 10000000, per_minute = 100000000 }\nother = { burst = 10000000, per_minute = 100000000 }\n",
    )?;
    let port = free_port();
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OTS_DATABASE_URL", database_url)
        .env("OTS_DATA_DIR", dir)
        .env("OTS_CONFIG", &config)
        .env("OTS_SECRET", "benchmark-master-secret-0123456789abcdef")
        .env("OTS_BCRYPT_COST", bcrypt_cost.to_string())
        .env("OTS_LOG", "warn")
        .env(
            "OTS_DB_MAX_CONNECTIONS",
            std::env::var("BENCH_PG_POOL").unwrap_or_else(|_| "16".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ots")?;
    let server = Server {
        child,
        base: Arc::new(format!("http://127.0.0.1:{port}")),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if get_ok(client.clone(), Arc::new(format!("{}/readyz", server.base))).await {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("ots did not become ready on {database_url}")
}

/// One share and one reveal of what was shared, as OneTimeSecret clients send them
/// (urlencoded); true when both succeeded.
pub async fn pair(client: reqwest::Client, base: Arc<String>, passphrase: bool) -> bool {
    let mut form = vec![("secret", "benchmark value 0123456789"), ("ttl", "3600")];
    if passphrase {
        form.push(("passphrase", "bench passphrase"));
    }
    let Ok(resp) = client
        .post(format!("{base}/api/v1/share"))
        .form(&form)
        .send()
        .await
    else {
        return false;
    };
    let Ok(body) = resp.json::<serde_json::Value>().await else {
        return false;
    };
    let Some(key) = body["secret_key"].as_str() else {
        return false;
    };
    let reveal = if passphrase {
        vec![("passphrase", "bench passphrase")]
    } else {
        vec![]
    };
    match client
        .post(format!("{base}/api/v1/secret/{key}"))
        .form(&reveal)
        .send()
        .await
    {
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    }
}

pub async fn get_ok(client: reqwest::Client, url: Arc<String>) -> bool {
    match client.get(url.as_str()).send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}
