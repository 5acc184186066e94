//! Access: API keys, tenants, tokens and per-key limits (docs/access.md), against a real server
//! whose keys `tracebox keys` makes in its data directory while it runs.

mod doors;
mod keys;
mod limits;
mod tenants;
mod tokens;

use std::process::Command;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::common::{TestServer, patience};

/// `tracebox keys create --name NAME …` on `server`'s data directory: the key it printed.
pub fn create_key(server: &TestServer, name: &str, extra: &[&str]) -> String {
    create_key_in(&server.data_dir, name, extra)
}

/// `tracebox keys create --name NAME …` on the data directory `dir`.
pub fn create_key_in(dir: &std::path::Path, name: &str, extra: &[&str]) -> String {
    let output = keys_in(dir, &[&["create", "--name", name], extra].concat());
    assert!(output.status.success(), "keys create: {}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).expect("a key in UTF-8").trim().to_owned();
    assert!(key.starts_with("tbx_"), "{key}");
    key
}

/// `tracebox keys …` on `server`'s data directory.
pub fn keys(server: &TestServer, args: &[&str]) -> std::process::Output {
    keys_in(&server.data_dir, args)
}

/// `tracebox keys …` on the data directory `dir`.
pub fn keys_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("keys")
        .args(args)
        .env("TRACEBOX_DATA_DIR", dir)
        .output()
        .expect("tracebox keys runs")
}

/// A client whose every request carries `key` as `Authorization: Bearer`.
pub fn client_of(key: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).expect("a header value"));
    tracebox::http_client::builder().timeout(patience()).default_headers(headers).build().expect("a client")
}

/// Send `method path` with an optional JSON body; the status and the JSON reply (null if none).
pub async fn send(
    client: &reqwest::Client,
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, server.url(path)).header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a reply");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn get(client: &reqwest::Client, server: &TestServer, path: &str) -> (u16, Value) {
    send(client, server, Method::GET, path, None).await
}

pub async fn post(client: &reqwest::Client, server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(client, server, Method::POST, path, Some(body)).await
}

/// Run `code` as `client`; the reply of a run that happened.
pub async fn run(client: &reqwest::Client, server: &TestServer, code: &str) -> Value {
    let (status, reply) = post(client, server, "/execute", serde_json::json!({"code": code})).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// The error code of a refusal.
pub fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_default()
}
