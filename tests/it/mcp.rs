//! MCP (docs/mcp.md): a real MCP client (rmcp's) against a real server, over both transports:
//! `tracebox mcp` as a child process over stdio, and the server's own `/mcp` over streamable
//! HTTP. The tools are the HTTP API's routes: each answers what its route answers, is refused as
//! it is (a tool error, never a protocol error), and is traced; a session's sandboxes go with it.

use std::process::Stdio;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

use crate::common::sandboxes::SandboxServer;
use crate::common::{http_client, patience};

type Client = RunningService<RoleClient, ClientConfig>;

const TOOLS: [&str; 15] = [
    "close_sandbox",
    "create_sandbox",
    "execute",
    "execute_tool",
    "get_trace",
    "list_files",
    "list_sandboxes",
    "read_file",
    "replay_trajectory",
    "reset_sandbox",
    "run_code",
    "run_command",
    "search_traces",
    "snapshot_sandbox",
    "write_file",
];

/// An MCP session over the server's `/mcp`.
async fn over_http(server: &SandboxServer) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    let transport = StreamableHttpClientTransport::with_client(http_client(patience()), config);
    ClientConfig::default().serve(transport).await.expect("an MCP session over HTTP")
}

/// An MCP session with `tracebox mcp --server URL` as a child process, and its pid.
async fn over_stdio(server: &SandboxServer) -> (Client, u32) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracebox"));
    command.args(["mcp", "--server", &server.url]);
    let (transport, _) =
        TokioChildProcess::builder(command).stderr(Stdio::inherit()).spawn().expect("tracebox mcp starts");
    let pid = transport.id().expect("a child's pid");
    (ClientConfig::default().serve(transport).await.expect("an MCP session over stdio"), pid)
}

/// Call `tool` with `arguments`; the protocol must carry it whatever the tool made of it.
async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let params = CallToolRequestParams::new(tool).with_arguments(arguments);
    tokio::time::timeout(patience(), client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} answered within TRACEBOX_TEST_PATIENCE_SECS"))
        .unwrap_or_else(|error| panic!("{tool} is a tool result, not a protocol error: {error}"))
}

/// Call `tool`, expecting a result that is not an error: its text and structured content.
async fn ok(client: &Client, tool: &'static str, arguments: Value) -> (String, Value) {
    let result = call(client, tool, arguments).await;
    let text = text(&result);
    assert_ne!(result.is_error, Some(true), "{tool} succeeds: {text}");
    (text, result.structured_content.unwrap_or(Value::Null))
}

/// The text content of a result.
fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|block| block.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// Every trace id in `ids` is a trace the API shows.
async fn all_traced(server: &SandboxServer, ids: &[String]) {
    for id in ids {
        let (status, trace) = server.get_json(&format!("/trace/{id}")).await;
        assert_eq!(status, 200, "trace {id} resolves: {trace}");
    }
}

/// The walkthrough: every tool once, each answering what its route answers, each action traced.
async fn every_tool_once(server: &SandboxServer, client: &Client) {
    let mut traces = Vec::new();

    // A one-shot run, with an image it leaves coming back as an image.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let code = format!(
        "import base64, os\nos.makedirs('out', exist_ok=True)\nopen('out/dot.png', 'wb').write(base64.b64decode('{png}'))\nprint('drawn')"
    );
    let result = call(client, "execute", json!({"code": code})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert!(
        text(&result).contains("status: success (exit code 0") && text(&result).contains("drawn"),
        "{}",
        text(&result)
    );
    let image = result.content.iter().find_map(|block| block.as_image());
    let image = image.expect("the PNG the run left comes back as image content");
    assert_eq!((image.mime_type.as_str(), image.data.as_str()), ("image/png", png));
    let reply = result.structured_content.expect("the API's reply as structured content");
    traces.push(reply["trace_id"].as_str().expect("a trace id").to_owned());

    // A sandbox, and what runs in it.
    let (made, sandbox) = ok(client, "create_sandbox", json!({"metadata": {"by": "mcp-test"}})).await;
    let id = sandbox["sandbox_id"].as_str().expect("a sandbox id").to_owned();
    assert!(made.contains(&id) && made.contains("closed when this MCP session ends"), "{made}");
    traces.push(sandbox["trace_id"].as_str().expect("the sandbox's trace").to_owned());

    let (ran, reply) =
        ok(client, "run_command", json!({"sandbox_id": id, "command": "echo 6 > n.txt && cat n.txt"})).await;
    assert!(ran.contains("exit code 0") && ran.contains("stdout:\n6\n"), "{ran}");
    traces.push(reply["trace_id"].as_str().expect("a trace id").to_owned());

    let (cell, reply) =
        ok(client, "run_code", json!({"sandbox_id": id, "code": "n = int(open('n.txt').read())\nn * 7"})).await;
    assert!(cell.contains("result: 42"), "{cell}");
    assert_eq!(reply["result"], "42");
    traces.push(reply["trace_id"].as_str().expect("a trace id").to_owned());

    let (wrote, _) =
        ok(client, "write_file", json!({"sandbox_id": id, "path": "src/a.py", "content": "def f():\n    return 1\n"}))
            .await;
    assert!(wrote.contains("wrote src/a.py (22 bytes)"), "{wrote}");
    let (read, _) = ok(client, "read_file", json!({"sandbox_id": id, "path": "src/a.py"})).await;
    assert_eq!(read, "def f():\n    return 1\n");
    let (listed, reply) = ok(client, "list_files", json!({"sandbox_id": id})).await;
    assert!(listed.contains("dir src/") && listed.contains("file n.txt 2 bytes"), "{listed}");
    assert!(reply["entries"].as_array().is_some_and(|entries| entries.len() == 2), "{reply}");

    let (called, reply) =
        ok(client, "execute_tool", json!({"sandbox_id": id, "tool": "search", "params": {"pattern": "def f"}})).await;
    assert!(called.contains("search: success") && called.contains("src/a.py:1:def f():"), "{called}");
    traces.push(reply["trace_id"].as_str().expect("a trace id").to_owned());

    let (kept, reply) = ok(client, "snapshot_sandbox", json!({"sandbox_id": id, "label": "before"})).await;
    let snapshot = reply["snapshot_id"].as_str().expect("a snapshot id").to_owned();
    assert!(kept.contains(&snapshot), "{kept}");
    ok(client, "run_command", json!({"sandbox_id": id, "command": "rm src/a.py"})).await;
    let (reset, _) = ok(client, "reset_sandbox", json!({"sandbox_id": id, "snapshot_id": snapshot})).await;
    assert!(reset.contains("reset:") && reset.contains(&id), "{reset}");
    let (read, _) = ok(client, "read_file", json!({"sandbox_id": id, "path": "src/a.py"})).await;
    assert!(read.starts_with("def f()"), "the reset brought the file back: {read}");

    // With no trajectory given, the sandbox's own (the search above) is replayed; without a
    // reset, to find the file written after creation.
    let (replayed, reply) = ok(client, "replay_trajectory", json!({"sandbox_id": id, "reset": false})).await;
    assert!(replayed.contains("replay: 1 steps, every step gave the recorded output"), "{replayed}");
    assert_eq!(reply["divergence_step"], -1);
    traces.push(reply["trace_id"].as_str().expect("a replay's trace").to_owned());

    let (listed, _) = ok(client, "list_sandboxes", json!({"metadata": {"by": "mcp-test"}})).await;
    assert!(listed.contains(&id) && listed.contains("running"), "{listed}");
    let (found, page) = ok(client, "search_traces", json!({"q": "n * 7", "kind": "cell"})).await;
    assert_eq!(page["traces"].as_array().map(Vec::len), Some(1), "{found}");
    let (trace, reply) = ok(client, "get_trace", json!({"trace_id": traces[0]})).await;
    assert!(trace.contains(&traces[0]) && trace.contains("execution python success"), "{trace}");
    assert_eq!(reply["id"], traces[0].as_str());

    let (closed, _) = ok(client, "close_sandbox", json!({"sandbox_id": id})).await;
    assert!(closed.contains(&id), "{closed}");
    assert_eq!(server.view(&id).await.0, 404, "the sandbox is gone");

    // Each action is a trace; the file operations, snapshot and reset are steps of the sandbox's.
    all_traced(server, &traces).await;
    let steps = server.trace(&traces[1]).await["children"].as_array().map(Vec::len).unwrap_or_default();
    assert!(steps >= 8, "every step of the sandbox is a child of its trace: {steps}");
}

#[tokio::test]
async fn both_transports_offer_fifteen_tools_each_described_with_a_schema() {
    let server = SandboxServer::spawn().await;
    let (stdio, _) = over_stdio(&server).await;
    let http = over_http(&server).await;
    for client in [&stdio, &http] {
        let info = client.peer_info().expect("the server introduced itself");
        assert_eq!(info.server_info.as_ref().map(|server| server.name.as_str()), Some("tracebox"));
        assert!(info.capabilities.tools.is_some());
        let tools = client.list_all_tools().await.expect("tools listed");
        let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
        names.sort();
        assert_eq!(names, TOOLS);
        for tool in &tools {
            assert!(tool.description.as_ref().is_some_and(|d| d.len() > 40), "{} is described", tool.name);
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
        }
        let execute = tools.iter().find(|tool| tool.name == "execute").expect("execute");
        assert_eq!(execute.input_schema["required"], json!(["code"]));
        let code = &execute.input_schema["properties"]["code"];
        assert!(code["description"].as_str().is_some_and(|d| !d.is_empty()), "params are described: {code}");
    }
    stdio.cancel().await.expect("the stdio session ends");
    http.cancel().await.expect("the HTTP session ends");
}

#[tokio::test]
async fn every_tool_answers_over_http_and_each_action_is_traced() {
    let server = SandboxServer::spawn().await;
    let client = over_http(&server).await;
    every_tool_once(&server, &client).await;
    client.cancel().await.expect("the session ends");
}

#[tokio::test]
async fn every_tool_answers_over_stdio_and_each_action_is_traced() {
    let server = SandboxServer::spawn().await;
    let (client, _) = over_stdio(&server).await;
    every_tool_once(&server, &client).await;
    client.cancel().await.expect("the session ends");
}

#[tokio::test]
async fn a_refused_call_is_a_tool_error_naming_its_rule_code_and_trace() {
    let server = SandboxServer::spawn().await;
    let client = over_http(&server).await;

    let blocked = call(&client, "execute", json!({"code": "import subprocess\nsubprocess.run(['ls'])"})).await;
    assert_eq!(blocked.is_error, Some(true), "{}", text(&blocked));
    let said = text(&blocked);
    assert!(said.contains("blocked_by_policy") && said.contains("rules: python.subprocess"), "{said}");
    let reply = blocked.structured_content.expect("the refusal as structured content");
    all_traced(&server, &[reply["trace_id"].as_str().expect("the refusal's trace").to_owned()]).await;

    let missing = call(&client, "run_command", json!({"sandbox_id": "sbx_none", "command": "ls"})).await;
    assert_eq!(missing.is_error, Some(true));
    assert!(text(&missing).contains("no_such_sandbox (HTTP 404)"), "{}", text(&missing));
    client.cancel().await.expect("the session ends");
}

#[tokio::test]
async fn execute_calls_a_handler_with_an_event_and_shows_what_it_returned_or_raised() {
    let server = SandboxServer::spawn().await;
    let client = over_http(&server).await;
    let code = "def handler(event, context):\n    return {'sum': sum(event['n']), 'id': context.request_id}";
    let (said, reply) =
        ok(&client, "execute", json!({"code": code, "handler": "handler", "event": {"n": [1, 2, 3]}})).await;
    assert_eq!(reply["result"]["sum"], 6, "{reply}");
    assert!(said.contains(r#"result: {"#) && said.contains(r#""sum":6"#), "{said}");

    let raising = "exports.handler = async (event) => { throw new TypeError('no ' + event.what); };";
    let body = json!({"code": raising, "language": "node", "handler": "handler", "event": {"what": "luck"}});
    let result = call(&client, "execute", body).await;
    let said = text(&result);
    assert!(said.contains("raised: TypeError: no luck"), "{said}");
    client.cancel().await.expect("the session ends");
}

#[tokio::test]
async fn a_failing_command_is_a_result_with_its_exit_code_and_a_timeout_an_error_saying_so() {
    let server = SandboxServer::spawn().await;
    let client = over_http(&server).await;
    let (_, sandbox) = ok(&client, "create_sandbox", json!({})).await;
    let id = sandbox["sandbox_id"].as_str().expect("a sandbox id");

    let (failed, reply) = ok(&client, "run_command", json!({"sandbox_id": id, "command": "echo no >&2; exit 3"})).await;
    assert!(failed.starts_with("status: error (exit code 3,") && failed.contains("stderr:\nno\n"), "{failed}");
    assert_eq!(reply["exit_code"], 3);

    let slow = call(&client, "run_command", json!({"sandbox_id": id, "command": "sleep 30", "timeout": 1})).await;
    assert_eq!(slow.is_error, Some(true), "{}", text(&slow));
    assert!(text(&slow).starts_with("status: timeout") && text(&slow).contains("why:"), "{}", text(&slow));

    let raised = call(&client, "run_code", json!({"sandbox_id": id, "code": "1 / 0"})).await;
    assert_ne!(raised.is_error, Some(true), "an exception is the cell's result");
    assert!(text(&raised).contains("raised: ZeroDivisionError"), "{}", text(&raised));
    client.cancel().await.expect("the session ends");
    server.wait_status(id, "gone").await;
}

/// Create one sandbox the session owns and one it keeps: their ids.
async fn one_owned_one_kept(client: &Client) -> (String, String) {
    let (_, owned) = ok(client, "create_sandbox", json!({})).await;
    let (made, kept) = ok(client, "create_sandbox", json!({"keep": true})).await;
    assert!(made.contains("kept after this MCP session ends"), "{made}");
    let id = |view: &Value| view["sandbox_id"].as_str().expect("a sandbox id").to_owned();
    assert_eq!(owned["on_timeout"], "kill", "an owned sandbox is killed, not paused, when idle");
    assert_eq!(kept["on_timeout"], "pause");
    (id(&owned), id(&kept))
}

#[tokio::test]
async fn an_http_session_that_is_deleted_closes_its_sandboxes_but_not_kept_ones() {
    let server = SandboxServer::spawn().await;
    let client = over_http(&server).await;
    let (owned, kept) = one_owned_one_kept(&client).await;
    // The client's end of a session is a DELETE of it.
    client.cancel().await.expect("the session ends");
    server.wait_status(&owned, "gone").await;
    assert_eq!(server.view(&kept).await.1["status"], "running");
    server.delete(&kept).await;
}

#[tokio::test]
async fn a_stdio_session_whose_stdin_closes_closes_its_sandboxes_but_not_kept_ones() {
    let server = SandboxServer::spawn().await;
    let (client, _) = over_stdio(&server).await;
    let (owned, kept) = one_owned_one_kept(&client).await;
    // rmcp's client closes the child's stdin and waits for it to exit.
    client.cancel().await.expect("the session ends");
    assert_eq!(server.view(&owned).await.0, 404, "closed before `tracebox mcp` exited");
    assert_eq!(server.view(&kept).await.1["status"], "running");
    server.delete(&kept).await;
}

#[tokio::test]
async fn a_stdio_server_told_to_stop_closes_its_sandboxes_first() {
    let server = SandboxServer::spawn().await;
    let (client, pid) = over_stdio(&server).await;
    let (owned, kept) = one_owned_one_kept(&client).await;
    // What a client does to a server it is done with when closing stdin is not enough.
    let stopped = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill runs");
    assert!(stopped.success());
    server.wait_status(&owned, "gone").await;
    assert_eq!(server.view(&kept).await.1["status"], "running");
    server.delete(&kept).await;
    drop(client);
}

#[tokio::test]
async fn an_idle_http_session_ends_and_closes_its_sandboxes() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_MCP_SESSION_IDLE_SECS", "4")]).await;
    let client = over_http(&server).await;
    let (owned, kept) = one_owned_one_kept(&client).await;
    // The client says nothing more and never deletes its session (as one that died).
    server.wait_status(&owned, "gone").await;
    assert_eq!(server.view(&kept).await.1["status"], "running");
    server.delete(&kept).await;
    drop(client);
}

#[tokio::test]
async fn a_killed_stdio_server_leaves_its_sandbox_only_until_its_idle_timeout() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MIN_TIMEOUT_SECS", "1")]).await;
    let (client, pid) = over_stdio(&server).await;
    let (_, sandbox) = ok(&client, "create_sandbox", json!({"timeout": 2})).await;
    let id = sandbox["sandbox_id"].as_str().expect("a sandbox id");
    // SIGKILL: `tracebox mcp` closes nothing. Its sandbox was made to be killed when idle.
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
    assert!(killed.success());
    assert_eq!(server.view(id).await.1["on_timeout"], "kill");
    server.wait_status(id, "gone").await;
    drop(client);
}

#[tokio::test]
async fn a_server_with_an_mcp_client_connected_still_stops_promptly() {
    let mut server = SandboxServer::spawn().await;
    let client = over_http(&server).await;
    ok(&client, "list_sandboxes", json!({})).await;
    // The client holds an event stream open for the server's messages; the stop ends it
    // rather than wait out the grace period given to runs.
    let stopping = std::time::Instant::now();
    server.stop();
    let took = stopping.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "the server stopped in {took:?}");
    drop(client);
}

#[tokio::test]
async fn mcp_is_behind_the_guard_of_every_route() {
    let server = SandboxServer::spawn().await;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}},
    });
    let post = |origin: Option<&str>, host: Option<&str>| {
        let mut request = server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let foreign = post(Some("http://evil.example"), None).await.expect("answered");
    assert_eq!(foreign.status(), 403);
    let body: Value = foreign.json().await.expect("the API's error shape");
    assert_eq!(body["error"]["code"], "cross_origin");
    let rebound = post(None, Some("evil.example")).await.expect("answered");
    assert_eq!(rebound.status(), 421);
    // The server's own pages may: the origin of the server itself.
    let own = post(Some(&server.url), None).await.expect("answered");
    assert_eq!(own.status(), 200, "{:?}", own.text().await);
}
