//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `make deps` installs), for the page tests:
//! clicks, typing, screenshots, the browser's console and an axe-core
//! accessibility check run inside the page.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::moto::{remove_dir, temp_dir};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the browser it started share a process group.
        // SAFETY: kill(2) on a process group we created; no memory involved.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
        remove_dir(&self.profile);
    }
}

fn executable(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: the page tests need Debian's chromium and chromium-driver \
         (`make deps` installs them)"
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go: outside the sources (the build's target dir).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// A fresh browser (its own profile, so no cookies carry over) at
    /// `width`×900.
    pub async fn start(width: u32) -> Self {
        Self::launch(width, true).await
    }

    /// A browser with JavaScript switched off: what the pages show to
    /// readers without it.
    pub async fn without_script(width: u32) -> Self {
        Self::launch(width, false).await
    }

    async fn launch(width: u32, script: bool) -> Self {
        use std::os::unix::process::CommandExt;
        let driver_path = executable("KPI_CHROMEDRIVER", CHROMEDRIVER);
        let chromium = executable("KPI_CHROMIUM", CHROMIUM);
        let port = free_port();
        let profile = temp_dir("kpi-chromium");
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    // Nothing but loopback: a page that names an outside host
                    // (the test provider's login page imports a web font)
                    // must fail that fetch at once, not wait on a network
                    // that may swallow packets and hold rendering for minutes.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                    format!("--window-size={width},900"),
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "profile.managed_default_content_settings.javascript": if script { 1 } else { 2 },
                },
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let session = client.session_id().await.unwrap().expect("a session id");
                    let browser = Self {
                        client,
                        driver,
                        port,
                        session,
                        profile,
                    };
                    browser.set_width(width).await;
                    return browser;
                }
                Err(e) => {
                    last = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    pub async fn set_width(&self, width: u32) {
        self.client.set_window_size(width, 900).await.unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.unwrap()
    }

    /// The first element matching `css`, once there.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.url_string().await,
                self.client
                    .source()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(4000)
                    .collect::<String>()
            ),
        }
    }

    /// Whether an element matching `css` is there now.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    async fn url_string(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await;
        // Found again on each look: a page that was replaced meanwhile leaves
        // a stale element that would never show.
        self.wait_until(&format!("{css} to be shown and clicked"), || async {
            let Ok(element) = self.client.find(Locator::Css(css)).await else {
                return false;
            };
            element.is_displayed().await.unwrap_or(false)
                && element.is_enabled().await.unwrap_or(false)
                && element.click().await.is_ok()
        })
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Waits until `ready` holds (checked every 100 ms, for up to 30 s).
    pub async fn wait_until<F, Fut>(&self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out waiting for {what} on {}: {}",
            self.url_string().await,
            self.client
                .source()
                .await
                .unwrap_or_default()
                .chars()
                .take(4000)
                .collect::<String>()
        );
    }

    /// Waits until the element at `css` shows text containing `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if t.contains(needle) {
                    return t;
                }
                seen = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never said {needle:?}; last: {seen:?}");
    }

    pub async fn script(&self, source: &str) -> Value {
        self.client.execute(source, Vec::new()).await.unwrap()
    }

    /// A PNG of the viewport, saved as `{name}.png` outside the sources;
    /// the path is printed (the test output shows it).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// The browser console's errors since the last call (failed loads,
    /// script errors, CSP refusals).
    pub async fn console_errors(&self) -> Vec<String> {
        let url = format!(
            "http://127.0.0.1:{}/session/{}/se/log",
            self.port, self.session
        );
        let answer: Value = crate::client()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// axe-core's serious and critical violations on the current page
    /// (WCAG 2.1 A and AA rules), each as "rule: help (where)".
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(axe_path()).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; `make deps` installs axe-core",
                axe_path().display()
            )
        });
        self.client
            .execute(&format!("{axe}\n;return true;"), Vec::new())
            .await
            .unwrap();
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
                  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))))
                  .catch(e => done([{id: "axe-failed", impact: "critical", help: String(e), nodes: []}]));"#,
                Vec::new(),
            )
            .await
            .unwrap();
        found
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .map(|v| format!("{}: {} ({})", v["id"], v["help"], v["nodes"]))
            .collect()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// axe-core, installed by `make deps` from the lock file in `tests/ui`.
pub fn axe_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ui/node_modules/axe-core/axe.min.js")
}
