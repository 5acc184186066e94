//! The WebSocket door, `/ws`: a real WebSocket client against a real server and the real
//! engine. Output is live, stdin is interactive, runs can be killed, a socket carries several
//! runs, and a bad message gets an `error` frame without costing the socket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestServer, containers_of, eventually, patience};

/// A client of one socket, reading frames as they come.
struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(server: &TestServer) -> Client {
        let url = server.url("/ws").replacen("http://", "ws://", 1);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket opens");
        Client { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.expect("the message is sent");
    }

    /// The next JSON frame, skipping pings; fails after the test's patience.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(patience(), self.socket.next())
                .await
                .expect("a frame within TRACEBOX_TEST_PATIENCE_SECS")
                .expect("the socket stays open")
                .expect("a well-formed frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("frames are JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Frames of run `id` up to and including its last (`exit`, `blocked` or `error`).
    async fn run_frames(&mut self, id: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
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

    /// Frames of run `id` until one of `kind` arrives, which is returned last.
    async fn until(&mut self, id: &str, kind: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["id"] == id {
                let done = frame["type"] == kind;
                frames.push(frame);
                if done {
                    return frames;
                }
            }
        }
    }
}

/// The text of every `stream` frame, joined.
fn output(frames: &[Value], stream: &str) -> String {
    frames.iter().filter(|f| f["type"] == stream).filter_map(|f| f["data"].as_str()).collect()
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(|f| f["type"].as_str()).collect()
}

#[tokio::test]
async fn output_arrives_while_the_program_runs_then_exactly_one_exit() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)";
    client.send(json!({"type": "execute", "id": "r1", "language": "python", "code": code})).await;

    let started = client.next().await;
    assert_eq!((started["type"].as_str(), started["id"].as_str()), (Some("started"), Some("r1")), "{started}");
    let first = client.next().await;
    let first_at = Instant::now();
    assert_eq!(first["data"], "first\n", "{first}");
    let second = client.next().await;
    let gap = first_at.elapsed();
    assert_eq!(second["data"], "second\n", "{second}");
    assert!(gap >= Duration::from_millis(800), "the second line came {gap:?} after the first, not about 1 s");
    let exit = client.next().await;
    assert_eq!((exit["type"].as_str(), exit["status"].as_str()), (Some("exit"), Some("success")), "{exit}");
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["trace_id"], started["trace_id"]);

    let trace = server.trace(exit["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["source"], "websocket", "the transport is recorded");
    assert_eq!(trace["output"]["stdout"], "first\nsecond\n", "the trace keeps what the client saw");
}

#[tokio::test]
async fn a_handler_run_streams_its_output_and_ends_with_its_result_in_the_exit_frame() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import time\ndef handler(event, context):\n    print('working', flush=True)\n    time.sleep(0.5)\n    return {'done': event}\n";
    let execute = json!({"type": "execute", "id": "h1", "code": code, "handler": "handler", "event": ["ü"]});
    client.send(execute).await;
    let frames = client.run_frames("h1").await;
    assert_eq!(types(&frames), ["started", "stdout", "exit"], "{frames:?}");
    assert_eq!(output(&frames, "stdout"), "working\n");
    let exit = frames.last().unwrap();
    assert_eq!((exit["status"].as_str(), exit["result"].clone()), (Some("success"), json!({"done": ["ü"]})), "{exit}");
    assert!(exit.get("stdout").is_none(), "the output came in frames of its own: {exit}");

    let raising = "exports.handler = async () => { throw new Error('nope'); };";
    client
        .send(json!({"type": "execute", "id": "h2", "language": "node", "code": raising, "handler": "handler"}))
        .await;
    let exit = client.run_frames("h2").await.pop().unwrap();
    assert_eq!((exit["error"]["type"].as_str(), exit["error"]["message"].as_str()), (Some("Error"), Some("nope")));
    assert!(exit.get("result").is_none(), "{exit}");

    client.send(json!({"type": "execute", "id": "h3", "code": "x", "handler": "a b"})).await;
    let refused = client.run_frames("h3").await.pop().unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`handler`"), "{refused}");
}

#[tokio::test]
async fn stdin_frames_answer_input_interactively() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "name = input('name? ')\nprint('hello', name)\nage = input('age? ')\nprint(name, 'is', age)";
    client.send(json!({"type": "execute", "id": "chat", "code": code})).await;

    let frames = client.until("chat", "stdout").await;
    assert_eq!(output(&frames, "stdout"), "name? ", "the prompt shows before any newline");
    client.send(json!({"type": "stdin", "id": "chat", "data": "Ada\n"})).await;
    let frames = client.until("chat", "stdout").await;
    assert!(output(&frames, "stdout").starts_with("hello Ada"), "{frames:?}");
    client.send(json!({"type": "stdin", "id": "chat", "data": "36\n"})).await;
    let frames = client.run_frames("chat").await;
    let exit = frames.last().unwrap();
    assert_eq!(exit["status"], "success", "{frames:?}");
    let trace = server.trace(exit["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["output"]["stdout"], "name? hello Ada\nage? Ada is 36\n");
}

#[tokio::test]
async fn eof_closes_stdin_and_stdin_open_false_closes_it_at_once() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import sys\nprint(repr(sys.stdin.read()))";
    client.send(json!({"type": "execute", "id": "a", "code": code, "stdin": "abc"})).await;
    client.send(json!({"type": "stdin", "id": "a", "data": "de", "eof": true})).await;
    let frames = client.run_frames("a").await;
    assert_eq!(output(&frames, "stdout"), "'abcde'\n");

    client.send(json!({"type": "execute", "id": "b", "code": code, "stdin": "xyz", "stdin_open": false})).await;
    let frames = client.run_frames("b").await;
    assert_eq!(output(&frames, "stdout"), "'xyz'\n");

    client.send(json!({"type": "stdin", "id": "b", "data": "late"})).await;
    let error = client.next().await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("no_such_run")), "{error}");
}

#[tokio::test]
async fn kill_stops_the_run_and_removes_its_container_within_seconds() {
    let server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let mut client = Client::connect(&server).await;
    let code = "import time\nprint('looping', flush=True)\nwhile True: time.sleep(0.1)";
    client.send(json!({"type": "execute", "id": "loop", "code": code, "timeout": 60})).await;
    client.until("loop", "stdout").await;

    let asked = Instant::now();
    client.send(json!({"type": "kill", "id": "loop"})).await;
    let frames = client.run_frames("loop").await;
    let exit = frames.last().unwrap();
    assert_eq!((exit["type"].as_str(), exit["status"].as_str()), (Some("exit"), Some("killed")), "{exit}");
    assert!(asked.elapsed() < Duration::from_secs(5), "the kill took {:?}", asked.elapsed());
    eventually("the killed run's container is removed", || containers_of(&instance).is_empty()).await;
    let trace = server.trace(exit["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "killed");
}

#[tokio::test]
async fn two_runs_interleave_on_one_socket_each_keyed_by_its_id() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    // Each prints, then waits for its own stdin: both run at once, and each frame must reach
    // the right run.
    client
        .send(json!({"type": "execute", "id": "py", "code": "print('py 0', flush=True)\ninput()\nprint('py 1')"}))
        .await;
    let node = "console.log('js 0'); process.stdin.once('data', () => { console.log('js 1'); process.exit(0); });";
    client.send(json!({"type": "execute", "id": "js", "language": "node", "code": node})).await;

    let mut frames = Vec::new();
    while output(&frames, "stdout").lines().count() < 2 {
        frames.push(client.next().await);
    }
    client.send(json!({"type": "stdin", "id": "js", "data": "go\n"})).await;
    frames.extend(client.run_frames("js").await);
    client.send(json!({"type": "stdin", "id": "py", "data": "go\n"})).await;
    frames.extend(client.run_frames("py").await);

    let of = |id: &str| frames.iter().filter(|f| f["id"] == id).cloned().collect::<Vec<_>>();
    assert_eq!(output(&of("py"), "stdout"), "py 0\npy 1\n");
    assert_eq!(output(&of("js"), "stdout"), "js 0\njs 1\n");
    for id in ["py", "js"] {
        assert_eq!(types(&of(id)).first(), Some(&"started"), "{id}");
        assert_eq!(types(&of(id)).last(), Some(&"exit"), "{id}");
    }
    let order: Vec<&str> = frames.iter().filter(|f| f["type"] == "exit").filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(order, ["js", "py"], "the run started second ended first, as its stdin came first");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_run_has_its_run_killed_and_container_removed() {
    let server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "execute", "id": "r", "code": "import time\ntime.sleep(50)", "timeout": 60})).await;
    let started = client.until("r", "started").await.pop().unwrap();
    assert_eq!(containers_of(&instance).len(), 1, "the run is in its container");
    drop(client);

    eventually("the abandoned run's container is removed", || containers_of(&instance).is_empty()).await;
    let id = started["trace_id"].as_str().unwrap();
    let deadline = Instant::now() + patience();
    loop {
        let trace = server.trace(id).await;
        if trace["status"] != "running" {
            assert_eq!(trace["status"], "killed", "{trace}");
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned run's trace never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_messages_get_an_error_frame_and_the_socket_stays_usable() {
    let server = TestServer::spawn_with(&[("TRACEBOX_WS_MAX_MESSAGE_BYTES", "2048")]).await;
    let mut client = Client::connect(&server).await;
    let refused = |frame: Value, code: &str, id: Option<&str>| {
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
        assert_eq!(frame["id"].as_str(), id, "{frame}");
        assert!(frame["message"].as_str().is_some_and(|m| m.len() > 10), "{frame}");
    };

    client.socket.send(Message::text("{not json")).await.unwrap();
    refused(client.next().await, "invalid_json", None);
    client.send(json!(["execute"])).await;
    refused(client.next().await, "invalid_message", None);
    client.send(json!({"type": "launch", "id": "x"})).await;
    refused(client.next().await, "invalid_message", Some("x"));
    client.send(json!({"id": "x", "code": "print(1)"})).await;
    refused(client.next().await, "invalid_message", Some("x"));
    client.send(json!({"type": "execute", "id": "x", "code": "1", "tiemout": 3})).await;
    let frame = client.next().await;
    assert!(frame["message"].as_str().unwrap().contains("tiemout"), "the unknown field is named: {frame}");
    client.send(json!({"type": "execute", "id": "x"})).await;
    refused(client.next().await, "missing_code", Some("x"));
    client.send(json!({"type": "execute", "id": "x", "code": "1", "language": "ruby"})).await;
    refused(client.next().await, "unknown_language", Some("x"));
    client.send(json!({"type": "execute", "id": "", "code": "1"})).await;
    refused(client.next().await, "invalid_message", Some(""));
    client.send(json!({"type": "kill", "id": "nobody"})).await;
    refused(client.next().await, "no_such_run", Some("nobody"));
    client.socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    refused(client.next().await, "invalid_message", None);

    // At the limit a message is read; one byte over, it is refused.
    let padded = |size: usize| {
        let base = json!({"type": "execute", "id": "big", "code": "print(len('')) #"}).to_string();
        let code = format!("print(len('')) #{}", "x".repeat(size - base.len()));
        json!({"type": "execute", "id": "big", "code": code})
    };
    let at_limit = padded(2048);
    assert_eq!(at_limit.to_string().len(), 2048);
    client.send(at_limit).await;
    let frames = client.run_frames("big").await;
    assert_eq!(frames.last().unwrap()["status"], "success", "{frames:?}");
    client.send(padded(2049)).await;
    refused(client.next().await, "message_too_large", None);

    client.send(json!({"type": "execute", "id": "after", "code": "print('still here')"})).await;
    let frames = client.run_frames("after").await;
    assert_eq!(output(&frames, "stdout"), "still here\n");
}

#[tokio::test]
async fn a_message_far_over_the_limit_closes_the_socket_with_1009() {
    let server = TestServer::spawn_with(&[("TRACEBOX_WS_MAX_MESSAGE_BYTES", "1024")]).await;
    let mut client = Client::connect(&server).await;
    client.socket.send(Message::text("x".repeat(4 * 1024 + 1))).await.unwrap();
    let closed = loop {
        match tokio::time::timeout(patience(), client.socket.next()).await.expect("the server answers") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            Some(Err(WsError::ConnectionClosed)) | None => break None,
            Some(Err(error)) => panic!("{error}"),
        }
    };
    assert_eq!(closed.map(|frame| frame.code), Some(CloseCode::Size));
}

#[tokio::test]
async fn runs_per_socket_are_bounded_at_the_configured_number() {
    let server = TestServer::spawn_with(&[("TRACEBOX_WS_MAX_RUNS", "2")]).await;
    let mut client = Client::connect(&server).await;
    let sleeper = "import time\ntime.sleep(30)";
    client.send(json!({"type": "execute", "id": "a", "code": sleeper, "timeout": 40})).await;
    client.send(json!({"type": "execute", "id": "b", "code": sleeper, "timeout": 40})).await;
    client.send(json!({"type": "execute", "id": "c", "code": "print(3)"})).await;
    let refusal = client.until("c", "error").await.pop().unwrap();
    assert_eq!(refusal["code"], "too_many_runs", "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("TRACEBOX_WS_MAX_RUNS"));

    client.send(json!({"type": "execute", "id": "a", "code": "print(1)"})).await;
    let duplicate = client.until("a", "rejected").await.pop().unwrap();
    assert_eq!(duplicate["code"], "duplicate_run_id", "{duplicate}");

    client.send(json!({"type": "kill", "id": "a"})).await;
    client.until("a", "exit").await;
    client.send(json!({"type": "execute", "id": "c", "code": "print(3)"})).await;
    assert_eq!(output(&client.run_frames("c").await, "stdout"), "3\n", "a slot frees when a run ends");
    client.send(json!({"type": "kill", "id": "b"})).await;
    client.until("b", "exit").await;
}

#[tokio::test]
async fn blocked_code_gets_a_blocked_frame_and_never_starts() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "execute", "id": "bad", "code": "import subprocess\nsubprocess.run(['id'])"})).await;
    let frames = client.run_frames("bad").await;
    assert_eq!(types(&frames), ["blocked"], "{frames:?}");
    assert_eq!(frames[0]["rules"], json!(["python.subprocess"]));
    let trace = server.trace(frames[0]["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "blocked");
}

#[tokio::test]
async fn output_frames_are_already_redacted() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import time\nprint('sk-ant-api03-' + 'A' * 20, end='', flush=True)\ntime.sleep(0.5)\nprint('B' * 20)";
    client.send(json!({"type": "execute", "id": "s", "code": code})).await;
    let frames = client.run_frames("s").await;
    let seen = output(&frames, "stdout");
    assert_eq!(seen, "[REDACTED:anthropic_api_key]\n", "a secret printed in two parts is never shown");
    assert_eq!(frames.last().unwrap()["redactions"][0]["rule"], "anthropic_api_key");
}

#[tokio::test]
async fn a_page_from_a_foreign_origin_is_refused_and_the_own_origin_and_listed_ones_are_let_in() {
    let server = TestServer::spawn_with(&[("TRACEBOX_ALLOWED_ORIGINS", "https://ide.example.com")]).await;
    let url = server.url("/ws").replacen("http://", "ws://", 1);
    let with_origin = |origin: &str| {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "cross_origin", "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("TRACEBOX_ALLOWED_ORIGINS"));
        }
        other => panic!("a foreign origin was let in: {:?}", other.map(|_| ())),
    }
    let own = server.url.clone();
    for origin in [own.as_str(), "https://ide.example.com"] {
        let (mut socket, _) = tokio_tungstenite::connect_async(with_origin(origin)).await.expect("let in");
        socket.close(None).await.unwrap();
    }

    // DNS rebinding: a page on a name its attacker points at this server looks same-origin, but
    // names that name in its Host, which the server does not answer to.
    let port = own.rsplit(':').next().unwrap();
    let rebound = |host: &str| {
        let mut request = with_origin(&format!("http://{host}:{port}"));
        request.headers_mut().insert("host", format!("{host}:{port}").parse().unwrap());
        request
    };
    let refused = tokio_tungstenite::connect_async(rebound("evil.example")).await;
    assert!(matches!(refused, Err(WsError::Http(ref r)) if r.status() == 421), "a DNS name's own origin is refused");
    let (mut socket, _) = tokio_tungstenite::connect_async(rebound("localhost")).await.expect("localhost is let in");
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn a_refused_message_about_a_running_run_is_rejected_and_the_run_goes_on() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "execute", "id": "r", "code": "print(input())"})).await;
    client.until("r", "started").await;
    client.send(json!({"type": "stdin", "id": "r", "data": 42})).await;
    let rejected = client.until("r", "rejected").await.pop().unwrap();
    assert_eq!(rejected["code"], "invalid_message", "{rejected}");
    assert!(rejected["message"].as_str().unwrap().contains("data"), "the field is named: {rejected}");
    client.send(json!({"type": "stdin", "id": "r", "data": "still running\n"})).await;
    let frames = client.run_frames("r").await;
    assert_eq!(output(&frames, "stdout"), "still running\n");
    assert_eq!(types(&frames).last(), Some(&"exit"), "exactly one last frame, after the rejection");
}

#[tokio::test]
async fn a_silent_client_is_dropped_by_the_heartbeat_and_its_run_killed() {
    let server = TestServer::spawn_with(&[("TRACEBOX_WS_PING_SECS", "0.2")]).await;
    let instance = server.instance_id().await;

    // A client that keeps reading answers pings and stays connected past several intervals.
    let mut alive = Client::connect(&server).await;
    alive.send(json!({"type": "execute", "id": "slow", "code": "import time\ntime.sleep(1.5)\nprint('done')"})).await;
    let frames = alive.run_frames("slow").await;
    assert_eq!(output(&frames, "stdout"), "done\n");

    // One that stops reading sends no pongs: within a few intervals it is closed, its run killed.
    let mut silent = Client::connect(&server).await;
    silent.send(json!({"type": "execute", "id": "r", "code": "import time\ntime.sleep(50)", "timeout": 60})).await;
    let started = silent.until("r", "started").await.pop().unwrap();
    let id = started["trace_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually("the silent client's container is removed", || containers_of(&instance).is_empty()).await;
    assert_eq!(server.trace(&id).await["status"], "killed");
    assert!(server.logged().contains("\"why\":\"silent\""), "the log says why the socket was closed");
    drop(silent);
}

#[tokio::test]
async fn stdin_is_bounded_in_all_at_the_stdin_limit() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_STDIN_BYTES", "10")]).await;
    let mut client = Client::connect(&server).await;
    let code = "import sys\nprint(repr(sys.stdin.read()))";
    client.send(json!({"type": "execute", "id": "in", "code": code, "stdin": "1234"})).await;
    client.send(json!({"type": "stdin", "id": "in", "data": "567890"})).await;
    client.send(json!({"type": "stdin", "id": "in", "data": "X"})).await;
    let refusal = client.until("in", "rejected").await.pop().unwrap();
    assert_eq!(refusal["code"], "stdin_too_large", "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("TRACEBOX_MAX_STDIN_BYTES"));
    client.send(json!({"type": "stdin", "id": "in", "eof": true})).await;
    let frames = client.run_frames("in").await;
    assert_eq!(output(&frames, "stdout"), "'1234567890'\n", "exactly the limit got through");

    client.send(json!({"type": "execute", "id": "in2", "code": code, "stdin": "x".repeat(11)})).await;
    let refusal = client.run_frames("in2").await.pop().unwrap();
    assert_eq!(refusal["code"], "stdin_too_large", "{refusal}");
}

#[tokio::test]
async fn a_run_killed_while_it_waits_for_a_slot_never_starts() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_CONCURRENT_RUNS", "1")]).await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "execute", "id": "busy", "code": "import time\ntime.sleep(30)", "timeout": 40})).await;
    client.until("busy", "started").await;
    client.send(json!({"type": "execute", "id": "queued", "code": "print('never')"})).await;
    client.send(json!({"type": "kill", "id": "queued"})).await;
    let frames = client.run_frames("queued").await;
    assert_eq!(types(&frames), ["exit"], "no started, no output: {frames:?}");
    assert_eq!(frames[0]["status"], "killed");
    client.send(json!({"type": "kill", "id": "busy"})).await;
    assert_eq!(client.run_frames("busy").await.pop().unwrap()["status"], "killed");
}

#[tokio::test]
async fn a_timeout_over_the_socket_ends_like_one_over_http() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import time\nprint('before', flush=True)\ntime.sleep(30)";
    client.send(json!({"type": "execute", "id": "t", "code": code, "timeout": 1})).await;
    let frames = client.run_frames("t").await;
    let exit = frames.last().unwrap();
    assert_eq!((exit["status"].as_str(), exit["timed_out"].as_bool()), (Some("timeout"), Some(true)), "{exit}");
    assert_eq!(output(&frames, "stdout"), "before\n", "output printed before the timeout is kept");
}

#[tokio::test]
async fn the_playground_page_and_its_assets_are_served_under_the_csp() {
    let server = TestServer::spawn().await;
    let page = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/static/playground.js") && !html.contains("<script>"), "no inline script");
    let plain = server.client.get(server.url("/ws")).send().await.unwrap();
    assert_eq!(plain.status(), 426, "a plain GET /ws is told to upgrade");
    assert_eq!(plain.json::<Value>().await.unwrap()["error"]["code"], "upgrade_required");
    let script = server.client.get(server.url("/static/playground.js")).send().await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.unwrap().contains("new WebSocket"));
}

#[tokio::test]
async fn the_exit_frame_lists_the_artifacts() {
    let server = TestServer::spawn().await;
    let mut client = Client::connect(&server).await;
    let code = "import os\nos.makedirs('out')\nopen('out/r.txt', 'w').write('ws')\nprint('ok')";
    client.send(json!({"type": "execute", "id": "a", "code": code})).await;
    let frames = client.run_frames("a").await;
    let exit = frames.last().unwrap();
    assert_eq!(exit["type"], "exit", "{frames:?}");
    assert_eq!(exit["artifacts"][0]["name"], "out/r.txt", "{exit}");
    assert_eq!(exit["artifacts"][0]["size"], 2);
    assert_eq!(exit["artifacts_omitted"], json!([]));
    assert!(exit.get("stdout").is_none(), "output came in its own frames: {exit}");
    let url = server.url(exit["artifacts"][0]["url"].as_str().unwrap());
    assert_eq!(server.client.get(url).send().await.unwrap().text().await.unwrap(), "ws");
}

/// A sandbox made over HTTP; the server's sandbox containers are removed when the test ends
/// (whatever happens), as a stopping server leaves running sandboxes be.
struct Sandbox {
    instance: String,
    id: String,
}

impl Sandbox {
    async fn create(server: &TestServer, body: Value) -> Sandbox {
        let response = server.client.post(server.url("/sandboxes")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let reply: Value = response.json().await.unwrap();
        Sandbox { instance: server.instance_id().await, id: reply["sandbox_id"].as_str().unwrap().to_owned() }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for container in containers_of(&self.instance) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &container]).output();
        }
    }
}

#[tokio::test]
async fn a_sandboxs_command_and_cell_stream_over_the_socket_with_stdin_and_kill() {
    let server = TestServer::spawn().await;
    let sandbox = Sandbox::create(&server, json!({})).await;
    let mut client = Client::connect(&server).await;
    let cmd = "read name; echo \"hello $name\"; echo done >&2";
    client.send(json!({"type": "execute", "id": "c", "sandbox_id": sandbox.id, "cmd": cmd})).await;
    client.until("c", "started").await;
    client.send(json!({"type": "stdin", "id": "c", "data": "ada\n", "eof": true})).await;
    let frames = client.run_frames("c").await;
    assert_eq!((output(&frames, "stdout"), output(&frames, "stderr")), ("hello ada\n".into(), "done\n".into()));
    assert_eq!(frames.last().unwrap()["status"], "success", "{frames:?}");

    let cell = "import time\nx = 7\nprint('before', flush=True)\ntime.sleep(60)";
    client.send(json!({"type": "execute", "id": "k", "sandbox_id": sandbox.id, "code": cell, "timeout": 120})).await;
    let frames = client.until("k", "stdout").await;
    assert_eq!(frames.last().unwrap()["data"], "before\n");
    client.send(json!({"type": "kill", "id": "k"})).await;
    let frames = client.run_frames("k").await;
    assert_eq!(frames.last().unwrap()["status"], "killed", "{frames:?}");

    client.send(json!({"type": "execute", "id": "r", "sandbox_id": sandbox.id, "code": "x * 6"})).await;
    let frames = client.run_frames("r").await;
    let exit = frames.last().unwrap();
    assert_eq!(
        (exit["status"].as_str(), exit["result"].as_str()),
        (Some("success"), Some("42")),
        "the kernel kept x: {exit}"
    );

    client.send(json!({"type": "execute", "id": "x", "sandbox_id": "sbx_nope", "code": "1"})).await;
    let refused = client.run_frames("x").await;
    assert_eq!(refused.last().unwrap()["code"], "no_such_sandbox", "{refused:?}");
    let response = server.client.delete(server.url(&format!("/sandboxes/{}", sandbox.id))).send().await.unwrap();
    assert_eq!(response.status(), 204);
}
