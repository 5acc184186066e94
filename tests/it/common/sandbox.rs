//! A stateful sandbox a test makes over HTTP, and its steps. A test ends it with
//! [`TestSandbox::delete`]; one that fails first drops it, which removes the server's containers
//! (a stopping server leaves its sandboxes be), so the failure shown is the test's own.

use serde_json::{Value, json};

use super::{TestServer, containers_of};

pub struct TestSandbox<'a> {
    server: &'a TestServer,
    pub id: String,
    /// The sandbox's trace: its steps are its children.
    pub trace_id: String,
    instance: String,
    deleted: bool,
}

impl<'a> TestSandbox<'a> {
    /// `POST /sandboxes` with `body`.
    pub async fn create(server: &'a TestServer, body: Value) -> TestSandbox<'a> {
        let (status, reply) = server.post_json("/sandboxes", body).await;
        assert_eq!(status, 201, "{reply}");
        let id = reply["sandbox_id"].as_str().expect("a sandbox id").to_owned();
        let (status, view) = server.get_json(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 200, "{view}");
        let trace_id = view["trace_id"].as_str().expect("its trace id").to_owned();
        TestSandbox { server, id, trace_id, instance: server.instance_id().await, deleted: false }
    }

    /// Run `cmd` to its end: the reply, as `/execute`'s.
    pub async fn command(&self, cmd: &str) -> Value {
        self.post("commands", json!({ "cmd": cmd })).await
    }

    /// Run a code cell in its kernel.
    pub async fn code(&self, code: &str) -> Value {
        self.post("code", json!({ "code": code })).await
    }

    async fn post(&self, what: &str, body: Value) -> Value {
        let (status, reply) = self.server.post_json(&format!("/sandboxes/{}/{what}", self.id), body).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Write `bytes` to `path` in its `/workspace`.
    pub async fn write(&self, path: &str, bytes: &'static [u8]) {
        let url = self.server.url(&format!("/sandboxes/{}/files/content?path={path}", self.id));
        let response = self.server.client.put(url).body(bytes).send().await.expect("request sent");
        let status = response.status();
        assert!(status.is_success(), "{status}: {}", response.text().await.unwrap_or_default());
    }

    /// `DELETE /sandboxes/{id}`: its container goes, its trace ends.
    pub async fn delete(mut self) {
        let url = self.server.url(&format!("/sandboxes/{}", self.id));
        let response = self.server.client.delete(url).send().await.expect("request sent");
        assert_eq!(response.status(), 204);
        self.deleted = true;
    }
}

impl Drop for TestSandbox<'_> {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        for container in containers_of(&self.instance) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &container]).output();
        }
    }
}
