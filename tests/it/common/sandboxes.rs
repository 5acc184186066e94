//! Helpers for tests of stateful sandboxes: a server that never leaves a sandbox container
//! behind (not even when its test fails), and short ways to create a sandbox, run commands and
//! cells in it, and move files in and out.

use std::ops::{Deref, DerefMut};
use std::process::Command;

use serde_json::{Value, json};

use super::{TestServer, containers_labelled, eventually};

/// A test server for sandboxes. Sandbox containers outlive their server by design, so its
/// drop removes whatever sandbox container its test left: after a failure silently (the
/// failure is the news), after a success loudly (a test that leaves one is wrong).
pub struct SandboxServer {
    server: TestServer,
    instance: String,
}

impl Deref for SandboxServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl DerefMut for SandboxServer {
    fn deref_mut(&mut self) -> &mut TestServer {
        &mut self.server
    }
}

impl Drop for SandboxServer {
    fn drop(&mut self) {
        let left = sandbox_containers(&self.instance);
        if !left.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&left).output();
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "the test left sandbox containers behind (removed now): {left:?}");
        }
    }
}

/// This data directory's sandbox containers, running or not.
pub fn sandbox_containers(instance: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=tracebox.instance={instance}")])
        .args(["--filter", "label=tracebox.sandbox"])
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

/// The container of sandbox `id` (running or not), if there is one.
pub fn container_of_sandbox(id: &str) -> Option<String> {
    containers_labelled(&format!("tracebox.sandbox={id}")).into_iter().next()
}

/// Is that container running?
pub fn is_running(container: &str) -> bool {
    let output = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", container])
        .output()
        .expect("docker inspect runs");
    String::from_utf8_lossy(&output.stdout).trim() == "true"
}

impl SandboxServer {
    pub async fn spawn() -> SandboxServer {
        SandboxServer::spawn_with(&[]).await
    }

    pub async fn spawn_with(env: &[(&str, &str)]) -> SandboxServer {
        let server = TestServer::spawn_with(env).await;
        let instance = server.instance_id().await;
        SandboxServer { server, instance }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Send `body` (JSON, or nothing) with `method` to `path`: the status and the JSON reply
    /// (null when the reply has no body).
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let reply = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON reply (HTTP {status}), got {text:?}"))
        };
        (status, reply)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// `POST /sandboxes` with `body`, expecting 201: the sandbox's view.
    pub async fn create(&self, body: Value) -> Value {
        let (status, reply) = self.post("/sandboxes", body).await;
        assert_eq!(status, 201, "a sandbox is created: {reply}");
        reply
    }

    /// A new sandbox of `body`: its id.
    pub async fn sandbox(&self, body: Value) -> String {
        self.create(body).await["sandbox_id"].as_str().expect("a sandbox id").to_owned()
    }

    /// `GET /sandboxes/{id}`: the status and the view.
    pub async fn view(&self, id: &str) -> (u16, Value) {
        self.get_json(&format!("/sandboxes/{id}")).await
    }

    /// `DELETE /sandboxes/{id}`, expecting 204.
    pub async fn delete(&self, id: &str) {
        let (status, reply) = self.send(reqwest::Method::DELETE, &format!("/sandboxes/{id}"), None).await;
        assert_eq!(status, 204, "sandbox {id} is deleted: {reply}");
    }

    /// `POST /sandboxes/{id}/commands` with `body`: the status and the reply.
    pub async fn command_with(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/sandboxes/{id}/commands"), body).await
    }

    /// Run `cmd` and expect it to have run (HTTP 200): the reply.
    pub async fn command(&self, id: &str, cmd: &str) -> Value {
        let (status, reply) = self.command_with(id, json!({ "cmd": cmd })).await;
        assert_eq!(status, 200, "{cmd}: {reply}");
        reply
    }

    /// Run `cmd`, expecting exit 0: its stdout.
    pub async fn sh(&self, id: &str, cmd: &str) -> String {
        let reply = self.command(id, cmd).await;
        assert_eq!(reply["exit_code"], 0, "{cmd}: {reply}");
        reply["stdout"].as_str().expect("stdout").to_owned()
    }

    /// `POST /sandboxes/{id}/code` with `body`: the status and the reply.
    pub async fn code_with(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/sandboxes/{id}/code"), body).await
    }

    /// Run the cell `code` and expect it to have run (HTTP 200): the reply.
    pub async fn code(&self, id: &str, code: &str) -> Value {
        let (status, reply) = self.code_with(id, json!({ "code": code })).await;
        assert_eq!(status, 200, "{code}: {reply}");
        reply
    }

    /// Run the cell `code`, expecting success: its `result`.
    pub async fn result(&self, id: &str, code: &str) -> Value {
        let reply = self.code(id, code).await;
        assert_eq!(reply["status"], "success", "{code}: {reply}");
        reply["result"].clone()
    }

    fn content_url(&self, id: &str, path: &str) -> String {
        let mut url = reqwest::Url::parse(&self.url(&format!("/sandboxes/{id}/files/content"))).expect("a URL");
        url.query_pairs_mut().append_pair("path", path);
        url.to_string()
    }

    /// `GET …/files/content?path=`: the status and the body's bytes.
    pub async fn read(&self, id: &str, path: &str) -> (u16, Vec<u8>) {
        let response = self.client.get(self.content_url(id, path)).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("a body").to_vec())
    }

    /// A file read that must be refused: the status and the error body.
    pub async fn read_refused(&self, id: &str, path: &str) -> (u16, Value) {
        let (status, body) = self.read(id, path).await;
        let reply = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!("{path:?} is refused with a JSON error, got HTTP {status}: {:?}", String::from_utf8_lossy(&body))
        });
        (status, reply)
    }

    /// `PUT …/files/content?path=` with `bytes`: the status and the reply.
    pub async fn write(&self, id: &str, path: &str, bytes: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self.client.put(self.content_url(id, path)).body(bytes).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    /// `DELETE …/files/content?path=`: the status and the reply (null when none).
    pub async fn remove(&self, id: &str, path: &str) -> (u16, Value) {
        let response = self.client.delete(self.content_url(id, path)).send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("a JSON reply") })
    }

    /// `GET …/files?path=`: the status and the reply.
    pub async fn list(&self, id: &str, path: &str) -> (u16, Value) {
        let mut url = reqwest::Url::parse(&self.url(&format!("/sandboxes/{id}/files"))).expect("a URL");
        url.query_pairs_mut().append_pair("path", path);
        let response = self.client.get(url).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    /// Wait until sandbox `id` has `status` (or is gone, for `"gone"`).
    pub async fn wait_status(&self, id: &str, wanted: &str) -> Value {
        let deadline = tokio::time::Instant::now() + super::patience();
        loop {
            let (code, view) = self.view(id).await;
            let now = if code == 404 { "gone" } else { view["status"].as_str().unwrap_or("?") };
            if now == wanted {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sandbox {id} never became {wanted} (TRACEBOX_TEST_PATIENCE_SECS): last {code} {view}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Wait until no sandbox container of this server is left.
    pub async fn no_sandbox_containers(&self) {
        let instance = self.instance.clone();
        eventually("every sandbox container is removed", || sandbox_containers(&instance).is_empty()).await;
    }

    /// The snapshot files under the data directory.
    pub fn snapshot_files(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.data_dir.join("snapshots")) {
            Ok(dir) => dir.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

/// The error code of an error reply.
pub fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("an error body: {reply}"))
}

/// The error message of an error reply.
pub fn message(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or_else(|| panic!("an error body: {reply}"))
}
