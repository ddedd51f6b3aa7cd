//! A small W3C WebDriver client driving headless Chromium through
//! `chromedriver`, finding controls as a screen reader would: by their
//! computed ARIA role and accessible name (WebDriver's `computedrole` and
//! `computedlabel`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a test waits for a condition (a generous bound for a loaded
/// 2-core machine; waits end as soon as the condition holds).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// WebDriver's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Set by CI: a missing browser fails the test instead of skipping it.
pub const REQUIRE_BROWSER: &str = "WAGATE_REQUIRE_BROWSER";

/// Desktop and phone viewports of the screenshots.
pub const DESKTOP: (u32, u32) = (1280, 860);
/// A phone's width.
pub const PHONE: (u32, u32) = (390, 844);

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// One browser session.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    driver_url: String,
    session: String,
    driver: Child,
    _profile: TempDir,
    shots: PathBuf,
}

/// The browser and its driver, if installed: `WAGATE_CHROMIUM` and
/// `WAGATE_CHROMEDRIVER`, else `chromium` and `chromedriver` on the `PATH`.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(var) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    };
    Some((
        find("WAGATE_CHROMIUM", &["chromium", "chromium-browser"])?,
        find("WAGATE_CHROMEDRIVER", &["chromedriver"])?,
    ))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where the screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("ui-screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    /// `Ok(None)` when they are not installed (the test then skips, unless
    /// [`REQUIRE_BROWSER`] is set: then it is an error).
    pub async fn launch() -> anyhow::Result<Option<Self>> {
        let Some((chromium, chromedriver)) = installed() else {
            if std::env::var(REQUIRE_BROWSER).is_ok_and(|v| v == "1") {
                bail!(
                    "chromium and chromedriver are required ({REQUIRE_BROWSER}=1) but not installed: \
                     apt-get install chromium chromium-driver"
                );
            }
            eprintln!(
                "SKIPPED: the dashboard's browser tests need chromium and chromedriver \
                 (apt-get install chromium chromium-driver); set {REQUIRE_BROWSER}=1 to fail instead"
            );
            return Ok(None);
        };
        let port = free_port()?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let driver_url = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            http,
            driver_url,
            session: String::new(),
            driver,
            _profile: profile,
            shots: screenshot_dir(),
        };
        // chromedriver answers once it listens.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.driver_url))
                .send()
                .await;
            if let Ok(res) = ready {
                let status: Value = res.json().await?;
                if status["value"]["ready"] == true {
                    break;
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chromedriver did not start");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ];
        let created: Value = browser
            .http
            .post(format!("{}/session", browser.driver_url))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium, "args": args },
            } } }))
            .send()
            .await?
            .json()
            .await?;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {created}"))?
            .to_owned();
        std::fs::create_dir_all(&browser.shots)?;
        Ok(Some(browser))
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        let req = self.http.request(method.clone(), url);
        let req = if method == reqwest::Method::GET {
            req
        } else {
            req.json(&body)
        };
        let res: Value = req.send().await?.json().await?;
        let value = res["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            bail!(
                "WebDriver {method} {path}: {error}: {}",
                value["message"].as_str().unwrap_or_default()
            );
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.cmd(reqwest::Method::GET, path, Value::Null).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.cmd(reqwest::Method::POST, path, body).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    /// The page's URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .get("/url")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn script(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script`, which calls `arguments[0]` with its result.
    pub async fn script_async(&self, script: &str) -> anyhow::Result<Value> {
        self.post("/execute/async", json!({ "script": script, "args": [] }))
            .await
    }

    /// The element as a script argument.
    pub fn arg(el: &Element) -> Value {
        json!({ ELEMENT: el.0 })
    }

    /// Elements matching `css`, inside `scope` when given.
    pub async fn all(&self, scope: Option<&Element>, css: &str) -> anyhow::Result<Vec<Element>> {
        let path = match scope {
            Some(e) => format!("/element/{}/elements", e.0),
            None => "/elements".to_owned(),
        };
        let found = self
            .post(&path, json!({ "using": "css selector", "value": css }))
            .await?;
        Ok(found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The element's computed ARIA role.
    pub async fn role(&self, el: &Element) -> anyhow::Result<String> {
        Ok(self
            .get(&format!("/element/{}/computedrole", el.0))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The element's accessible name.
    pub async fn name(&self, el: &Element) -> anyhow::Result<String> {
        Ok(self
            .get(&format!("/element/{}/computedlabel", el.0))
            .await?
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// Whether the element is shown.
    pub async fn displayed(&self, el: &Element) -> anyhow::Result<bool> {
        Ok(self.get(&format!("/element/{}/displayed", el.0)).await? == true)
    }

    /// Its rendered text.
    pub async fn text(&self, el: &Element) -> anyhow::Result<String> {
        Ok(self
            .get(&format!("/element/{}/text", el.0))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// An attribute or property (`src`, `value`, …).
    pub async fn property(&self, el: &Element, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/element/{}/property/{name}", el.0))
            .await
    }

    /// The shown element of `role` named `name` (inside `scope`), if any now.
    pub async fn find_now(
        &self,
        scope: Option<&Element>,
        role: &str,
        name: &str,
    ) -> anyhow::Result<Option<Element>> {
        // Candidates by tag; the role and name are what the browser computes.
        let css = match role {
            "button" => "button, [role=button], input[type=submit], input[type=button]",
            "link" => "a[href], [role=link]",
            "heading" => "h1, h2, h3, h4, h5, h6, [role=heading]",
            "textbox" => "input, textarea, [role=textbox]",
            "checkbox" => "input[type=checkbox], [role=checkbox]",
            "combobox" => "select, [role=combobox]",
            "img" | "image" => "img, [role=img]",
            "alert" => "[role=alert]",
            "status" => "[role=status]",
            "region" => "section, [role=region], [aria-label]",
            "article" => "article, [role=article]",
            "form" => "form, [role=form]",
            _ => "*",
        };
        for el in self.all(scope, css).await? {
            if !self.displayed(&el).await? {
                continue;
            }
            let computed = self.role(&el).await?;
            let role_matches = computed == role
                // Chromium reports a password field as a text box's kin.
                || (role == "textbox" && computed.is_empty() && self.is_input(&el).await?)
                || (role == "img" && computed == "image");
            if role_matches && self.name(&el).await? == name {
                return Ok(Some(el));
            }
        }
        Ok(None)
    }

    async fn is_input(&self, el: &Element) -> anyhow::Result<bool> {
        let tag = self.get(&format!("/element/{}/name", el.0)).await?;
        Ok(tag == "input" || tag == "textarea")
    }

    /// Waits for the shown element of `role` named `name` (inside `scope`).
    pub async fn find(
        &self,
        scope: Option<&Element>,
        role: &str,
        name: &str,
    ) -> anyhow::Result<Element> {
        self.until(&format!("a {role} named {name:?}"), || {
            self.find_now(scope, role, name)
        })
        .await
    }

    /// Clicks the shown `role` named `name`.
    /// (Found again when the page re-renders it in between.)
    pub async fn click(&self, role: &str, name: &str) -> anyhow::Result<()> {
        self.click_in(None, role, name).await
    }

    /// Clicks the shown `role` named `name` inside `scope`.
    pub async fn click_in(
        &self,
        scope: Option<&Element>,
        role: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        self.until(&format!("a {role} named {name:?} to click"), || async {
            match self.find_now(scope, role, name).await? {
                Some(el) => self.click_on(&el).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Clicks `el`.
    pub async fn click_on(&self, el: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/click", el.0), json!({}))
            .await?;
        Ok(())
    }

    /// Types `text` into the field labelled `label` (emptied first).
    pub async fn fill(&self, label: &str, text: &str) -> anyhow::Result<Element> {
        self.until(&format!("a text box named {label:?} to fill"), || async {
            let Some(el) = self.find_now(None, "textbox", label).await? else {
                return Ok(None);
            };
            self.post(&format!("/element/{}/clear", el.0), json!({}))
                .await?;
            self.post(&format!("/element/{}/value", el.0), json!({ "text": text }))
                .await?;
            Ok(Some(el))
        })
        .await
    }

    /// Chooses the file at `path` in the file field labelled `label`.
    pub async fn attach(&self, label: &str, path: &Path) -> anyhow::Result<()> {
        let field = self
            .until(&format!("a file field named {label:?}"), || async {
                for el in self.all(None, "input[type=file]").await? {
                    if self.name(&el).await? == label {
                        return Ok(Some(el));
                    }
                }
                Ok(None)
            })
            .await?;
        self.post(
            &format!("/element/{}/value", field.0),
            json!({ "text": path.display().to_string() }),
        )
        .await?;
        Ok(())
    }

    /// Whether `el` has the keyboard focus.
    pub async fn focused(&self, el: &Element) -> anyhow::Result<bool> {
        Ok(self
            .script(
                "return document.activeElement === arguments[0];",
                vec![Self::arg(el)],
            )
            .await?
            == true)
    }

    /// Presses Enter in `el`.
    pub async fn press_enter(&self, el: &Element) -> anyhow::Result<()> {
        self.post(
            &format!("/element/{}/value", el.0),
            json!({ "text": "\u{E007}" }),
        )
        .await?;
        Ok(())
    }

    /// The page's visible text.
    pub async fn page_text(&self) -> anyhow::Result<String> {
        let body = self.all(None, "body").await?;
        match body.first() {
            Some(b) => self.text(b).await,
            None => Ok(String::new()),
        }
    }

    /// Waits until the page shows `text`.
    pub async fn see(&self, text: &str) -> anyhow::Result<()> {
        self.until(&format!("the page to show {text:?}"), || async {
            Ok(self.page_text().await?.contains(text).then_some(()))
        })
        .await
    }

    /// Waits until `check` gives something, failing after [`PATIENCE`]
    /// with what the page showed.
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match check().await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                // The page re-rendered what was being looked at: look again.
                Err(e) if e.to_string().contains("stale element") => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() > deadline {
                let text = self.page_text().await.unwrap_or_default();
                bail!("never saw {what}; the page showed:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Resizes the window to `(width, height)`.
    pub async fn resize(&self, (width, height): (u32, u32)) -> anyhow::Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await?;
        Ok(())
    }

    /// Saves `name`-desktop.png and `name`-phone.png under
    /// `target/ui-screenshots/`;
    /// `within`, when given, is scrolled to the top of the view first.
    pub async fn screenshots(&self, name: &str, within: Option<&Element>) -> anyhow::Result<()> {
        for (size, suffix) in [(PHONE, "phone"), (DESKTOP, "desktop")] {
            self.resize(size).await?;
            if let Some(el) = within {
                self.script(
                    "arguments[0].scrollIntoView({ block: 'start' });",
                    vec![Self::arg(el)],
                )
                .await?;
            }
            // Let the new layout draw: two animation frames.
            self.post(
                "/execute/async",
                json!({ "script": "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));", "args": [] }),
            )
            .await?;
            let png = self.get("/screenshot").await?;
            let png = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap_or_default())?;
            std::fs::write(self.shots.join(format!("{name}-{suffix}.png")), png)?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; then chromedriver goes. A raw
        // request: there is no runtime to lean on in `drop`.
        if let Some(addr) = self.driver_url.strip_prefix("http://")
            && let Ok(mut stream) = TcpStream::connect(addr)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
