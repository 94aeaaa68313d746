//! `just bench`: starts the release `ots` binary on each store and drives share+reveal pairs
//! from concurrent keep-alive clients, then measures the same machine's ceilings: a bare poem
//! handler returning constant JSON, and (with a Postgres URL) pgbench running the exact SQL of
//! one share and one reveal. Also: plain requests' p99 while bcrypt reveals run, and RSS.
//!
//! Settings (environment): BENCH_SECONDS (default 10), BENCH_CLIENTS (default 32),
//! BENCH_PG_URL (an admin URL such as postgres://postgres@127.0.0.1:5432/test; Postgres runs
//! are skipped without it). Loopback only; every loop is bounded in time.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::Mutex;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(7199)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Latencies of one kind of operation.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }
}

struct Report {
    name: String,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl Report {
    fn print(&self, unit: &str) {
        println!(
            "{:<34} {:>9.0} {unit}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.name,
            self.ops_per_sec,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        );
    }
}

/// Runs `clients` loops of `op` for `seconds`, collecting each op's latency.
async fn drive<F, Fut>(name: &str, clients: usize, seconds: u64, op: F) -> Report
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let samples = Arc::new(Mutex::new(Samples::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, samples) = (op.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(client.clone()).await {
                    mine.push(t.elapsed());
                }
            }
            samples.lock().await.0.extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut samples = Arc::try_unwrap(samples)
        .ok()
        .map(Mutex::into_inner)
        .unwrap_or_default();
    Report {
        name: name.to_owned(),
        ops_per_sec: samples.0.len() as f64 / elapsed,
        p50: samples.pct(0.50),
        p99: samples.pct(0.99),
    }
}

/// One share and one reveal of what was shared; true when both succeeded.
async fn pair(client: reqwest::Client, base: Arc<String>, passphrase: bool) -> bool {
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

async fn get_ok(client: reqwest::Client, url: Arc<String>) -> bool {
    matches!(client.get(url.as_str()).send().await, Ok(r) if r.status().is_success())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_ots(database_url: &str, dir: &std::path::Path, bcrypt_cost: u32) -> Result<Server> {
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
        .env("OTS_DB_MAX_CONNECTIONS", "16")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ots")?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
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

/// The exact SQL of one share and one reveal, as pgbench scripts.
const PGBENCH_SHARE_REVEAL: &str = r#"\set n random(1, 1000000000)
BEGIN;
INSERT INTO metadata (key, custid, secret_key, ttl, state, created, updated, received, burned, recipients, passphrase_required, secret_expires_at, expires_at) VALUES ('m' || :client_id || '-' || :n, 'anon', 's' || :client_id || '-' || :n, 3600, 'new', 1700000000, 1700000000, NULL, NULL, '{}', false, 1900000000, 1900003600);
INSERT INTO secrets (key, metadata_key, ciphertext, nonce, salt, passphrase_hash, failed_tries, created, expires_at) VALUES ('s' || :client_id || '-' || :n, 'm' || :client_id || '-' || :n, '\x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223', '\x0102030405060708090a0b0c', '\x0102030405060708090a0b0c0d0e0f10', NULL, 0, 1700000000, 1900000000);
COMMIT;
SELECT * FROM secrets WHERE key = 's' || :client_id || '-' || :n AND expires_at > 1700000001;
BEGIN;
SELECT metadata_key FROM secrets WHERE key = 's' || :client_id || '-' || :n AND expires_at > 1700000001 FOR UPDATE;
DELETE FROM secrets WHERE key = 's' || :client_id || '-' || :n;
UPDATE metadata SET state = 'received', secret_key = NULL, received = 1700000001, updated = 1700000001 WHERE key = 'm' || :client_id || '-' || :n RETURNING key;
COMMIT;
"#;

fn pgbench(url: &str, clients: usize, seconds: u64, dir: &std::path::Path) -> Result<f64> {
    let script = dir.join("share_reveal.sql");
    std::fs::write(&script, PGBENCH_SHARE_REVEAL)?;
    let out = Command::new("pgbench")
        .args(["-n", "-f"])
        .arg(&script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            url,
        ])
        .output()
        .context("running pgbench (apt-get install postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "pgbench said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(tps)
}

async fn bare_poem_ceiling(clients: usize, seconds: u64) -> Report {
    let port = free_port();
    let app = poem::Route::new().at(
        "/",
        poem::endpoint::make_sync(|_| {
            poem::Response::builder()
                .content_type("application/json")
                .body(r#"{"status":"nominal"}"#)
        }),
    );
    let server = tokio::spawn(async move {
        let _ = poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{port}"
        )))
        .run(app)
        .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = Arc::new(format!("http://127.0.0.1:{port}/"));
    let report = drive("bare poem, constant JSON", clients, seconds, move |c| {
        get_ok(c, url.clone())
    })
    .await;
    server.abort();
    report
}

/// A fresh database on the Postgres of `admin_url`, with ots's schema.
async fn bench_database(admin_url: &str, dir: &std::path::Path) -> Result<String> {
    let name = format!("ots_bench_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([admin_url, "-qAtc", sql])
            .output()
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    psql(&format!("CREATE DATABASE {name}"))?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    let url = format!("{base}/{name}");
    // ots applies its migrations at start; run it once for the schema.
    drop(start_ots(&url, &dir.join("schema"), 4).await?);
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<()> {
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let pg_admin = std::env::var("BENCH_PG_URL").ok().filter(|u| !u.is_empty());
    let dir = std::env::temp_dir().join(format!("ots-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "ots benchmark: {clients} clients, {seconds} s per run, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let ceiling = bare_poem_ceiling(clients, seconds).await;
    ceiling.print("req");

    let mut stores = vec![
        ("memory", "memory://".to_owned()),
        ("sqlite", format!("sqlite://{}/bench.db", dir.display())),
    ];
    let pg_url = match &pg_admin {
        Some(admin) => Some(bench_database(admin, &dir).await?),
        None => {
            println!("(set BENCH_PG_URL to include Postgres and pgbench)");
            None
        }
    };
    if let Some(url) = &pg_url {
        stores.push(("postgres", url.clone()));
    }
    let mut pg_pairs = None;
    for (name, url) in &stores {
        let server = start_ots(url, &dir.join(name), 12).await?;
        let idle = rss_kib(server.child.id());
        let base = Arc::new(server.base.clone());
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (pid, peak_w) = (server.child.id(), peak.clone());
        let watcher = tokio::spawn(async move {
            loop {
                peak_w.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let report = drive(
            &format!("ots {name}: share+reveal pairs"),
            clients,
            seconds,
            {
                let base = base.clone();
                move |c| pair(c, base.clone(), false)
            },
        )
        .await;
        report.print("pair");
        if *name == "postgres" {
            pg_pairs = Some(report.ops_per_sec);
        }
        println!(
            "{:<34} = {:.0} req/s, {:.1}% of the bare poem ceiling; RSS idle {} MiB, under load {} MiB",
            "",
            report.ops_per_sec * 2.0,
            report.ops_per_sec * 2.0 / ceiling.ops_per_sec * 100.0,
            idle / 1024,
            peak.load(std::sync::atomic::Ordering::Relaxed) / 1024
        );
        watcher.abort();

        // Plain requests while bcrypt (cost 12) passphrase pairs run beside them.
        let bcrypt_clients = (clients / 4).max(2);
        let bcrypt = tokio::spawn(drive("bcrypt pairs (cost 12)", bcrypt_clients, seconds, {
            let base = base.clone();
            move |c| pair(c, base.clone(), true)
        }));
        let status_url = Arc::new(format!("{base}/api/v1/status"));
        let plain = drive(
            &format!("ots {name}: status beside bcrypt"),
            clients,
            seconds,
            move |c| get_ok(c, status_url.clone()),
        )
        .await;
        plain.print("req");
        if let Ok(b) = bcrypt.await {
            b.print("pair");
        }
        println!();
    }
    if let (Some(url), Some(admin)) = (&pg_url, &pg_admin) {
        let tps = pgbench(url, clients.min(16), seconds, &dir)?;
        println!(
            "pgbench, the SQL of one share + one reveal: {tps:.0} pairs/s (the Postgres ceiling)"
        );
        if let Some(pairs) = pg_pairs {
            println!("ots on Postgres reaches {:.1}% of it", pairs / tps * 100.0);
        }
        let name = url.rsplit('/').next().unwrap_or_default();
        let _ = Command::new("psql")
            .args([
                admin.as_str(),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
