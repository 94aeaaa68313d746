//! A real headless Chromium driven through chromedriver (WebDriver, fantoccini).
//!
//! Debian's `chromium` and `chromium-driver`; `.ci/run` installs them. Without them the browser
//! tests are skipped with a loud line, and `OTS_REQUIRE_BROWSER=1` turns that into a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

use crate::{free_port, TempDir};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and a browser session on it; both end on drop (after `close`).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// `None` (after a loud line) when Chromium or chromedriver is not installed.
    pub async fn start() -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("OTS_REQUIRE_BROWSER").map_or(true, |v| v != "1"),
                "OTS_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing"
            );
            crate::announce_skip(
                "browser test: install Debian's chromium and chromium-driver (and set \
                 OTS_REQUIRE_BROWSER=1 to fail instead of skipping)",
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = TempDir::new("chromium");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1000,900",
                    format!("--user-data-dir={}", profile.0.display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&url).await {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a Chromium session: {e}"),
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Saves a screenshot as `target/screenshots/NAME.png` for a reviewer to look at.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = crate::workspace().join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session; chromedriver is stopped on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
