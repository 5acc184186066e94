//! Helpers for the integration tests: a real `tracebox serve` process on a free port with its
//! own data directory, a real HTTP client, and the real Docker engine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

pub mod pool;
pub mod sandboxes;

/// Every wait in these tests is bounded by TRACEBOX_TEST_PATIENCE_SECS (default 60); raise it
/// on a slow machine.
pub fn patience() -> Duration {
    let secs = std::env::var("TRACEBOX_TEST_PATIENCE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

/// An HTTP client for the tests, with every request bounded by `timeout`.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    tracebox::http_client::builder().timeout(timeout).build().expect("an HTTP client")
}

/// Fail, never skip, when the engine is missing: a green run must mean the sandbox was tested.
pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need a running Docker engine: run scripts/ensure-docker.sh (or scripts/test.sh, which does everything)"
    );
}

/// The Docker runtime the test servers' containers run under: `TRACEBOX_RUNTIME` as the tests
/// are run with it (`.ci/run` runs the container's tests a second time under `runsc`), else
/// `runc`.
pub fn runtime() -> String {
    std::env::var("TRACEBOX_RUNTIME").ok().filter(|name| !name.is_empty()).unwrap_or_else(|| "runc".into())
}

/// Are the containers under gVisor (`runsc`)? A test that asserts what differs there names it
/// with this, so each runtime's behaviour is asserted, never skipped.
pub fn gvisor() -> bool {
    runtime() == "runsc"
}

/// A run ended for its memory: `oom`. Under gVisor (runsc) the verdict depends on who ended it:
/// the host's OOM killer taking the sandbox is reported by Docker and is `oom`; gVisor's own
/// OOM killer, inside the sandbox, ends only the program with SIGKILL, which tracebox cannot tell
/// from any other SIGKILL: `error`, exit 137 (docs/security.md, "A second wall: gVisor").
pub fn assert_ended_for_memory(reply: &Value) {
    if gvisor() && reply["status"] == "error" {
        assert_eq!(reply["exit_code"], 137, "under runsc, killed by SIGKILL: {reply}");
        return;
    }
    assert_eq!(reply["status"], "oom", "{reply}");
    assert_eq!(reply["oom_killed"], true, "{reply}");
}

/// Settings every test server gets, on top of what the environment holds. No warm pools unless
/// a test asks for one (tests/it/pool.rs): most tests count a server's containers, and a pool
/// keeps some waiting by design. A run takes the same path either way (its container is made
/// for it instead of taken warm).
fn base_env(data_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("TRACEBOX_POOL_SIZE".into(), "0".into()),
        ("TRACEBOX_SANDBOX_POOL_SIZE".into(), "0".into()),
        ("TRACEBOX_DATA_DIR".into(), data_dir.display().to_string()),
        ("TRACEBOX_ADDR".into(), "127.0.0.1:0".into()),
        ("TRACEBOX_LOG_FORMAT".into(), "json".into()),
        ("TRACEBOX_LOG".into(), "info".into()),
        ("TRACEBOX_RUNTIME".into(), runtime()),
    ]
}

/// One `tracebox serve` process and what it logged.
struct Process {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(data_dir: &Path, env: &[(String, String)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tracebox"));
        command.arg("serve").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        command.envs(base_env(data_dir)).envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("tracebox starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && let Some(url) = entry["fields"]["url"].as_str()
                {
                    let _ = url_tx.send(url.to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        match url_rx.recv_timeout(patience()) {
            Ok(url) => Process { child, url, log },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tracebox did not start listening within TRACEBOX_TEST_PATIENCE_SECS; its log:\n{}",
                    log.lock().unwrap().join("\n")
                )
            }
        }
    }
}

/// A running `tracebox serve` with its own data directory.
pub struct TestServer {
    process: Option<Process>,
    pub url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    pub client: reqwest::Client,
    /// The label of this server's containers, checked for leftovers when it stops.
    instance_id: Option<String>,
    /// Holds the temporary data directory until the test ends (None: the test's own).
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn spawn() -> TestServer {
        TestServer::spawn_with(&[]).await
    }

    /// A server with extra `TRACEBOX_*` settings.
    pub async fn spawn_with(env: &[(&str, &str)]) -> TestServer {
        // A directory of its own around the data directory: what lands next to the data
        // directory (a path that escaped it) is then this server's doing alone.
        let temp = tempfile::tempdir().expect("a temporary data directory");
        let data_dir = temp.path().join("data");
        std::fs::create_dir(&data_dir).expect("the data directory");
        TestServer::start(&data_dir, env, Some(temp)).await
    }

    /// A server on a data directory the test made (to read what a `tracebox` command left).
    pub async fn spawn_on(data_dir: &Path) -> TestServer {
        TestServer::start(data_dir, &[], None).await
    }

    /// A server on a data directory the test made, with extra settings.
    pub async fn spawn_on_with(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        TestServer::start(data_dir, env, None).await
    }

    async fn start(data_dir: &Path, env: &[(&str, &str)], temp: Option<tempfile::TempDir>) -> TestServer {
        require_docker();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let process = Process::start(data_dir, &env);
        let mut server = TestServer {
            url: process.url.clone(),
            process: Some(process),
            data_dir: data_dir.to_owned(),
            env,
            client: http_client(patience()),
            instance_id: None,
            _temp: temp,
        };
        server.wait_healthy().await;
        server.instance_id = Some(server.instance_id().await);
        server
    }

    async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            if let Ok(response) = self.client.get(self.url("/health")).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tracebox never became healthy (TRACEBOX_TEST_PATIENCE_SECS)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `127.0.0.1:PORT`: the address to connect a raw socket to, and a `Host` the server
    /// answers to.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// POST /execute with a JSON body; returns the status and the JSON reply.
    pub async fn execute(&self, body: Value) -> (u16, Value) {
        let response = self.client.post(self.url("/execute")).json(&body).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    /// Run `code` in `language` and expect the run to have happened (HTTP 200).
    pub async fn run(&self, language: &str, code: &str) -> Value {
        let (status, reply) = self.execute(json!({"language": language, "code": code})).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response =
            self.client.get(self.url(path)).header("accept", "application/json").send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    /// POST `body` as JSON to `path`; returns the status and the JSON reply (null when empty).
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.client.post(self.url(path)).json(&body).send().await.expect("request sent");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a reply");
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON reply") })
    }

    pub async fn trace(&self, id: &str) -> Value {
        let (status, trace) = self.get_json(&format!("/trace/{id}")).await;
        assert_eq!(status, 200, "{trace}");
        trace
    }

    /// The label this server's containers carry.
    pub async fn instance_id(&self) -> String {
        let (_, health) = self.get_json("/health").await;
        health["docker"]["instance_id"].as_str().expect("an instance id").to_owned()
    }

    /// Stop with SIGTERM, as an operator would, and wait for the process to end.
    pub fn stop(&mut self) {
        assert!(self.terminate(), "tracebox did not stop within {:?} of SIGTERM", patience());
    }

    /// SIGTERM and wait; false (after a SIGKILL) when it did not stop in time.
    fn terminate(&mut self) -> bool {
        let Some(mut process) = self.process.take() else {
            return true;
        };
        let _ = Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + patience();
        while process.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = process.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Kill with SIGKILL: a crash, with no chance to clean up.
    pub fn crash(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.child.kill().expect("SIGKILL delivered");
            process.child.wait().expect("reaped");
        }
    }

    /// Start again on the same data directory with the same settings.
    pub async fn restart(&mut self) {
        self.stop();
        let process = Process::start(&self.data_dir, &self.env);
        self.url = process.url.clone();
        self.process = Some(process);
        self.wait_healthy().await;
    }

    /// Everything the current process logged so far.
    pub fn logged(&self) -> String {
        self.process.as_ref().map(|p| p.log.lock().unwrap().join("\n")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    /// Stop the server, and fail the test if it left a container behind.
    fn drop(&mut self) {
        let stopped = self.terminate();
        if std::thread::panicking() {
            return;
        }
        assert!(stopped, "tracebox did not stop within TRACEBOX_TEST_PATIENCE_SECS of SIGTERM");
        if let Some(instance) = &self.instance_id {
            let left = containers_of(instance);
            assert!(left.is_empty(), "the server left containers behind: {left:?}");
        }
    }
}

/// Wait until every container of `server` is gone (removal follows a run's reply), failing
/// after the test's patience.
pub async fn all_removed(server: &TestServer) {
    let instance = server.instance_id().await;
    eventually("every container of the server is removed", || containers_of(&instance).is_empty()).await;
}

/// Containers labelled with `instance_id`, running or not.
pub fn containers_of(instance_id: &str) -> Vec<String> {
    containers_labelled(&format!("tracebox.instance={instance_id}"))
}

/// Containers carrying `label` (`key=value`), running or not.
pub fn containers_labelled(label: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

/// Wait until `check` holds, or fail naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + patience();
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what} (TRACEBOX_TEST_PATIENCE_SECS)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lower-case hex sha256, as tracebox reports it.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A policy file with no rules, for tests that prove what the container stops by itself.
pub fn empty_policy() -> String {
    // Written once per test process, before any server reads it: tests run in parallel, and a
    // file rewritten under a starting server could be read half-written.
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let path = std::env::temp_dir().join(format!("tracebox-test-empty-policy-{}.toml", std::process::id()));
            std::fs::write(&path, "# no rules: the container alone must hold\n").expect("policy file written");
            path.display().to_string()
        })
        .clone()
}

/// A server whose policy lets everything through to the container.
pub async fn unscreened_server() -> TestServer {
    TestServer::spawn_with(&[("TRACEBOX_POLICY", &empty_policy())]).await
}

/// The API key the tests' fake Anthropic API expects. A test greps for it where it must never
/// be; it matches no redaction rule, so a leak cannot hide behind one.
pub const FAKE_KEY: &str = "tracebox-test-key-7f3a9c21e4b8d605";

/// The fake Anthropic API (crates/fake-anthropic) on loopback, in this test process.
pub struct FakeAnthropic {
    /// Held for its drop, which stops it.
    _server: fake_anthropic::FakeServer,
    pub url: String,
}

impl FakeAnthropic {
    /// Start it, expecting `FAKE_KEY`; `script` is a reply-script file, when given.
    pub fn start(script: Option<&Path>) -> FakeAnthropic {
        let script = script.map(|path| fake_anthropic::FakeConfig::load_script(path).expect("a reply script"));
        let config = fake_anthropic::FakeConfig {
            api_key: Some(FAKE_KEY.to_owned()),
            script: script.unwrap_or_default(),
            ..fake_anthropic::FakeConfig::default()
        };
        let server = fake_anthropic::FakeServer::start(([127, 0, 0, 1], 0).into(), config).expect("the fake starts");
        let url = server.url().to_owned();
        FakeAnthropic { _server: server, url }
    }

    /// Every request it received, as `GET /_fake/requests` lists them.
    pub async fn requests(&self) -> Vec<Value> {
        let response = http_client(patience()).get(format!("{}/_fake/requests", self.url)).send().await.unwrap();
        response.json().await.expect("the fake lists its requests")
    }

    /// Settings pointing a tracebox at this fake with the right key.
    pub fn settings(&self) -> [(&'static str, String); 2] {
        [("ANTHROPIC_BASE_URL", self.url.clone()), ("ANTHROPIC_API_KEY", FAKE_KEY.to_owned())]
    }
}

impl TestServer {
    /// A server that asks `fake` for Claude's replies, with `extra` settings.
    pub async fn with_fake(fake: &FakeAnthropic, extra: &[(&str, &str)]) -> TestServer {
        let settings = fake.settings();
        let mut env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        TestServer::spawn_with(&env).await
    }

    /// POST /claude with a JSON body; returns the status and the JSON reply.
    pub async fn claude(&self, body: Value) -> (u16, Value) {
        let response = self.client.post(self.url("/claude")).json(&body).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }
}
