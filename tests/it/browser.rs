//! The trace viewer in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against a real server that ran real programs in Docker. Each test leaves a screenshot in
//! `target/screenshots/` for people to look at. Last, a hostile page on another origin, served
//! by the test, tries to drive the server through the browser.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::sandboxes::SandboxServer;
use crate::common::{TestServer, patience};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Fail, never skip, when the browser is missing: a green run must mean the pages were tested.
fn require_chromium() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|path| !Path::new(path).exists()).collect();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        missing.is_empty(),
        "the browser tests need {missing:?}: run scripts/ensure-chromium.sh (scripts/test.sh does){}",
        if in_ci { " — CI must install it" } else { "" }
    );
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// One chromedriver and one Chromium session in a fresh profile. Dropping it ends both:
/// chromedriver runs in its own process group, and the whole group (the browser with it) is killed.
struct Browser {
    client: Client,
    _driver: DriverGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open() -> Browser {
        require_chromium();
        let (guard, url) = start_driver().await;
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(profile.path()))
            .connect(&url)
            .await
            .expect("a Chromium session opens");
        Browser { client, _driver: guard, _profile: profile }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(patience())
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.expect("a query") {
            texts.push(element.text().await.expect("its text"));
        }
        texts
    }

    async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.expect("the script runs")
    }

    /// Wait until `script` returns true in the page.
    async fn until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + patience();
        while self.script(script).await != Value::Bool(true) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page at `width`, in `target/screenshots/<name>.png`.
    async fn screenshot(&self, name: &str, width: u32) {
        self.client.set_window_size(width, 900).await.expect("the window resizes");
        // The window's height includes the browser's own bars: add them, so the page fits whole.
        let script = "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight";
        let height = self.script(script).await.as_u64().unwrap_or(900);
        self.client.set_window_size(width, height.clamp(400, 6000) as u32).await.expect("the window resizes");
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
        self.client.set_window_size(1280, 900).await.expect("the window resizes");
    }

    /// End the session (the browser quits), then chromedriver. A test that panics before this
    /// still ends both, when the guard drops.
    async fn close(self) {
        self.client.clone().close().await.expect("the session ends");
    }
}

/// Owns chromedriver: dropping it kills chromedriver's process group (chromedriver leads it),
/// which takes the browser along, whether or not the session was closed.
struct DriverGuard(Child);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        // The group is killed before the leader is reaped, so its id cannot have been reused.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chromedriver answering on a port of its own, and its URL. The port was free when it was
/// picked, but another process (a parallel test) may take it before chromedriver binds it: then
/// chromedriver exits, and another port is tried.
async fn start_driver() -> (DriverGuard, String) {
    for _ in 0..5 {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        // Owned by the guard from here on, so a failure below still ends chromedriver.
        let mut guard = DriverGuard(driver);
        let url = format!("http://127.0.0.1:{port}");
        if wait_for_driver(&url, &mut guard).await {
            return (guard, url);
        }
    }
    panic!("chromedriver could not listen on any of five free ports")
}

/// Wait until chromedriver answers on `url`; false when it exited first (its port was taken).
async fn wait_for_driver(url: &str, driver: &mut DriverGuard) -> bool {
    let client = crate::common::http_client(patience());
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        if let Ok(response) = client.get(format!("{url}/status")).send().await
            && response.status().is_success()
            && response.text().await.is_ok_and(|body| body.contains("ready"))
        {
            return true;
        }
        if driver.0.try_wait().is_ok_and(|exited| exited.is_some()) {
            return false;
        }
        assert!(tokio::time::Instant::now() < deadline, "chromedriver did not answer on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-sync".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=1280,900".to_owned(),
    ];
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    caps.as_object().cloned().expect("an object")
}

fn screenshot_dir() -> PathBuf {
    let target =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into());
    PathBuf::from(target).join("screenshots")
}

fn id_of(reply: &Value) -> String {
    reply["trace_id"].as_str().expect("a trace id").to_owned()
}

#[tokio::test]
async fn the_search_box_finds_a_trace_by_a_word_of_its_output() {
    let server = TestServer::spawn().await;
    let wanted = id_of(&server.run("python", "print('the marmoset sings at dawn')").await);
    let other = id_of(&server.run("node", "console.log('nothing to see')").await);
    server.run("python", "import sys; print('an error', file=sys.stderr); sys.exit(1)").await;
    let browser = Browser::open().await;

    browser.goto(&server.url("/traces")).await;
    assert_eq!(browser.texts("table.traces tbody tr").await.len(), 3);
    browser.screenshot("traces-list", 1280).await;
    browser.screenshot("traces-list-phone", 390).await;

    browser.find("input[name=q]").await.send_keys("marmoset").await.unwrap();
    browser.find("form.filters button[type=submit]").await.click().await.unwrap();
    browser.until("the search has run", "return location.search.includes('q=marmoset')").await;
    let rows = browser.script("return [...document.querySelectorAll('tbody tr')].map(r => r.dataset.traceId)").await;
    assert_eq!(rows, json!([wanted]));
    assert!(!rows.to_string().contains(&other));
    let kept = browser.find("input[name=q]").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("marmoset"), "the box keeps the search");
    let export = browser.find("a[href^='/traces/export']").await.attr("href").await.unwrap().unwrap();
    assert!(export.contains("q=marmoset"), "the export link carries the filter: {export}");
    browser.screenshot("traces-search", 1280).await;
    browser.close().await;
}

#[tokio::test]
async fn markup_in_output_shows_as_text_and_never_runs() {
    let server = TestServer::spawn().await;
    let payload = r#"<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">"#;
    let code = format!("print('''{payload}''')\nimport sys\nprint('''{payload}''', file=sys.stderr)");
    let id = id_of(&server.run("python", &code).await);
    let browser = Browser::open().await;

    browser.goto(&server.url(&format!("/trace/{id}"))).await;
    assert_eq!(browser.find("#stdout").await.text().await.unwrap(), payload);
    assert_eq!(browser.find("#stderr").await.text().await.unwrap(), payload);
    assert!(browser.find("#code").await.text().await.unwrap().contains(payload));
    assert_eq!(browser.script("return document.querySelectorAll('main script, main img').length").await, json!(0));
    assert_eq!(browser.script("return typeof window.__pwned").await, json!("undefined"));
    browser.screenshot("trace-hostile-output", 1280).await;

    browser.goto(&server.url("/traces")).await;
    assert!(browser.find("tbody .col-code code").await.text().await.unwrap().contains("<script>"));
    assert_eq!(browser.script("return typeof window.__pwned").await, json!("undefined"));
    browser.close().await;
}

#[tokio::test]
async fn the_trace_page_shows_highlighted_code_output_timeline_and_its_raw_json() {
    let server = TestServer::spawn().await;
    let code = "import sys\n# count to a hundred\nfor i in range(100):\n    print(f'line {i}')\nprint('done', file=sys.stderr)\nsys.exit(3)";
    let id = id_of(&server.run("python", code).await);
    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{id}"))).await;

    browser.find("#code.hljs").await;
    let tokens = browser.script("return document.querySelectorAll('#code span[class^=\"hljs-\"]').length").await;
    assert!(tokens.as_u64().unwrap() >= 3, "highlight.js marked up the code: {tokens}");
    assert!(browser.find("#stdout").await.text().await.unwrap().starts_with("line 0\nline 1\n"));
    assert_eq!(browser.find("#stderr").await.text().await.unwrap(), "done");
    assert!(browser.find(".explain .headline").await.text().await.unwrap().contains("exited with code 3"));
    let events = browser.texts("table.timeline tbody tr td:nth-child(3)").await;
    assert!(events.contains(&"container.started".to_owned()) && events.contains(&"finished".to_owned()), "{events:?}");
    assert_eq!(browser.texts("table.timeline svg.bar").await.len(), events.len(), "every event has a bar");

    // Copy hands the pane's exact text to the clipboard (stubbed here to read it back).
    browser
        .script("Object.defineProperty(navigator, 'clipboard', {configurable: true, value: {writeText: async t => { window.__copied = t; }}}); return true")
        .await;
    browser.find("button.copy[data-copy=code]").await.click().await.unwrap();
    browser.until("the code is copied", "return window.__copied !== undefined").await;
    assert_eq!(browser.script("return window.__copied").await, json!(code));
    browser.find("button.copy[data-copy=stderr]").await.click().await.unwrap();
    browser.until("stderr is copied", "return window.__copied === 'done\\n'").await;

    // A hundred lines are folded until asked for.
    let folded = "return document.getElementById('stdout').classList.contains('folded')";
    assert_eq!(browser.script(folded).await, json!(true));
    browser.screenshot("trace-detail", 1280).await;
    browser.screenshot("trace-detail-phone", 390).await;
    let unfold = browser.find("button.unfold[data-target=stdout]").await;
    unfold.click().await.unwrap();
    assert_eq!(browser.script(folded).await, json!(false));
    assert_eq!(unfold.attr("aria-expanded").await.unwrap().as_deref(), Some("true"));

    browser.find("a[href$='?format=json']").await.click().await.unwrap();
    browser.until("the raw JSON is shown", "return location.search === '?format=json'").await;
    let raw: Value = serde_json::from_str(&browser.find("body").await.text().await.unwrap()).expect("the page is JSON");
    assert_eq!((raw["id"].as_str(), raw["exit_code"].as_i64()), (Some(id.as_str()), Some(3)));
    browser.close().await;
}

#[tokio::test]
async fn the_download_link_gives_the_exact_stdout() {
    let server = TestServer::spawn().await;
    let id = id_of(&server.run("python", "print('tab\\there, ünïcode, <tag> & amp')\nprint('  trailing  ')").await);
    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{id}"))).await;
    let href = browser.find(".pane-stdout a[download]").await.attr("href").await.unwrap().expect("an href");
    assert_eq!(href, format!("/trace/{id}/output/stdout"));
    browser.close().await;

    let response = server.client.get(server.url(&href)).send().await.unwrap();
    assert_eq!(response.headers()["content-disposition"], format!("attachment; filename=\"{id}-stdout.txt\"").as_str());
    assert_eq!(response.bytes().await.unwrap().as_ref(), "tab\there, ünïcode, <tag> & amp\n  trailing  \n".as_bytes());
}

#[tokio::test]
async fn a_running_trace_updates_in_the_list_without_a_reload() {
    let server = TestServer::spawn().await;
    let browser = Browser::open().await;
    // A run that waits for a line of stdin, sent over the WebSocket once the page shows it
    // running: it cannot end before the page looked, however slow the machine.
    let ws_url = server.url("/ws").replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.expect("the WebSocket opens");
    let execute = json!({"type": "execute", "id": "r", "code": "input()\nprint('awake')"});
    socket.send(Message::text(execute.to_string())).await.unwrap();
    let id = loop {
        let frame = socket.next().await.expect("a frame").expect("a good frame");
        if let Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "started" {
                break frame["trace_id"].as_str().unwrap().to_owned();
            }
        }
    };
    browser.goto(&server.url("/traces")).await;
    let row = format!("tr[data-trace-id='{id}']");
    assert_eq!(browser.find(&format!("{row} .status")).await.text().await.unwrap(), "running");
    browser.script("window.__samePage = true; return true").await;
    browser.screenshot("traces-running", 1280).await;
    let stdin = json!({"type": "stdin", "id": "r", "data": "go\n"});
    socket.send(Message::text(stdin.to_string())).await.unwrap();

    browser
        .until(
            "the row shows the run finished",
            &format!("return document.querySelector(\"{row}\").dataset.status === 'success'"),
        )
        .await;
    assert_eq!(browser.script("return window.__samePage === true").await, json!(true), "no reload happened");
    assert_eq!(browser.find(&format!("{row} .col-exit")).await.text().await.unwrap(), "0");
    let duration = browser.find(&format!("{row} .col-duration")).await.text().await.unwrap();
    assert!(duration.ends_with(" ms") || duration.ends_with(" s"), "{duration}");
    browser.close().await;
}

#[tokio::test]
async fn the_trace_page_explains_a_timeout_and_shows_policy_hits_redactions_and_limits() {
    let server = TestServer::spawn().await;
    // The key is built at run time, so only the output (not the code) holds it whole.
    let code = "import socket, time\nprint('AKIA' + 'IOSFODNN7EXAMPLE', flush=True)\ntime.sleep(30)";
    let (status, reply) = server.execute(json!({"code": code, "timeout": 1, "env": {"API_TOKEN": "hunter2"}})).await;
    assert_eq!(status, 200, "{reply}");
    let id = id_of(&reply);
    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{id}"))).await;

    let explained = browser.texts(".explain p").await;
    assert!(explained[0].starts_with("Timed out"), "{explained:?}");
    assert!(explained[1].contains("1 s timeout"), "the run's own message follows: {explained:?}");
    assert_eq!(browser.find("#stdout").await.text().await.unwrap(), "[REDACTED:aws_access_key_id]");
    assert_eq!(
        browser.texts("#redactions-title + .hint + .table-wrap tbody td:first-child").await,
        ["aws_access_key_id"]
    );
    assert_eq!(browser.texts("#policy-title + .table-wrap tbody td:first-child").await, ["python.network"]);
    let limits = browser.script("return [...document.querySelectorAll('dl.limits div')].map(d => d.querySelector('dt').textContent + '=' + d.querySelector('dd').textContent)").await;
    assert!(limits.as_array().unwrap().contains(&json!("time=1 s")), "{limits}");
    let page = browser.find("main").await.text().await.unwrap();
    assert!(page.contains("API_TOKEN") && !page.contains("hunter2"), "env names only, never values");
    browser.screenshot("trace-timeout", 1280).await;
    browser.close().await;
}

// ---- the playground ---------------------------------------------------------------------------

/// WebDriver key codes, for keys typed into the page.
const ENTER: &str = "\u{E007}";
const CONTROL: &str = "\u{E009}";
/// Releases held modifier keys.
const RELEASE: &str = "\u{E000}";

/// Open the playground and wait until its WebSocket is connected.
async fn playground(browser: &Browser, server: &TestServer) {
    browser.goto(&server.url("/")).await;
    browser
        .until("the playground connects", "return document.getElementById('connection').dataset.state === 'ok'")
        .await;
}

/// Put `code` in the editor as a paste would (typing would be re-indented by the editor).
async fn set_code(browser: &Browser, code: &str) {
    let script = "const area = document.getElementById('code'); area.value = arguments[0]; \
                  area.dispatchEvent(new Event('input')); return true";
    browser.client.execute(script, vec![json!(code)]).await.expect("the code is set");
}

async fn status(browser: &Browser) -> String {
    browser.find("#status").await.text().await.expect("the status")
}

#[tokio::test]
async fn the_playground_streams_output_takes_stdin_and_links_to_the_trace() {
    let server = TestServer::spawn().await;
    let browser = Browser::open().await;
    playground(&browser, &server).await;
    let code = "import sys, time\nprint('tick 1', flush=True)\ntime.sleep(1)\nprint('oops', file=sys.stderr, flush=True)\nname = input('name? ')\nprint('hello', name)";
    set_code(&browser, code).await;
    browser.find("#run").await.click().await.expect("Run is clicked");

    browser
        .until("the first line streams in", "return document.getElementById('output').textContent.includes('tick 1')")
        .await;
    assert_eq!(status(&browser).await, "running", "output shows while the program still runs");
    browser
        .until(
            "stderr shows, set apart",
            "return [...document.querySelectorAll('.out-stderr')].some(e => e.textContent.includes('oops'))",
        )
        .await;
    browser.until("the prompt shows", "return document.getElementById('output').textContent.includes('name? ')").await;
    browser.find("#input").await.send_keys(&format!("Ada{ENTER}")).await.expect("a line is typed");
    browser.until("the run ends", "return document.getElementById('status').textContent === 'success'").await;
    let output = browser.find("#output").await.text().await.unwrap();
    assert!(output.contains("hello Ada"), "{output}");
    assert_eq!(browser.find("#exit-code").await.text().await.unwrap(), "exit code 0");
    browser.screenshot("playground", 1280).await;
    browser.screenshot("playground-phone", 390).await;

    browser.find("#trace-link").await.click().await.expect("the trace link is followed");
    browser.until("the trace page opens", "return location.pathname.startsWith('/trace/')").await;
    let stdout = browser.texts("pre.stdout, .stdout pre, #stdout").await.concat();
    assert!(stdout.contains("hello Ada"), "the trace shows the run's output: {stdout:?}");
    browser.close().await;
}

#[tokio::test]
async fn ctrl_enter_runs_and_kill_stops_a_runaway_program() {
    let server = TestServer::spawn().await;
    let browser = Browser::open().await;
    playground(&browser, &server).await;
    browser.client.execute("document.getElementById('language').value = 'node'; return true", vec![]).await.unwrap();
    set_code(&browser, "console.log('spinning'); setInterval(() => {}, 1000);").await;
    let editor = browser.find("#code").await;
    editor.send_keys(&format!("{CONTROL}{ENTER}{RELEASE}")).await.expect("Ctrl+Enter is pressed");
    browser
        .until("the program runs", "return document.getElementById('output').textContent.includes('spinning')")
        .await;

    browser.find("#kill").await.click().await.expect("Kill is clicked");
    browser.until("the run is killed", "return document.getElementById('status').textContent === 'killed'").await;
    let message = browser.find("#message").await.text().await.unwrap();
    assert!(message.contains("stopped by its client"), "{message}");
    browser.close().await;
}

#[tokio::test]
async fn the_trace_page_lists_the_artifacts_and_shows_an_image_inline() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", crate::artifacts::PNG_PROGRAM).await;
    let id = id_of(&reply);
    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{id}"))).await;
    let image = browser.find(".artifact-image img").await;
    browser
        .until(
            "the image has loaded",
            "const i = document.querySelector('.artifact-image img'); return i.complete && i.naturalWidth > 0",
        )
        .await;
    let size = browser
        .script("const i = document.querySelector('.artifact-image img'); return [i.naturalWidth, i.naturalHeight]")
        .await;
    assert_eq!(size, json!([64, 32]), "the PNG the run made, decoded by the browser");
    assert_eq!(image.attr("alt").await.unwrap().as_deref(), Some("out/plot.png"));
    let listed = browser.texts("table.artifacts td:first-child").await;
    assert_eq!(listed, ["out/plot.png", "out/result.txt"]);
    let href = browser.find("table.artifacts a[download]").await.attr("href").await.unwrap().expect("an href");
    assert_eq!(href, reply["artifacts"][0]["url"]);
    browser.screenshot("trace-artifacts", 1000).await;
    browser.close().await;

    // Showing the image read the trace; it made no download trace. The link is a traced download.
    let (_, downloads) = server.get_json("/traces?kind=download").await;
    assert_eq!(downloads["traces"], json!([]), "{downloads}");
    let bytes = server.client.get(server.url(&href)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(crate::common::sha256(&bytes), reply["artifacts"][0]["sha256"]);
}

#[tokio::test]
async fn a_batch_page_lists_its_items_and_a_claude_page_shows_the_prompt_and_reply() {
    let fake = crate::common::FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let promptset = "{\"id\": \"asked\", \"prompt\": \"Reply with:\\n```python\\nprint('from claude')\\n```\", \"expect\": {\"stdout_contains\": \"from claude\"}}\n{\"id\": \"wrong\", \"code\": \"print(1)\", \"expect\": {\"stdout_contains\": \"2\"}}\n";
    let response = server
        .client
        .post(server.url("/batch"))
        .json(&json!({"promptset": promptset, "name": "demo.jsonl"}))
        .send()
        .await
        .unwrap();
    let lines = response.text().await.unwrap();
    let done: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(done["type"], "done", "{lines}");
    let batch_id = done["batch_id"].as_str().unwrap().to_owned();

    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{batch_id}"))).await;
    browser.find("table.batch-items").await;
    assert_eq!(browser.texts("table.batch-items td:first-child").await, ["asked", "wrong"]);
    assert_eq!(browser.texts("table.batch-items .outcome").await, ["passed", "failed"]);
    assert!(browser.texts(".explain .headline").await[0].contains("1 of 2 items passed"));
    browser.screenshot("trace-batch", 1000).await;

    browser.find("table.batch-items a[href^='/trace/']").await.click().await.unwrap();
    browser.find("#reply").await;
    assert!(browser.texts("#prompt").await[0].starts_with("Reply with:"));
    assert!(browser.texts("#reply").await[0].contains("print('from claude')"));
    assert!(browser.texts(".explain .headline").await[0].starts_with("Claude answered"));
    let children = browser.texts("section[aria-labelledby=children-title] td:nth-child(2)").await;
    assert_eq!(children, ["success"], "the reply's code ran as a child");
    browser.screenshot("trace-claude", 1000).await;
    browser.close().await;
}

#[tokio::test]
async fn a_sandbox_page_shows_its_steps_in_order_with_their_outputs_and_links_to_each_and_back() {
    let server = SandboxServer::spawn().await;
    let sandbox = server.sandbox(json!({})).await;
    let trace_id = server.trace_of(&sandbox).await;
    let payload = r#"<script>window.__pwned=1</script>"#;
    let printed =
        server.command(&sandbox, &format!("echo hello from step one; echo 'a warning' >&2; echo '{payload}'")).await;
    assert_eq!(printed["exit_code"], 0, "{printed}");
    server.code(&sandbox, "answer = 6 * 7\nanswer").await;
    server.code(&sandbox, "answer / 0").await;
    let (status, wrote) = server.write(&sandbox, "notes/todo.txt", "buy milk").await;
    assert_eq!(status, 200, "{wrote}");
    let (status, called) =
        server.post(&format!("/sandboxes/{sandbox}/tools/git"), json!({"args": ["status", "--short"]})).await;
    assert_eq!(status, 200, "{called}");
    let browser = Browser::open().await;
    browser.goto(&server.url(&format!("/trace/{trace_id}"))).await;

    browser.find("ol.steps").await;
    assert_eq!(browser.texts("ol.steps > li h3").await, ["Step 1", "Step 2", "Step 3", "Step 4", "Step 5"]);
    assert_eq!(browser.texts("ol.steps > li .kind").await, ["command", "cell", "cell", "write", "tool: git"]);
    assert_eq!(browser.texts("ol.steps > li .status").await, ["success", "success", "error", "success", "error"]);
    let offsets =
        browser.script("return [...document.querySelectorAll('ol.steps .offset')].map(e => e.textContent)").await;
    assert!(offsets.as_array().unwrap().iter().all(|o| o.as_str().unwrap().starts_with('+')), "{offsets}");
    assert!(browser.find(".explain .headline").await.text().await.unwrap().starts_with("Running: 5 steps so far"));

    let step = |n: usize, css: &str| format!("ol.steps > li:nth-child({n}) {css}");
    let command = browser.texts(&step(1, "dd pre.code")).await;
    assert!(command[0].starts_with("echo hello from step one;"), "the command, whole: {command:?}");
    assert_eq!(
        browser.find(&step(1, "pre.stdout")).await.text().await.unwrap(),
        format!("hello from step one\n{payload}")
    );
    assert_eq!(browser.find(&step(1, "pre.stderr")).await.text().await.unwrap(), "a warning");
    assert_eq!(browser.script("return typeof window.__pwned").await, json!("undefined"), "printed markup never runs");
    assert_eq!(browser.script("return document.querySelectorAll('main script').length").await, json!(0));
    assert_eq!(browser.find(&step(2, "pre.result")).await.text().await.unwrap(), "42");
    assert!(browser.find(&step(2, "code.language-python.hljs")).await.text().await.unwrap().contains("answer = 6 * 7"));
    let raised = browser.find(&step(3, ".raised")).await.text().await.unwrap();
    assert_eq!(raised, "ZeroDivisionError: division by zero");
    let facts = browser.script(&format!("return [...document.querySelectorAll(\"{}\")].map(d => d.querySelector('dt').textContent + '=' + d.querySelector('dd').textContent)", step(4, "dl.step-io > div"))).await;
    assert_eq!(facts, json!(["path=notes/todo.txt", "size=8 bytes"]));
    // A tool call reads as it would be typed; /workspace is no repository, so git says so.
    assert_eq!(browser.find(&step(5, "dd pre.code")).await.text().await.unwrap(), "git status --short");
    assert!(browser.find(&step(5, "pre.output")).await.text().await.unwrap().contains("not a git repository"));
    browser.screenshot("trace-sandbox", 1280).await;
    browser.screenshot("trace-sandbox-phone", 390).await;

    // A step's page, and from it back to the step in its sandbox's list.
    browser.find(&step(3, "h3 a")).await.click().await.unwrap();
    browser.until("the step's page opens", "return document.querySelector('h1').textContent.includes('cell')").await;
    assert!(browser.texts(".explain p").await.concat().contains("ZeroDivisionError: division by zero"));
    browser.screenshot("trace-sandbox-step", 1000).await;
    let back = browser.find("dl.facts a[href*='#step-']").await;
    assert_eq!(back.text().await.unwrap(), format!("step 3 of {sandbox}"));
    back.click().await.unwrap();
    browser.until("the sandbox's page is back", "return location.hash.startsWith('#step-')").await;
    let target = browser.script("return document.querySelector(':target h3').textContent").await;
    assert_eq!(target, json!("Step 3"), "the link lands on the step it came from");
    browser.close().await;
    server.delete(&sandbox).await;
}

// ---- pages of other origins ---------------------------------------------------------------------

/// A site of another origin, as a hostile page's would be: every path answers `html`. It is
/// stopped when dropped.
struct ForeignSite {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl ForeignSite {
    async fn serve(html: String) -> ForeignSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port for the foreign site");
        let port = listener.local_addr().expect("its address").port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer_with(socket, html.clone()));
            }
        });
        ForeignSite { port, task }
    }
}

impl Drop for ForeignSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read a request's head and answer `html`, closing the connection.
async fn answer_with(mut socket: tokio::net::TcpStream, html: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    let _ = socket.write_all(answer.as_bytes()).await;
}

/// A hostile page aimed at the tracebox at `target` (`http://127.0.0.1:PORT`): as it loads, a
/// `no-cors` fetch that POSTs code to /execute (no preflight, its answer unreadable, the one
/// way a page could send it before) and a WebSocket that would run code; its results land in
/// `window.__results`. It also holds a text/plain form that POSTs a JSON body to /execute, and
/// a link to the trace list.
fn hostile_page(target: &str) -> String {
    let ws = target.replacen("http://", "ws://", 1);
    format!(
        r#"<!doctype html>
<html><head><title>hostile</title></head><body>
<form id="form" method="POST" action="{target}/execute" enctype="text/plain">
<input name='{{"code": "print(\"pwned by a form\")", "x": "' value='"}}'>
</form>
<a id="link" href="{target}/traces">the traces</a>
<script>
window.__results = {{}};
fetch("{target}/execute", {{method: "POST", mode: "no-cors", body: JSON.stringify({{code: "print('pwned')"}})}})
  .then(() => window.__results.fetch = "answered", e => window.__results.fetch = "failed: " + e);
const ws = new WebSocket("{ws}/ws");
ws.onopen = () => {{
  window.__results.ws = "open";
  ws.send(JSON.stringify({{type: "execute", id: "x", code: "print('pwned by a socket')"}}));
}};
ws.onclose = () => {{ window.__results.ws = window.__results.ws || "refused"; }};
</script>
</body></html>"#
    )
}

/// How many requests the server refused as cross-origin, by its log.
fn refused_cross_origin(server: &TestServer) -> usize {
    server.logged().lines().filter(|line| line.contains("cross_origin")).count()
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_run_code_through_the_browser_but_its_links_to_pages_work() {
    let server = TestServer::spawn().await;
    let site = ForeignSite::serve(hostile_page(&server.url)).await;
    let browser = Browser::open().await;
    let settled = "return window.__results.fetch !== undefined && window.__results.ws !== undefined";

    // Another port of the same host (same-site, another origin), then another site.
    for host in ["127.0.0.1", "localhost"] {
        let before = refused_cross_origin(&server);
        browser.goto(&format!("http://{host}:{}/", site.port)).await;
        browser.until("the page's fetch and socket have been answered", settled).await;
        assert_eq!(browser.script("return window.__results.fetch").await, json!("answered"), "from {host}");
        assert_eq!(browser.script("return window.__results.ws").await, json!("refused"), "from {host}");
        let refused = || refused_cross_origin(&server) >= before + 2;
        crate::common::eventually("the server logs both refusals", refused).await;
    }

    // The form's POST is a navigation, and shows the refusal to the person, not the page.
    browser.script("document.getElementById('form').submit(); return true").await;
    let shown = "return location.pathname === '/execute' && document.body.textContent.includes('cross_origin')";
    browser.until("the form's POST is refused", shown).await;
    browser.screenshot("cross-origin-form", 1000).await;

    // A link from elsewhere to a page of the server is followed: it is how traces are shared.
    browser.goto(&format!("http://localhost:{}/", site.port)).await;
    browser.find("#link").await.click().await.expect("the link is followed");
    browser.until("the trace list opens", "return location.pathname === '/traces'").await;
    browser.find("form.filters").await;
    browser.close().await;

    let (status, traces) = server.get_json("/traces").await;
    assert_eq!(status, 200, "{traces}");
    assert_eq!(traces["traces"], json!([]), "no code ran and no trace was stored");
}

// ---- signing in ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_browser_signs_in_with_a_key_once_sees_its_tenants_traces_and_signs_out() {
    let server = TestServer::spawn().await;
    let alice = crate::access::create_key(&server, "alice", &[]);
    let bob = crate::access::create_key(&server, "bob", &[]);
    crate::access::run(&crate::access::client_of(&alice), &server, "print('the okapi grazes')").await;
    crate::access::run(&crate::access::client_of(&bob), &server, "print('the gnu migrates')").await;
    let browser = Browser::open().await;

    // A page asked for without a key sends the browser to sign in, and back afterwards.
    browser.goto(&server.url("/traces")).await;
    browser.until("the sign-in page shows", "return location.pathname === '/login'").await;
    browser.screenshot("login", 1280).await;
    browser.find("input[name=key]").await.send_keys("tbx_0123456789abcdef_wrong").await.unwrap();
    browser.find("form button[type=submit]").await.click().await.unwrap();
    let error = browser.find("p.error").await.text().await.unwrap();
    assert!(error.contains("not valid"), "{error}");

    browser.find("input[name=key]").await.send_keys(&alice).await.unwrap();
    browser.find("form button[type=submit]").await.click().await.unwrap();
    browser.until("the list shows", "return location.pathname === '/traces'").await;
    let rows = browser.texts("table.traces tbody tr").await;
    assert_eq!(rows.len(), 1, "alice's run only: {rows:?}");
    assert!(rows[0].contains("okapi"), "{rows:?}");

    // The cookie holds a session token, never the key; no script of the page can read it.
    assert_eq!(browser.script("return document.cookie").await, json!(""));
    let cookie = browser.client.get_named_cookie("tracebox_session").await.expect("the session cookie");
    assert!(cookie.value().starts_with("tbt_") && !cookie.value().contains(&alice[21..]), "{}", cookie.value());
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| s.to_string()), Some("Strict".to_owned()));
    assert_eq!(cookie.secure(), Some(false), "Secure only over HTTPS");

    // The playground's WebSocket carries the session too, and its run is alice's.
    playground(&browser, &server).await;
    set_code(&browser, "print('signed in')").await;
    browser.find("#run").await.click().await.unwrap();
    browser.until("the run ends", "return document.getElementById('status').textContent === 'success'").await;
    let (_, page) = crate::access::get(&crate::access::client_of(&alice), &server, "/traces?format=json").await;
    let previews: Vec<&str> = page["traces"].as_array().unwrap().iter().filter_map(|t| t["preview"].as_str()).collect();
    assert!(previews.contains(&"print('signed in')"), "the playground's run is alice's: {previews:?}");

    browser.find("form.signout button").await.click().await.unwrap();
    browser.until("signed out", "return location.pathname === '/login'").await;
    browser.goto(&server.url("/traces")).await;
    browser.until("the list asks for a key again", "return location.pathname === '/login'").await;
    browser.close().await;
}
