//! Helpers for end-to-end tests: build the real `ots` binary once, start servers on free
//! loopback ports with their own data directories, run admin commands, and stop or kill them.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ots_domain::{random_string, SystemRng, KEY_ALPHABET};

pub mod browser;
pub mod smtp;

pub use ots_store_postgres::testing::{announce_skip, fresh_database, TestDatabase};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `ots` binary, built once per test run with the same cargo that runs the tests.
pub fn ots_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("ots-server", "ots"))
}

/// The `ots-client` binary (the terminal commands on the generated client), built once.
pub fn ots_client_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("ots-client", "ots-client"))
}

fn build_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(workspace())
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let path = target.join("debug").join(bin);
    assert!(path.exists(), "no binary at {}", path.display());
    path
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let name = random_string(&SystemRng::new(), 10, KEY_ALPHABET).expect("CSPRNG");
        let dir = std::env::temp_dir().join(format!("ots-e2e-{label}-{name}"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a server (or admin command) is configured: environment variables for `ots`.
#[derive(Clone, Debug)]
pub struct Config {
    pub env: Vec<(String, String)>,
}

impl Config {
    /// SQLite in `data_dir`, low bcrypt cost, a fixed master secret, and rate limits high
    /// enough for load from one address (tests of limits write their own config).
    pub fn sqlite(data_dir: &Path) -> Self {
        let config_file = data_dir.join("ots.toml");
        std::fs::write(&config_file, GENEROUS_LIMITS).expect("write config");
        Self {
            env: vec![
                ("OTS_CONFIG".into(), config_file.display().to_string()),
                ("OTS_DATA_DIR".into(), data_dir.display().to_string()),
                (
                    "OTS_SECRET".into(),
                    "e2e-master-secret-0123456789abcdef".into(),
                ),
                ("OTS_BCRYPT_COST".into(), "4".into()),
                ("OTS_LOG".into(), "info".into()),
            ],
        }
    }

    pub fn postgres(data_dir: &Path, url: &str) -> Self {
        let mut config = Self::sqlite(data_dir);
        config.set("OTS_DATABASE_URL", url);
        config
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(ots_binary());
        // Only what the test sets: no OTS_* leaking in from the caller's environment.
        for (key, _) in std::env::vars() {
            if key.starts_with("OTS_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `ots ARGS…` for at most `timeout`: `None` (after killing it) when it was still
    /// running; otherwise (exit code, stdout, stderr).
    pub fn run_for(&self, args: &[&str], timeout: Duration) -> Option<(i32, String, String)> {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ots");
        let started = std::time::Instant::now();
        while child.try_wait().expect("poll ots").is_none() {
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("wait for ots");
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs `ots ARGS…` to completion, feeding `stdin`; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ots");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait for ots");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const GENEROUS_LIMITS: &str = r#"
[plans.anonymous.rate_limits]
create = { burst = 100000, per_minute = 1000000 }
reveal = { burst = 100000, per_minute = 1000000 }
other = { burst = 100000, per_minute = 1000000 }
[plans.basic.rate_limits]
create = { burst = 100000, per_minute = 1000000 }
reveal = { burst = 100000, per_minute = 1000000 }
other = { burst = 100000, per_minute = 1000000 }
"#;

/// Writes `toml` as the configuration file of `config`.
pub fn write_config(config: &mut Config, dir: &Path, toml: &str) {
    let path = dir.join("custom.toml");
    std::fs::write(&path, toml).expect("write config");
    config.set("OTS_CONFIG", &path.display().to_string());
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `ots serve`. Killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    config: Config,
}

impl Server {
    /// Starts `ots serve` on a free port and waits until it serves.
    ///
    /// A port found free can be taken by another test's server before this one binds it;
    /// ots then exits with "cannot listen", and another port is tried.
    pub async fn start(config: &Config) -> Self {
        let mut refused = String::new();
        for _ in 0..5 {
            match Self::launch(config, free_port()).await {
                Ok(server) => return server,
                Err(log) if log.contains("cannot listen") => refused = log,
                Err(log) => panic!("ots serve exited before serving: {log}"),
            }
        }
        panic!("ots serve found no port to listen on: {refused}")
    }

    /// Starts `ots serve` on `port` and waits until it serves.
    pub async fn start_on(config: &Config, port: u16) -> Self {
        Self::launch(config, port)
            .await
            .unwrap_or_else(|log| panic!("ots serve exited before serving: {log}"))
    }

    /// The server once it serves, or its log if it exited first.
    async fn launch(config: &Config, port: u16) -> Result<Self, String> {
        let log = std::env::temp_dir().join(format!("ots-e2e-{port}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = config
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn ots serve");
        let mut server = Self {
            child,
            port,
            log,
            config: config.clone(),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Waits until this process has bound its port (its own log says so) and answers
    /// `status` there. The log is the proof that it is this server answering: a status
    /// from the port alone could come from another test's server holding the same port.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = self.client(None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exit {status}: {}", self.log_text()));
            }
            if self.log_text().contains("ots is serving") {
                if let Ok(status) = client.get_status().await {
                    assert_eq!(status.status, "nominal");
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "ots serve did not become ready: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The generated client of this server, with `login` as Basic credentials.
    pub fn client(&self, login: Option<&ots_client::Login>) -> ots_client::Client {
        ots_client::connect(&self.url(""), login).expect("a client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until the server's log contains `needle` (panics after `timeout`).
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal_term();
        self.wait_exit()
    }

    /// SIGTERM, without waiting.
    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits (up to 30 s) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server and starts it again on the same port and configuration.
    pub async fn restart_after_kill(mut self) -> Self {
        self.kill();
        let (config, port) = (self.config.clone(), self.port);
        drop(self);
        Self::start_on(&config, port).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
