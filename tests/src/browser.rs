//! A real headless Chromium for the console's end-to-end tests, driven
//! through WebDriver (Debian's `chromium` and `chromium-driver`, which
//! `scripts/test` installs): each [`Browser`] starts its own `chromedriver`
//! on a free port and a Chromium with an empty profile, and stops both
//! when dropped. Missing binaries fail the test with the command that
//! installs them: browser tests never skip.

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium under a chromedriver of its own.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn binary(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium and chromium-driver (`apt-get install chromium \
         chromium-driver`, as scripts/test does) or point {var} at it"
    );
    path
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280×1000).
    pub async fn start() -> Browser {
        let chromium = binary("HYDRA_TEST_CHROMIUM", CHROMIUM);
        let chromedriver = binary("HYDRA_TEST_CHROMEDRIVER", CHROMEDRIVER);
        let port = free_port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                // As root in a container: no sandbox; and no background
                // connections (this machine's network is closed).
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Browser { client, driver, _profile: profile },
                Err(e) => last = e.to_string(),
            }
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = driver.kill();
        panic!("no WebDriver session from {chromedriver} in 10 s: {last}");
    }

    /// Saves a PNG of the window as `name` in the screenshot folder and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("the screenshot written");
        path
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// `target/console-screenshots` (or `$HYDRA_SCREENSHOT_DIR`): the browser
/// tests' artefacts.
pub fn screenshot_dir() -> PathBuf {
    if let Ok(d) = std::env::var("HYDRA_SCREENSHOT_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("console-screenshots")
}
