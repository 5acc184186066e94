//! Every door follows the same rules: the WebSocket, `/claude`, `/batch`, MCP and the command
//! line carry a key, and what they make is the key's tenant's.

use std::process::Command;

use futures_util::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{client_of, code, create_key, get, keys, post};
use crate::common::{FakeAnthropic, TestServer, patience};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(server: &TestServer, key: Option<&str>) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = server.url("/ws").replacen("http://", "ws://", 1).into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// The frames of run `id` up to its last.
async fn frames(socket: &mut Socket, id: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(patience(), socket.next()).await.expect("a frame in time").unwrap().unwrap();
        let Message::Text(text) = message else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["id"] != id {
            continue;
        }
        let last = matches!(frame["type"].as_str(), Some("exit" | "blocked" | "error"));
        frames.push(frame);
        if last {
            return frames;
        }
    }
}

#[tokio::test]
async fn the_websocket_needs_a_key_and_its_runs_are_the_keys() {
    let server = TestServer::spawn().await;
    let alice_key = create_key(&server, "alice", &[]);
    let bob_key = create_key(&server, "bob", &[]);
    let (alice, bob) = (client_of(&alice_key), client_of(&bob_key));
    let refused = socket(&server, None).await.expect_err("no key, no socket");
    assert!(refused.to_string().contains("401"), "{refused}");

    let mut ws = socket(&server, Some(&alice_key)).await.expect("the socket opens with a key");
    ws.send(Message::text(json!({"type": "execute", "id": "a", "code": "print('ws')"}).to_string())).await.unwrap();
    let exit = frames(&mut ws, "a").await.pop().unwrap();
    assert_eq!(exit["type"], "exit", "{exit}");
    let trace = format!("/trace/{}", exit["trace_id"].as_str().unwrap());
    assert_eq!(get(&alice, &server, &trace).await.0, 200);
    assert_eq!(get(&bob, &server, &trace).await.0, 404, "a socket's runs are its key's tenant's");

    // Bob's socket cannot drive alice's sandbox.
    let (_, made) = post(&alice, &server, "/sandboxes", json!({})).await;
    let sandbox = made["sandbox_id"].as_str().unwrap().to_owned();
    let mut his = socket(&server, Some(&bob_key)).await.unwrap();
    let step = json!({"type": "execute", "id": "s", "sandbox_id": sandbox, "cmd": "echo hi"});
    his.send(Message::text(step.to_string())).await.unwrap();
    let error = frames(&mut his, "s").await.pop().unwrap();
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("no_such_sandbox")), "{error}");

    // A key revoked while its socket is open starts nothing more on it.
    assert!(keys(&server, &["revoke", "alice"]).status.success());
    ws.send(Message::text(json!({"type": "execute", "id": "b", "code": "print(1)"}).to_string())).await.unwrap();
    let error = frames(&mut ws, "b").await.pop().unwrap();
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("unauthorized")), "{error}");
    let admin = client_of(&create_key(&server, "root", &["--role", "admin"]));
    assert_eq!(
        super::send(&admin, &server, reqwest::Method::DELETE, &format!("/sandboxes/{sandbox}"), None).await.0,
        204
    );
}

#[tokio::test]
async fn claude_calls_and_batches_are_their_keys_tenants() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (alice, bob) = (client_of(&create_key(&server, "alice", &[])), client_of(&create_key(&server, "bob", &[])));
    let (status, reply) = post(&alice, &server, "/claude", json!({"prompt": "say hi", "execute": true})).await;
    assert_eq!(status, 200, "{reply}");
    let call = reply["trace_id"].as_str().unwrap().to_owned();
    let body = json!({"items": [{"id": "one", "code": "print('item')"}]});
    let text = alice.post(server.url("/batch")).json(&body).send().await.unwrap().text().await.unwrap();
    let done: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let batch = done["batch_id"].as_str().unwrap().to_owned();
    let (_, page) = get(&alice, &server, &format!("/traces?format=json&batch={batch}")).await;
    let item = page["traces"][0]["id"].as_str().expect("the batch's item").to_owned();
    for id in [&call, &batch, &item] {
        assert_eq!(get(&alice, &server, &format!("/trace/{id}")).await.0, 200);
        assert_eq!(get(&bob, &server, &format!("/trace/{id}")).await.0, 404, "{id} is alice's");
    }
    let (_, page) = get(&bob, &server, "/traces?format=json").await;
    assert!(page["traces"].as_array().unwrap().is_empty(), "{page}");
}

async fn mcp(
    server: &TestServer,
    key: Option<&str>,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    let http = tracebox::http_client::builder().timeout(patience()).default_headers(headers).build().unwrap();
    let config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    let transport = StreamableHttpClientTransport::with_client(http, config);
    ClientConfig::default().serve(transport).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn mcp_needs_a_key_and_its_tools_act_as_that_key() {
    let server = TestServer::spawn().await;
    let alice_key = create_key(&server, "alice", &[]);
    let (alice, bob) = (client_of(&alice_key), client_of(&create_key(&server, "bob", &[])));
    assert!(mcp(&server, None).await.is_err(), "no key, no MCP session");

    let session = mcp(&server, Some(&alice_key)).await.expect("an MCP session with a key");
    let mut params = CallToolRequestParams::new("execute");
    params = params.with_arguments(json!({"code": "print('via mcp')"}).as_object().unwrap().clone());
    let result = session.call_tool(params).await.unwrap();
    let structured = result.structured_content.expect("the API's reply");
    let id = structured["trace_id"].as_str().expect("a trace id").to_owned();
    assert_eq!(get(&alice, &server, &format!("/trace/{id}")).await.0, 200, "the tool ran as alice");
    assert_eq!(get(&bob, &server, &format!("/trace/{id}")).await.0, 404);

    let made = session
        .call_tool(CallToolRequestParams::new("create_sandbox").with_arguments(serde_json::Map::new()))
        .await
        .unwrap();
    let sandbox = made.structured_content.unwrap()["sandbox_id"].as_str().unwrap().to_owned();
    assert_eq!(get(&bob, &server, &format!("/sandboxes/{sandbox}")).await.0, 404);
    // The session's end closes its sandbox, with the key that made it. The close runs after the
    // session ends, in the background: its record goes last, once the container is removed.
    session.cancel().await.unwrap();
    let deadline = tokio::time::Instant::now() + patience();
    let (status, reply) = loop {
        let (status, reply) = get(&alice, &server, &format!("/sandboxes/{sandbox}")).await;
        if status == 404 || tokio::time::Instant::now() > deadline {
            break (status, reply);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "the session's sandbox closed: {reply}");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=tracebox.sandbox={sandbox}")])
        .output()
        .expect("docker ps");
    assert!(left.stdout.is_empty(), "its container removed before its record");
}

#[tokio::test]
async fn the_command_line_sends_the_key_from_the_environment() {
    let server = TestServer::spawn().await;
    let key = create_key(&server, "alice", &[]);
    let list = |key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tracebox"));
        command.args(["sandbox", "list", "--server", &server.url]).env_remove("TRACEBOX_API_KEY");
        if let Some(key) = key {
            command.env("TRACEBOX_API_KEY", key);
        }
        command.output().unwrap()
    };
    let refused = list(None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"), "{refused:?}");
    let listed = list(Some(&key));
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
}

#[tokio::test]
async fn an_mcp_session_is_its_tenants_alone() {
    let server = TestServer::spawn().await;
    let (alice, bob) = (create_key(&server, "alice", &[]), create_key(&server, "bob", &[]));
    let http = crate::common::http_client(patience());
    let rpc = |key: &str, session: Option<&str>, body: Value| {
        let mut request = http
            .post(server.url("/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-06-18");
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let started = rpc(&alice, None, init).await.unwrap();
    assert_eq!(started.status(), 200);
    let session = started.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let theirs = rpc(&bob, Some(&session), list).await.unwrap();
    assert_eq!(theirs.status(), 404, "bob cannot use alice's session");
    let ended =
        http.delete(server.url("/mcp")).bearer_auth(&bob).header("mcp-session-id", &session).send().await.unwrap();
    assert_eq!(ended.status(), 404, "nor end it");
}
