//! A real headless browser for the status page tests: Debian's Chromium,
//! driven over the DevTools protocol (JSON over a WebSocket).
//!
//! One browser per test binary, started on first use ([`browser`]); each
//! test opens its own tab on its own connection ([`Browser::tab`]), so tests
//! run in parallel. The browser is stopped when the test process exits,
//! however it exits: it runs under a small shell that kills it when its
//! standard input (a pipe this process holds) closes.
//!
//! A missing Chromium fails the test, saying what to install.

use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The running browser.
pub struct Browser {
    /// `ws://127.0.0.1:PORT/devtools/browser/ID`.
    ws_url: String,
    /// The shell that owns Chromium; closing its stdin stops it.
    _keeper: Mutex<(Child, ChildStdin)>,
    _profile: tempfile::TempDir,
}

/// The Chromium binary: `$KFTENANT_CHROMIUM`, else `chromium` on the `PATH`.
pub fn chromium_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KFTENANT_CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Chromium is missing: the status page tests need a real headless browser. \
             Install Debian's package (`apt-get update && apt-get install -y chromium`, \
             which scripts/ci-stack-prereqs does), or point KFTENANT_CHROMIUM at a Chromium binary"
        )
    })
}

/// The browser of this test binary, started on first use.
pub fn browser() -> &'static Browser {
    static B: OnceLock<Browser> = OnceLock::new();
    B.get_or_init(Browser::start)
}

impl Browser {
    fn start() -> Browser {
        let bin = chromium_bin();
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromium.log");
        // The shell starts Chromium and waits on its stdin: when this test
        // process ends, the pipe closes and the shell stops the browser.
        let script = r#"
bin=$1; log=$2; shift 2
"$bin" "$@" </dev/null >/dev/null 2>"$log" &
pid=$!
read -r _ignored || true
kill "$pid" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.2; done
kill -9 "$pid" 2>/dev/null
"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&bin)
            .arg(&log)
            .args([
                "--headless",
                // Tests run as root in CI, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} through sh: {e}", bin.display()));
        let stdin = child.stdin.take().unwrap();
        // Chromium writes its port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening: {}",
                    bin.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not open its DevTools port within 30 s: {}",
                bin.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "browser: {} ready in {:?}",
            bin.display(),
            started.elapsed()
        );
        Browser {
            ws_url,
            _keeper: Mutex::new((child, stdin)),
            _profile: profile,
        }
    }

    /// A new tab of `width` × `height` CSS pixels, on its own connection.
    pub fn tab(&self, width: u32, height: u32) -> Tab {
        let rest = self.ws_url.strip_prefix("ws://").unwrap();
        let host = &rest[..rest.find('/').unwrap()];
        let stream = TcpStream::connect(host).expect("connect to Chromium's DevTools port");
        stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let (ws, _) = tungstenite::client(self.ws_url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket handshake: {e}"));
        let mut tab = Tab {
            ws,
            session: None,
            target: String::new(),
            context: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        // A browser context (a window of its own) per tab: tests running at
        // once each have a tab in front, which screenshots need, and share
        // no storage.
        let context = tab.call("Target.createBrowserContext", json!({}));
        tab.context = context["browserContextId"].as_str().unwrap().to_string();
        let created = tab.call(
            "Target.createTarget",
            json!({"url": "about:blank", "browserContextId": tab.context}),
        );
        tab.target = created["targetId"].as_str().unwrap().to_string();
        let attached = tab.call(
            "Target.attachToTarget",
            json!({"targetId": tab.target, "flatten": true}),
        );
        tab.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            tab.call(domain, json!({}));
        }
        tab.viewport(width, height);
        tab
    }
}

/// One browser tab.
pub struct Tab {
    ws: WebSocket<TcpStream>,
    /// The flat session of the tab (`None` while talking to the browser).
    session: Option<String>,
    target: String,
    context: String,
    next_id: u64,
    /// Events received so far (method, params).
    events: Vec<(String, Value)>,
}

impl Tab {
    /// Sends one DevTools command and waits for its result; events that
    /// arrive meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "DevTools {method}: no answer");
            let v = self.read(method);
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("DevTools {method} failed: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    fn read(&mut self, what: &str) -> Value {
        loop {
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("DevTools {what}: reading: {e}"));
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(method) = v["method"].as_str() {
                    self.events.push((method.to_string(), v["params"].clone()));
                }
                return v;
            }
        }
    }

    /// Waits (bounded) for an event of this tab named `method` after the
    /// first `since` events.
    fn wait_event(&mut self, method: &str, since: usize) {
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !self.events[since..].iter().any(|(m, _)| m == method) {
            assert!(Instant::now() < deadline, "no {method} event");
            self.read(method);
        }
    }

    /// Sets the viewport (CSS pixels, scale 1; mobile below 600 px wide).
    pub fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&mut self, url: &str) {
        let since = self.events.len();
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
        self.wait_event("Page.loadEventFired", since);
    }

    /// Load events so far: pass to [`Tab::wait_load`].
    pub fn loads(&self) -> usize {
        self.events.len()
    }

    /// Waits for a load event after `since` (from [`Tab::loads`]).
    pub fn wait_load(&mut self, since: usize) {
        self.wait_event("Page.loadEventFired", since);
    }

    /// Reloads the page and waits for its load event.
    pub fn reload(&mut self) {
        let since = self.events.len();
        self.call("Page.reload", json!({}));
        self.wait_event("Page.loadEventFired", since);
    }

    /// Evaluates `js` in the page; its value (JSON).
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Clicks the centre of the first element matching `selector`, as a
    /// mouse would.
    pub fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            sel = json!(selector)
        ));
        let (x, y) = (
            at[0]
                .as_f64()
                .unwrap_or_else(|| panic!("no element {selector}")),
            at[1].as_f64().unwrap(),
        );
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Clicks `selector` and types `text` into it, as a keyboard would.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Selects everything in the focused field and deletes it.
    pub fn clear_focused(&mut self) {
        self.eval("document.activeElement.select()");
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8}),
            );
        }
    }

    /// A PNG of the whole page (not only the viewport) written to `path`;
    /// its width and height in pixels.
    pub fn screenshot(&mut self, path: &Path) -> (u32, u32) {
        self.call("Page.bringToFront", json!({}));
        let size = self
            .eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]");
        let (w, h) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        );
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            r["data"].as_str().unwrap(),
        )
        .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &png).unwrap();
        png_size(&png)
    }

    /// Texts of the console messages and log entries so far (CSP
    /// violations are reported there).
    pub fn console(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(m, p)| match m.as_str() {
                "Log.entryAdded" => p["entry"]["text"].as_str().map(String::from),
                "Runtime.consoleAPICalled" => Some(p["args"].to_string()),
                "Runtime.exceptionThrown" => Some(p["exceptionDetails"].to_string()),
                _ => None,
            })
            .collect()
    }

    /// JavaScript dialogs (`alert`, `confirm`, ...) the page opened.
    pub fn dialogs(&self) -> usize {
        self.events
            .iter()
            .filter(|(m, _)| m == "Page.javascriptDialogOpening")
            .count()
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        // Closing the context closes its tab.
        self.next_id += 1;
        let msg = json!({"id": self.next_id, "method": "Target.disposeBrowserContext",
                         "params": {"browserContextId": self.context}});
        let _ = self.ws.send(Message::text(msg.to_string()));
        let _ = self.ws.close(None);
    }
}

/// Width and height of a PNG, from its IHDR chunk.
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// Where the tests write their screenshots: `target/status-page/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("status-page")
}
