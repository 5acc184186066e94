//! Handler mode: `/execute` (and the WebSocket, the CLI) with `handler` and `event` calls a
//! Lambda-style function of the code and replies with what it returned (`result`) or raised
//! (`error`), carried on the supervisor's framed channel, never read from the program's output.

use serde_json::{Value, json};

use crate::common::pool::{container_of, eventually_ready, pooled, recycles};
use crate::common::{TestServer, unscreened_server};

/// POST a handler call; the reply of a run that happened (HTTP 200).
async fn call(server: &TestServer, language: &str, code: &str, event: Value) -> Value {
    call_with(server, json!({"language": language, "code": code, "handler": "handler", "event": event})).await
}

async fn call_with(server: &TestServer, body: Value) -> Value {
    let (status, reply) = server.execute(body).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// The reply's result, after checking it succeeded with one and no error.
fn result(reply: &Value) -> &Value {
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["exit_code"], 0, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    reply.get("result").unwrap_or_else(|| panic!("no result: {reply}"))
}

/// The reply's error, after checking the run failed with one and no result.
fn error(reply: &Value) -> &Value {
    assert!(reply.get("result").is_none(), "{reply}");
    assert_ne!(reply["status"], "success", "{reply}");
    let error = reply.get("error").unwrap_or_else(|| panic!("no error: {reply}"));
    assert!(error["type"].is_string() && error["message"].is_string() && error["stack"].is_string(), "{error}");
    error
}

const PY_ECHO: &str =
    "def handler(event, context):\n    print('echoing', type(event['value']).__name__)\n    return event['value']\n";
const JS_ECHO: &str = "exports.handler = async (event, context) => {\n  console.log('echoing', typeof event.value);\n  return event.value;\n};\n";

#[tokio::test]
async fn every_json_shape_comes_back_as_returned_with_nested_unicode_in_both_languages() {
    let server = TestServer::spawn().await;
    let values = [
        json!({"grüße": {"emoji": "🦀", "cjk": "漢字", "rtl": "שלום", "list": [1, -2.5, true, null, {"deep": ["é\n\t\"'\\"]}]}}),
        json!([["ü", []], {}, 0, 1e100, "\u{0}", "\u{2028}"]),
        json!(null),
        json!("a string with ünïcödé and \"quotes\""),
    ];
    for (language, code) in [("python", PY_ECHO), ("node", JS_ECHO)] {
        for value in &values {
            let reply = call(&server, language, code, json!({"value": value})).await;
            assert_eq!(result(&reply), value, "{language}: {reply}");
            assert!(reply["stdout"].as_str().unwrap().starts_with("echoing"), "output still comes: {reply}");
        }
    }
}

#[tokio::test]
async fn sync_async_callback_promise_and_es_module_handlers_all_return() {
    let server = TestServer::spawn().await;
    let handlers = [
        ("python", "def handler(event, context):\n    return {'sync': event}\n", json!({"sync": 1})),
        (
            "python",
            "import asyncio\n\nasync def handler(event, context):\n    await asyncio.sleep(0.05)\n    return {'async': event}\n",
            json!({"async": 1}),
        ),
        ("node", "exports.handler = (event) => ({ sync: event });", json!({"sync": 1})),
        (
            "node",
            "exports.handler = async (event) => { await new Promise((r) => setTimeout(r, 50)); return { async: event }; };",
            json!({"async": 1}),
        ),
        (
            "node",
            "exports.handler = (event, context, callback) => { setTimeout(() => callback(null, { callback: event }), 20); };",
            json!({"callback": 1}),
        ),
        ("node", "module.exports.handler = (event) => Promise.resolve({ promise: event });", json!({"promise": 1})),
        ("node", "export const handler = async (event) => ({ module: event });", json!({"module": 1})),
    ];
    for (language, code, expected) in handlers {
        let reply = call(&server, language, code, json!(1)).await;
        assert_eq!(result(&reply), &expected, "{code}: {reply}");
    }
}

#[tokio::test]
async fn a_raising_handler_is_an_error_with_its_type_message_and_stack() {
    let server = TestServer::spawn().await;
    let python = "def check(event):\n    raise ValueError(f'bad event {event!r}')\n\ndef handler(event, context):\n    check(event)\n";
    let reply = call(&server, "python", python, json!("x")).await;
    let raised = error(&reply);
    assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(1)), "{reply}");
    assert_eq!(raised["type"], "ValueError");
    assert_eq!(raised["message"], "bad event 'x'");
    let stack = raised["stack"].as_str().unwrap();
    assert!(stack.starts_with("Traceback (most recent call last):"), "{stack}");
    assert!(stack.contains("/workspace/main.py\", line 5, in handler") && stack.contains("in check"), "{stack}");
    assert!(!stack.contains("/opt/tracebox"), "the runner's frames are left out: {stack}");
    assert!(reply["stderr"].as_str().unwrap().contains("ValueError: bad event 'x'"), "printed too: {reply}");

    let node = "function check(event) { throw new RangeError(`bad event ${event}`); }\nexports.handler = async (event) => check(event);\n";
    let reply = call(&server, "node", node, json!("x")).await;
    let raised = error(&reply);
    assert_eq!(reply["exit_code"], 1, "{reply}");
    assert_eq!((raised["type"].as_str(), raised["message"].as_str()), (Some("RangeError"), Some("bad event x")));
    let stack = raised["stack"].as_str().unwrap();
    assert!(stack.contains("at check (/workspace/main.js:1:"), "{stack}");
    assert!(!stack.contains("/opt/tracebox") && !stack.contains("node:internal"), "{stack}");

    let thrown = "exports.handler = (event, context, callback) => callback('no luck');";
    let raised = error(&call(&server, "node", thrown, Value::Null).await).clone();
    assert_eq!((raised["type"].as_str(), raised["message"].as_str()), (Some("string"), Some("no luck")));
}

#[tokio::test]
async fn a_missing_or_uncallable_handler_is_a_clear_error() {
    let server = TestServer::spawn().await;
    let cases = [
        ("python", "def main(event, context):\n    return 1\n", "defines no `handler`"),
        ("python", "handler = 42\n", "is a int, not a function"),
        ("node", "exports.main = async () => 1;", "does not export `handler`"),
        ("node", "export const handler = 'not a function';", "exports a string as `handler`"),
    ];
    for (language, code, says) in cases {
        let reply = call(&server, language, code, Value::Null).await;
        let missing = error(&reply);
        assert_eq!(missing["type"], "Runtime.HandlerNotFound", "{reply}");
        assert!(missing["message"].as_str().unwrap().contains(says), "{language}: {missing}");
        assert_eq!(reply["status"], "error");
    }
}

#[tokio::test]
async fn a_value_json_cannot_hold_is_an_error_naming_its_type() {
    let server = TestServer::spawn().await;
    let cases = [
        ("python", "def handler(event, context):\n    return {'tags': {1, 2}}\n", "Object of type set"),
        ("python", "def handler(event, context):\n    return float('nan')\n", "Out of range float"),
        ("node", "exports.handler = async () => ({ ok: 1, run() {} });", "a function (at key \"run\")"),
        ("node", "exports.handler = async () => [1n];", "a bigint (at index 0)"),
        ("node", "exports.handler = async () => new Map([[1, 2]]);", "a Map"),
    ];
    for (language, code, says) in cases {
        let reply = call(&server, language, code, Value::Null).await;
        let refused = error(&reply);
        assert_eq!(refused["type"], "Runtime.MarshalError", "{reply}");
        assert!(refused["message"].as_str().unwrap().contains(says), "{language}: {refused}");
        assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(1)));
    }
}

#[tokio::test]
async fn output_that_looks_like_a_result_or_a_frame_is_only_output() {
    // Without the policy's screen: what holds is the channel, not a pattern over the code.
    let server = unscreened_server().await;
    // A result line, a `v` frame and an end frame as the supervisor would write them, a message
    // with a guessed key, and writes to fd 3 and 4 (the channel's number before the runner moved it).
    let python = r#"import os, sys
forged = b'{"result": "forged"}\n' + b'v' + (30).to_bytes(4, 'big') + b'0' * 32 + b'r8\n"forged"' + b'X\x00\x00\x00\x030 0'
def handler(event, context):
    sys.stdout.buffer.write(forged)
    sys.stderr.buffer.write(forged)
    for fd in (3, 4):
        try:
            os.write(fd, forged)
        except OSError as error:
            print('fd', fd, error.strerror)
    return 'real'
"#;
    let reply = call(&server, "python", python, Value::Null).await;
    assert_eq!(result(&reply), "real", "{reply}");
    let stdout = reply["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("{\"result\": \"forged\"}\nv"), "printed bytes are output: {reply}");
    assert!(stdout.contains("fd 3 Bad file descriptor") && stdout.contains("fd 4 Bad file descriptor"), "{reply}");

    let node = r#"const fs = require('fs');
const forged = '{"result":"forged"}\n';
exports.handler = async () => {
  console.log(forged);
  process.stdout.write(Buffer.concat([Buffer.from('v\0\0\0\x09'), Buffer.from('r1\n"x"')]));
  for (const fd of [3, 4]) {
    try { fs.writeSync(fd, forged); } catch (error) { console.log('fd', fd, error.code); }
  }
  return 'real';
};
"#;
    let reply = call(&server, "node", node, Value::Null).await;
    assert_eq!(result(&reply), "real", "{reply}");
    let stdout = reply["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("{\"result\":\"forged\"}") && stdout.contains("fd 3 EBADF") && stdout.contains("fd 4 EBADF")
    );
}

#[tokio::test]
async fn a_child_process_inherits_no_descriptor_of_the_channel() {
    let server = unscreened_server().await;
    // The shell's glob lists its own stdio and the directory it reads (3): nothing else came
    // down to it. (Not `ls`: Debian's coreutils `ls` fails under Debian's gVisor, on statx.)
    let python = "import subprocess\ndef handler(event, context):\n    listed = subprocess.run(['sh', '-c', 'echo /proc/self/fd/*'], capture_output=True, text=True).stdout.split()\n    return [path.rsplit('/', 1)[1] for path in listed]\n";
    let node = "const { execFileSync } = require('child_process');\nexports.handler = async () => execFileSync('sh', ['-c', 'echo /proc/self/fd/*']).toString().split(/\\s+/).filter(Boolean).map((p) => p.split('/').pop());";
    for (language, code) in [("python", python), ("node", node)] {
        let reply = call(&server, language, code, Value::Null).await;
        assert_eq!(result(&reply), &json!(["0", "1", "2", "3"]), "{language}: {reply}");
    }
}

#[tokio::test]
async fn bytes_on_the_channel_without_the_runs_key_cannot_forge_a_result() {
    let server = unscreened_server().await;
    // Whatever lands on the channel without the run's key makes its result untrusted: the
    // reply says so rather than return the forged value (or the real one after it). Python
    // writes blindly to every descriptor; Node finds the channel first (a blocking pipe it may
    // write to, by /proc/self/fdinfo), since junk on libuv's own pipes crashes it.
    let python = r#"import os
def handler(event, context):
    for fd in range(3, 256):
        try:
            os.write(fd, b'0123456789abcdef0123456789abcdefr8\n"forged"')
        except OSError:
            pass
    return 'real'
"#;
    let node = r#"const fs = require('fs');
exports.handler = async () => {
  for (const name of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    let info;
    try { info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'); } catch { continue; }
    const flags = parseInt(/flags:\s+(\d+)/.exec(info)[1], 8);
    const writeOnly = (flags & 3) === 1, blocking = (flags & 0o4000) === 0;
    if (fd > 2 && writeOnly && blocking && fs.fstatSync(fd).isFIFO()) {
      fs.writeSync(fd, '0123456789abcdef0123456789abcdefr8\n"forged"');
    }
  }
  return 'real';
};
"#;
    for (language, code) in [("python", python), ("node", node)] {
        let reply = call(&server, language, code, Value::Null).await;
        let untrusted = error(&reply);
        assert_eq!(untrusted["type"], "Runtime.BadChannel", "{language}: {reply}");
        assert_eq!(reply["status"], "error", "{reply}");
        assert!(!reply.to_string().contains("\"result\""), "{reply}");
    }
}

#[tokio::test]
async fn the_context_names_the_run_and_its_remaining_time_counts_down_to_the_timeout() {
    let server = TestServer::spawn().await;
    let python = r#"import time
def handler(event, context):
    first = context.get_remaining_time_in_millis()
    time.sleep(0.5)
    return [first, context.get_remaining_time_in_millis(), context.request_id, context.aws_request_id,
            context.function_name, context.memory_limit_in_mb]
"#;
    let node = r#"exports.handler = async (event, context) => {
  const first = context.getRemainingTimeInMillis();
  await new Promise((resolve) => setTimeout(resolve, 500));
  return [first, context.getRemainingTimeInMillis(), context.request_id, context.awsRequestId,
          context.functionName, context.memoryLimitInMB];
};
"#;
    for (language, code) in [("python", python), ("node", node)] {
        let body = json!({"language": language, "code": code, "handler": "handler", "timeout": 3, "memory_mb": 128});
        let reply = call_with(&server, body).await;
        let got = result(&reply).as_array().unwrap().clone();
        let (first, second) = (got[0].as_i64().unwrap(), got[1].as_i64().unwrap());
        assert!((2_000..=3_000).contains(&first), "{language}: {first} ms left of 3 s at the start");
        assert!((400..=1_500).contains(&(first - second)), "{language}: {first} then {second} after 0.5 s");
        assert_eq!(got[2], reply["trace_id"], "{language}: the request id is the trace id");
        assert_eq!(got[3], reply["trace_id"]);
        assert_eq!((got[4].as_str(), got[5].as_i64()), (Some("handler"), Some(128)), "{language}");
    }
}

#[tokio::test]
async fn the_trace_keeps_the_event_and_the_result_or_error_redacted() {
    let server = TestServer::spawn().await;
    let key = ["sk-ant-api03-", &"A1b2".repeat(10)].concat();
    let code = "def handler(event, context):\n    if event['fail']:\n        raise KeyError(event['key'])\n    return {'got': event['key'], 'n': 1}\n";
    let event = json!({"fail": false, "key": key, "note": "ünï"});
    let reply = call(&server, "python", code, event).await;
    assert_eq!(result(&reply), &json!({"got": "[REDACTED:anthropic_api_key]", "n": 1}), "{reply}");
    let redactions = reply["redactions"].as_array().unwrap();
    assert!(redactions.iter().any(|r| r["stream"] == "result" && r["rule"] == "anthropic_api_key"), "{reply}");

    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert!(!trace.to_string().contains(&key), "no secret in the trace: {trace}");
    assert_eq!(trace["input"]["handler"]["name"], "handler", "{trace}");
    assert_eq!(trace["input"]["handler"]["event"]["note"], "ünï");
    assert_eq!(trace["input"]["handler"]["event"]["key"], "[REDACTED:anthropic_api_key]");
    assert_eq!(trace["output"]["handler"], json!({"result": {"got": "[REDACTED:anthropic_api_key]", "n": 1}}));
    let page = server.client.get(server.url(&format!("/trace/{}", reply["trace_id"].as_str().unwrap()))).send();
    let page = page.await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"event\"") && page.contains("ünï") && page.contains("id=\"result\""), "{page}");
    assert!(page.contains("Handler `handler` returned a result"));

    let reply = call(&server, "python", code, json!({"fail": true, "key": "k"})).await;
    assert_eq!(error(&reply)["type"], "KeyError");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["output"]["handler"]["error"]["type"], "KeyError", "{trace}");
    assert_eq!(trace["output"]["handler"]["error"]["message"], "'k'");
    let page = server.client.get(server.url(&format!("/trace/{}", reply["trace_id"].as_str().unwrap()))).send();
    let page = page.await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"handler-error\"><code>KeyError: &#39;k&#39;</code>"), "{page}");
}

#[tokio::test]
async fn a_result_exactly_at_the_limit_comes_back_and_one_byte_over_is_an_error() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_RESULT_BYTES", "100")]).await;
    // A string of n characters is n + 2 bytes of JSON.
    let python = "def handler(event, context):\n    return 'x' * event\n";
    let node = "exports.handler = async (event) => 'x'.repeat(event);";
    for (language, code) in [("python", python), ("node", node)] {
        let reply = call(&server, language, code, json!(98)).await;
        assert_eq!(result(&reply).as_str().unwrap().len(), 98, "{language}: exactly 100 bytes pass");
        let reply = call(&server, language, code, json!(99)).await;
        let over = error(&reply);
        assert_eq!(over["type"], "Runtime.ResultTooLarge", "{language}: {reply}");
        let message = over["message"].as_str().unwrap();
        assert!(
            message.contains("101 bytes") && message.contains("100 bytes (TRACEBOX_MAX_RESULT_BYTES)"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_program_that_ends_or_is_stopped_before_its_handler_returns_gets_an_error_saying_so() {
    let server = TestServer::spawn().await;
    let exits = "import sys\ndef handler(event, context):\n    sys.exit(0)\n";
    let reply = call(&server, "python", exits, Value::Null).await;
    assert_eq!(error(&reply)["type"], "Runtime.ExitError", "{reply}");
    assert_eq!(reply["status"], "error", "no result is no success, whatever the exit code");

    let never = "exports.handler = () => new Promise(() => {});";
    let reply = call(&server, "node", never, Value::Null).await;
    let ended = error(&reply);
    assert_eq!(ended["type"], "Runtime.ExitError", "{reply}");
    assert!(ended["message"].as_str().unwrap().contains("never settled"), "{ended}");

    let slow = "import time\ndef handler(event, context):\n    time.sleep(30)\n";
    let body = json!({"code": slow, "handler": "handler", "timeout": 1});
    let reply = call_with(&server, body).await;
    assert_eq!(reply["status"], "timeout", "{reply}");
    assert_eq!(error(&reply)["type"], "Runtime.Timeout");
}

#[tokio::test]
async fn requests_are_checked_naming_the_field() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_STDIN_BYTES", "64")]).await;
    let (status, reply) = server.execute(json!({"code": "x", "handler": "main.handler"})).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_handler")), "{reply}");
    let (status, reply) = server.execute(json!({"code": "x", "event": {"a": 1}})).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_handler")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("name the function to call with `handler`"));
    let (status, reply) = server.execute(json!({"code": "x", "handler": "h", "event": "y".repeat(63)})).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("event_too_large")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("65 bytes"), "{reply}");
    // Exactly at the limit it runs, and with no event at all the handler gets null.
    let code = "def h(event, context):\n    return [event if event is None else len(event)]\n";
    let reply = call_with(&server, json!({"code": code, "handler": "h", "event": "y".repeat(62)})).await;
    assert_eq!(result(&reply), &json!([62]));
    let reply = call_with(&server, json!({"code": code, "handler": "h"})).await;
    assert_eq!(result(&reply), &json!([null]));
}

#[tokio::test]
async fn warm_containers_serve_handler_runs_and_a_recycled_one_gives_each_its_own_channel() {
    let server = pooled(&[("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "1")]).await;
    let code = "def handler(event, context):\n    return {'n': event, 'id': context.request_id}\n";
    eventually_ready(&server, "python-recycle-default").await;
    let first = call(&server, "python", code, json!(1)).await;
    assert_eq!(result(&first)["n"], 1);
    let container = container_of(&server, &first).await;
    eventually_ready(&server, "python-recycle-default").await;
    let plain = server.run("python", "print('plain')").await;
    assert!(plain.get("result").is_none() && plain.get("error").is_none(), "a plain run has neither: {plain}");
    let runtime = crate::common::runtime();
    let same = container_of(&server, &plain).await == container;
    assert_eq!(same, recycles(), "runtime {runtime}: the same container served both (runsc: one run each)");
    eventually_ready(&server, "python-recycle-default").await;
    let second = call(&server, "python", code, json!(2)).await;
    assert_eq!(container_of(&server, &second).await == container, recycles(), "runtime {runtime}");
    assert_eq!(result(&second), &json!({"n": 2, "id": second["trace_id"]}), "its own result, not the first's");
}
