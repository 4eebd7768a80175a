//! The status page in a real browser: headless Chromium, driven over the DevTools protocol.
//!
//! hubdns serves the demo's data; Chromium loads `/`, and the test checks what a person would
//! see — the demo's endpoints with their IPs per AZ, the sources, the forwarding rules — then
//! types a name into the search box, clicks Explain with a real mouse event, and reads the
//! answer. A JavaScript exception anywhere fails the test. Chromium may resolve nothing but
//! loopback (`--host-resolver-rules`) and has its background networking off.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tungstenite::{Message as WsMessage, WebSocket, stream::MaybeTlsStream};

use crate::harness::tempdir;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The tab's session, once attached; commands without one go to the browser.
    session: Option<String>,
    /// JavaScript exceptions reported so far.
    exceptions: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch() -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; scripts/test does)"
        );
        let profile = tempdir().join("chromium-profile");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        // Chromium writes its DevTools port and browser endpoint to the profile once it listens.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (port, path) = loop {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse::<u16>), lines.next()) {
                break (port, path.to_owned());
            }
            assert!(Instant::now() < deadline, "Chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (socket, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}")).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        }
        let mut browser = Self { child, socket, next_id: 0, session: None, exceptions: Vec::new() };
        // A fresh tab, attached in flat mode: its commands carry the session id.
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
        browser.session = Some(attached["sessionId"].as_str().expect("session id").to_owned());
        browser.call("Runtime.enable", json!({}));
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Sends a DevTools command and returns its result, collecting events on the way.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        let text = command.to_string();
        self.socket.send(WsMessage::text(text)).expect("send to Chromium");
        loop {
            let message = self.socket.read().expect("read from Chromium");
            let Ok(text) = message.to_text() else { continue };
            let value: Value = serde_json::from_str(text).expect("DevTools JSON");
            if value["method"] == "Runtime.exceptionThrown" {
                self.exceptions.push(value["params"]["exceptionDetails"].clone());
            }
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method} failed: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true, or panics after `limit`.
    fn wait_until(&mut self, expression: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.eval(expression) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "not true within {limit:?}: {expression}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the middle of the element `selector` with real mouse events.
    fn click(&mut self, selector: &str) {
        let rect = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (rect[0].as_f64().expect("x"), rect[1].as_f64().expect("y"));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_the_demo_and_its_explain_search_works_in_chromium() {
    let (t, _replay, admin) = crate::operate::demo_server("").await;
    let url = format!("http://{admin}/");
    let checked = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        browser.call("Page.navigate", json!({ "url": url }));
        browser.wait_until("document.body && document.body.dataset.state === 'loaded'", Duration::from_secs(20));

        assert_eq!(browser.eval("document.title"), "hubdns status");
        assert_eq!(browser.eval("document.getElementById('readiness').textContent"), "ready");
        let endpoints = browser.eval("document.querySelector('#endpoints tbody').innerText");
        let endpoints = endpoints.as_str().expect("text");
        for expected in [
            "vpce-0f1e2d3c4b5a69788",
            "com.amazonaws.us-east-1.secretsmanager",
            "secretsmanager.us-east-1.amazonaws.com.",
            "us-east-1a (use1-az1): 10.10.1.25",
            "us-east-1b (use1-az2): 10.10.2.41",
            "vpce-0123456789abcdef0",
            // Issue 17: a resource endpoint's verified custom domain, and one it does not serve.
            "proxy.egress.example — private DNS entry, VERIFIED",
            "squid.internal.egress-provider.example — DNS resource domain",
            "not served",
        ] {
            assert!(endpoints.contains(expected), "endpoints table lacks {expected}:\n{endpoints}");
        }
        let sources = browser.eval("document.querySelector('#sources tbody').innerText");
        assert!(sources.as_str().is_some_and(|s| s.contains("vpc_endpoints/us-east-1") && s.contains("route53/us-east-1")), "{sources}");
        let forward = browser.eval("document.querySelector('#forward tbody').innerText");
        assert!(forward.as_str().is_some_and(|f| f.contains("127.0.0.1:9") && f.contains("healthy")), "{forward}");

        // Type a name, pick a type, click Explain.
        browser.eval("document.getElementById('explain-name').focus()");
        browser.call("Input.insertText", json!({ "text": "internal-api.corp.example" }));
        browser.eval("document.getElementById('explain-type').value = 'A'");
        browser.click("#explain-button");
        browser.wait_until("document.getElementById('explain-result').dataset.state === 'answered'", Duration::from_secs(10));
        let result = browser.eval("document.getElementById('explain-result').innerText");
        let result = result.as_str().expect("text").to_owned();
        for expected in ["Answered by hubdns", "NOERROR", "10.10.1.77", "10.10.2.78", "route53"] {
            assert!(result.contains(expected), "explain result lacks {expected}:\n{result}");
        }
        assert_eq!(browser.eval("location.search"), "?name=internal-api.corp.example&type=A", "the search is a shareable link");

        // Issue 18: where clients are, and an explanation as one client gets the answer.
        let az = browser.eval("document.querySelector('#az tbody').innerText");
        assert!(az.as_str().is_some_and(|a| a.contains("127.0.0.2/32") && a.contains("use1-az2") && a.contains("10.10.1.0/24")), "{az}");
        browser.eval("document.getElementById('explain-name').value = ''");
        browser.eval("document.getElementById('explain-name').focus()");
        browser.call("Input.insertText", json!({ "text": "secretsmanager.us-east-1.amazonaws.com" }));
        browser.eval("document.getElementById('explain-client').value = '127.0.0.2'");
        // The last explanation (a Route 53 alias of an endpoint) had an AZ line too: wait for this one.
        browser.eval("document.getElementById('explain-result').replaceChildren(); document.getElementById('explain-result').dataset.state = ''");
        browser.click("#explain-button");
        browser.wait_until("document.getElementById('explain-result').dataset.state === 'answered'", Duration::from_secs(10));
        let placed = browser.eval("document.getElementById('explain-az').innerText");
        assert!(placed.as_str().is_some_and(|p| p.contains("client 127.0.0.2: AZ use1-az2") && p.contains("same_az")), "{placed}");
        let first = browser.eval("document.querySelector('#explain-records tbody tr td:nth-child(4)').innerText");
        assert_eq!(first, "10.10.2.41", "the client's AZ's address first");
        assert_eq!(browser.eval("location.search"), "?name=secretsmanager.us-east-1.amazonaws.com&type=A&client=127.0.0.2");
        browser.eval("document.getElementById('explain-client').value = ''");

        // A name that is forwarded says where it goes.
        browser.eval("document.getElementById('explain-name').value = ''");
        browser.eval("document.getElementById('explain-name').focus()");
        browser.call("Input.insertText", json!({ "text": "www.example.org" }));
        browser.click("#explain-button");
        browser.wait_until("document.getElementById('explain-verdict')?.textContent === 'Forwarded upstream'", Duration::from_secs(10));
        assert!(browser.exceptions.is_empty(), "JavaScript exceptions: {:?}", browser.exceptions);
        result
    })
    .await
    .expect("browser session");
    assert!(checked.contains("internal-api.corp.example."));
    t.server.stop().await;
}
