//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the dashboard's test and benchmark.

// The test and the benchmark each use part of it.
#![allow(dead_code)]

use crate::common::{Proc, free_port, until_ok};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::path::Path;

/// A chromedriver process and one browser session on it.
pub struct Browser {
    pub client: Client,
    /// The browser's profile directory: its processes name it, so a test
    /// that fails before `close` still leaves no browser behind.
    profile: String,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver in `dir` and a headless session `width` x 1000.
    pub async fn start(dir: &Path, width: u32) -> Browser {
        let port = free_port();
        let driver = Proc::spawn(
            "chromedriver",
            dir,
            "chromedriver",
            &[format!("--port={port}")],
        );
        let url = format!("http://127.0.0.1:{port}");
        let profile = dir.join("chrome-profile").to_string_lossy().into_owned();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({
                "binary": "/usr/bin/chromium",
                // --no-sandbox: the tests run as root, where Chromium's
                // sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},1000"),
                         format!("--user-data-dir={profile}")],
            }),
        );
        let client = until_ok(30, "a chromedriver session", async || {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
        })
        .await;
        Browser {
            client,
            profile,
            _driver: driver,
        }
    }

    /// Ends the session and the browser with it.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Evaluates the JavaScript expression `expr` in the page.
    pub async fn eval(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or(Value::Null)
    }

    /// Waits up to `secs` for `expr` to be truthy in the page.
    pub async fn until(&self, secs: u64, what: &str, expr: &str) -> Value {
        until_ok(secs, what, async || {
            let v = self.eval(expr).await;
            match v {
                Value::Null | Value::Bool(false) => Err(format!("{expr} is {v}")),
                Value::String(ref s) if s.is_empty() => Err(format!("{expr} is empty")),
                v => Ok(v),
            }
        })
        .await
    }

    /// The visible text of the page's main region.
    pub async fn main_text(&self) -> String {
        self.eval("document.getElementById('main').innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks the element `css` finds. A live update may rebuild the
    /// section between the find and the click (the element goes stale): it
    /// is found again, as a user's next click would land on the new one.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            let el = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            match el.click().await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale element") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
        panic!("click {css}: the element went stale 20 times");
    }

    /// Saves a PNG of the window as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &format!("user-data-dir={}", self.profile)])
            .status();
    }
}
