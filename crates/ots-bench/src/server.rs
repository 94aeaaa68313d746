//! The release `ots` binary as the benchmark runs it, and the requests it is driven with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::CONTENT_TYPE;

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

/// CPU time (user and system) `pid` has used so far, from `/proc` in 10 ms ticks.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised command name, the fields start at the third (state); utime
    // and stime are the 14th and 15th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time the server and the load generator (this process) spent per operation of a run:
/// on a shared machine a rate moves with the neighbours, what each side spends on an
/// operation much less.
#[derive(Clone, Copy, Default)]
pub struct CpuPerOp {
    pub server: Duration,
    pub generator: Duration,
}

impl CpuPerOp {
    /// Measures `run` (which returns how many operations succeeded) on server `pid`.
    pub async fn measure<F: std::future::Future<Output = crate::load::Report>>(
        pid: u32,
        run: F,
    ) -> (crate::load::Report, Self) {
        let me = std::process::id();
        let (server, generator) = (cpu_time(pid), cpu_time(me));
        let report = run.await;
        let ops = report.count.max(1) as u32;
        let cpu = Self {
            server: cpu_time(pid).saturating_sub(server) / ops,
            generator: cpu_time(me).saturating_sub(generator) / ops,
        };
        (report, cpu)
    }
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

/// The share's body, urlencoded as OneTimeSecret clients send it, with and without a
/// passphrase. Fixed bytes, so the load generator spends its share of the two cores on what
/// a wrk script would (sending, reading one field), not on encoding the same form each time.
const SHARE: &str = "secret=benchmark+value+0123456789&ttl=3600";
const SHARE_WITH_PASSPHRASE: &str =
    "secret=benchmark+value+0123456789&ttl=3600&passphrase=bench+passphrase";
const REVEAL_WITH_PASSPHRASE: &str = "passphrase=bench+passphrase";

/// The one field of the share's answer the reveal needs.
#[derive(serde::Deserialize)]
struct Shared<'a> {
    secret_key: &'a str,
}

/// One share and one reveal of what was shared, as OneTimeSecret clients send them
/// (urlencoded); true when both succeeded.
pub async fn pair(client: reqwest::Client, base: Arc<String>, passphrase: bool) -> bool {
    let (share, reveal) = if passphrase {
        (SHARE_WITH_PASSPHRASE, REVEAL_WITH_PASSPHRASE)
    } else {
        (SHARE, "")
    };
    let form = "application/x-www-form-urlencoded";
    let Ok(resp) = client
        .post(format!("{base}/api/v1/share"))
        .header(CONTENT_TYPE, form)
        .body(share)
        .send()
        .await
    else {
        return false;
    };
    if !resp.status().is_success() {
        return false;
    }
    let Ok(body) = resp.bytes().await else {
        return false;
    };
    let Ok(Shared { secret_key }) = serde_json::from_slice::<Shared>(&body) else {
        return false;
    };
    match client
        .post(format!("{base}/api/v1/secret/{secret_key}"))
        .header(CONTENT_TYPE, form)
        .body(reveal)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => resp.bytes().await.is_ok(),
        _ => false,
    }
}

pub async fn get_ok(client: reqwest::Client, url: Arc<String>) -> bool {
    match client.get(url.as_str()).send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}
