//! `POST /claude` (and the WebSocket's `claude`): a real tracebox asking the fake Anthropic API
//! on loopback, over real HTTP and SSE, with the replies' code run in the real sandbox.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{FAKE_KEY, FakeAnthropic, TestServer, patience};

/// A prompt the fake answers with exactly this Python block.
fn python(code: &str) -> String {
    format!("Reply with this program:\n```python\n{code}\n```")
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("no {key} in {value}"))
}

#[tokio::test]
async fn a_prompt_gets_claudes_reply_its_usage_and_a_trace_of_the_call() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (status, reply) = server
        .claude(json!({"prompt": python("print(29)"), "system": "You write Python.", "max_tokens": 300, "temperature": 0.2}))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(text(&reply, "text").contains("```python\nprint(29)\n```"), "{reply}");
    assert_eq!(reply["model"], "claude-sonnet-4-5", "the configured default model");
    assert_eq!(reply["stop_reason"], "end_turn");
    assert!(
        reply["usage"]["input_tokens"].as_u64().unwrap() > 0 && reply["usage"]["output_tokens"].as_u64().unwrap() > 0
    );
    assert!(reply["cost_usd"].as_f64().unwrap() > 0.0, "the built-in prices know this model: {reply}");
    assert!(text(&reply, "request_id").starts_with("req_"));
    assert_eq!(reply["executions"], json!([]), "nothing runs unless asked");

    // What reached Anthropic, as the fake saw it.
    let sent = &fake.requests().await[0];
    assert_eq!(sent["path"], "/v1/messages");
    assert_eq!(sent["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(sent["authorized"], true, "the configured key was sent");
    assert_eq!(sent["body"]["system"], "You write Python.");
    assert_eq!(sent["body"]["max_tokens"], 300);
    assert_eq!(sent["body"]["temperature"], 0.2);
    assert_eq!(sent["body"]["messages"], json!([{"role": "user", "content": python("print(29)")}]));
    assert_eq!(sent["request_id"], reply["request_id"]);

    let trace = server.trace(text(&reply, "trace_id")).await;
    assert_eq!((trace["kind"].as_str(), trace["status"].as_str()), (Some("claude"), Some("success")));
    assert_eq!(trace["input"]["model"], "claude-sonnet-4-5");
    assert_eq!(trace["input"]["system"], "You write Python.");
    assert_eq!(trace["output"]["usage"], reply["usage"]);
    assert_eq!(trace["output"]["request_id"], reply["request_id"]);
    assert!(trace["output"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(trace["preview"].as_str().unwrap().starts_with("Reply with this program"), "{trace}");
    let (_, found) = server.get_json("/traces?kind=claude&q=print(29)").await;
    assert_eq!(found["traces"].as_array().unwrap().len(), 1, "the prompt and reply are searchable");
}

#[tokio::test]
async fn with_execute_the_python_block_runs_as_a_child_trace() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (status, reply) = server.claude(json!({"prompt": python("print(sum(range(8)))"), "execute": true})).await;
    assert_eq!(status, 200, "{reply}");
    let run = &reply["executions"][0];
    assert_eq!((run["status"].as_str(), run["stdout"].as_str()), (Some("success"), Some("28\n")), "{reply}");
    let child = server.trace(text(run, "trace_id")).await;
    assert_eq!(child["parent_id"], reply["trace_id"]);
    assert_eq!(child["kind"], "execution");
    let parent = server.trace(text(&reply, "trace_id")).await;
    assert_eq!(parent["children"][0]["id"], run["trace_id"]);
    assert_eq!(parent["language"], "python");
}

#[tokio::test]
async fn a_blocked_block_is_reported_blocked_without_failing_the_call() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let prompt = "Two programs:\n```python\nimport subprocess\nsubprocess.run(['id'])\n```\nand\n```js\nconsole.log('node ran')\n```\n```bash\nrm -rf /\n```";
    let (status, reply) = server.claude(json!({"prompt": prompt, "execute": true})).await;
    assert_eq!(status, 200, "{reply}");
    let runs = reply["executions"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{reply}");
    assert_eq!(runs[0]["status"], "blocked");
    assert!(runs[0]["policy_hits"].as_array().unwrap().iter().any(|h| h["rule"] == "python.subprocess"));
    assert_eq!((runs[1]["status"].as_str(), runs[1]["stdout"].as_str()), (Some("success"), Some("node ran\n")));
    assert_eq!(reply["skipped_blocks"], json!(["bash"]), "a shell block is named, never run");
}

#[tokio::test]
async fn a_rate_limit_then_success_is_retried_and_the_retry_recorded() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (status, reply) = server.claude(json!({"prompt": "hi [fake:flaky:429:1] [fake:retry_after:0.2]"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["retries"], 1);
    let trace = server.trace(text(&reply, "trace_id")).await;
    let attempts = trace["output"]["attempts"].as_array().unwrap();
    assert_eq!((attempts[0]["status"].as_u64(), attempts[1]["status"].as_u64()), (Some(429), Some(200)));
    assert_eq!(attempts[0]["waited_ms"], 200.0, "the retry-after was honoured");
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(events.contains(&"claude.attempt_failed"), "{events:?}");

    let (status, reply) =
        server.claude(json!({"prompt": "hi [fake:flaky:529:2] [fake:retry_after:0.05]", "stream": false})).await;
    assert_eq!((status, reply["retries"].as_u64()), (200, Some(2)), "529 overloaded is retried too: {reply}");
}

#[tokio::test]
async fn errors_that_do_not_heal_answer_at_once_with_anthropics_reason() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (status, reply) = server.claude(json!({"prompt": "hi", "model": "claude-does-not-exist"})).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["code"], "claude_rejected");
    assert!(text(&reply["error"], "message").contains("not_found_error"), "{reply}");
    let trace = server.trace(text(&reply, "trace_id")).await;
    assert_eq!(trace["status"], "error");
    assert_eq!(trace["output"]["attempts"].as_array().unwrap().len(), 1, "a 404 is not retried");

    let (status, reply) = server.claude(json!({"prompt": "hi [fake:status:529] [fake:retry_after:0.01]"})).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "claude_unavailable");
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error_and_the_server_goes_on() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::spawn_with(&[
        ("ANTHROPIC_BASE_URL", fake.url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-not-the-right-one"),
    ])
    .await;
    let (status, reply) = server.claude(json!({"prompt": "hi"})).await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(reply["error"]["code"], "claude_auth_failed");
    assert!(text(&reply["error"], "message").contains("401 authentication_error"), "{reply}");
    assert!(!reply.to_string().contains("not-the-right-one"), "the key is never echoed: {reply}");
    assert_eq!(server.trace(text(&reply, "trace_id")).await["status"], "error");
    let (status, _) = server.get_json("/health").await;
    assert_eq!(status, 200, "the server goes on");

    let keyless = TestServer::spawn_with(&[("ANTHROPIC_BASE_URL", fake.url.as_str())]).await;
    let (status, reply) = keyless.claude(json!({"prompt": "hi"})).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "claude_not_configured");
    assert!(text(&reply["error"], "message").contains("ANTHROPIC_API_KEY"));
}

/// The server-sent events of a streamed `/claude`, as (event, data).
async fn events_of(server: &TestServer, body: Value) -> Vec<(String, Value)> {
    let response = server.client.post(server.url("/claude")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let raw = response.text().await.unwrap();
    raw.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let (name, data) = event.split_once('\n').unwrap();
            let data = data.strip_prefix("data: ").unwrap();
            (name.strip_prefix("event: ").unwrap().to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_call_sends_the_text_as_it_comes_then_the_runs_then_the_reply() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let body = json!({"prompt": python("print('streamed and run')"), "stream": true, "execute": true});
    let events = events_of(&server, body).await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"started"));
    assert_eq!(&names[names.len() - 2..], ["execution", "done"], "{names:?}");
    assert!(names.iter().filter(|n| **n == "text").count() > 1, "the text came in pieces: {names:?}");
    let streamed: String = events.iter().filter(|(n, _)| n == "text").map(|(_, d)| text(d, "text")).collect();
    let done = &events.last().unwrap().1;
    assert_eq!(streamed, text(done, "text"), "the pieces are the whole reply");
    assert_eq!(events[names.len() - 2].1["stdout"], "streamed and run\n");
    assert!(done["ttft_ms"].as_f64().is_some());
    assert_eq!(fake.requests().await[0]["body"]["stream"], true, "it streamed from Anthropic too");
}

#[tokio::test]
async fn a_stream_cut_midway_is_a_clear_error_and_a_failed_trace() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let body =
        json!({"prompt": format!("{} [fake:drop:5]", python("print('never runs')")), "stream": true, "execute": true});
    let events = events_of(&server, body).await;
    let (last, error) = events.last().unwrap();
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(error["error"]["code"], "claude_bad_reply");
    assert!(text(&error["error"], "message").contains("the connection broke"), "{error}");
    assert!(events.iter().any(|(name, _)| name == "text"), "what came before the cut was passed on");
    let trace = server.trace(text(error, "trace_id")).await;
    assert_eq!(trace["status"], "error");
    assert!(trace["children"].as_array().unwrap().is_empty(), "a cut reply's code is not run");
}

#[tokio::test]
async fn the_key_appears_in_no_reply_trace_log_or_database() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let mut replies = Vec::new();
    for body in [
        json!({"prompt": python("import os\nprint(sorted(os.environ))"), "execute": true}),
        json!({"prompt": "x [fake:status:500] [fake:retry_after:0.01]"}),
        json!({"prompt": "a reply cut off [fake:drop:2]", "stream": true}),
        json!({"prompt": "refused [fake:status:400]"}),
    ] {
        let response = server.client.post(server.url("/claude")).json(&body).send().await.unwrap();
        replies.push(response.text().await.unwrap());
    }
    let export =
        server.client.get(server.url("/traces/export?format=jsonl")).send().await.unwrap().text().await.unwrap();
    assert!(export.lines().count() >= 4, "the calls and the run are traced: {export}");
    let database = std::fs::read(server.data_dir.join("traces/traces.db")).unwrap();
    let wal = std::fs::read(server.data_dir.join("traces/traces.db-wal")).unwrap_or_default();
    for (place, haystack) in [
        ("the replies", replies.join("\n").into_bytes()),
        ("the traces", export.into_bytes()),
        ("the log", server.logged().into_bytes()),
        ("the database", database),
        ("its write-ahead log", wal),
    ] {
        let found = haystack.windows(FAKE_KEY.len()).any(|w| w == FAKE_KEY.as_bytes());
        assert!(!found, "the API key is in {place}");
    }
    assert!(!replies[0].contains("ANTHROPIC"), "the sandbox never sees it: {}", replies[0]);
}

#[tokio::test]
async fn bad_questions_are_refused_naming_the_field() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    for (body, code, mentions) in [
        (json!({}), "missing_prompt", "`prompt`"),
        (json!({"prompt": "a", "messages": []}), "invalid_prompt", "not both"),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), "invalid_prompt", "messages[0].role"),
        (json!({"prompt": "a", "max_tokens": 0}), "invalid_prompt", "`max_tokens`"),
        (json!({"prompt": "a", "temperature": 2}), "invalid_prompt", "`temperature`"),
        (json!({"prompt": "a", "language": "cobol"}), "unknown_language", "cobol"),
        (json!({"prompt": "a", "files": ["missing.csv"]}), "no_such_file", "missing.csv"),
        (json!({"prompt": "a", "tempreature": 1}), "invalid_json", "tempreature"),
    ] {
        let (status, reply) = server.claude(body.clone()).await;
        assert!((400..500).contains(&status), "{body}: {status} {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
        assert!(text(&reply["error"], "message").contains(mentions), "{body}: {reply}");
    }
    assert!(fake.requests().await.is_empty(), "nothing reached Anthropic");
}

#[tokio::test]
async fn max_tokens_is_taken_up_to_its_limit_and_a_reply_runs_at_most_ten_blocks() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let (status, reply) = server.claude(json!({"prompt": "hi", "max_tokens": 128_000})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(fake.requests().await[0]["body"]["stream"], true, "a long reply streams on the wire");
    let (status, reply) = server.claude(json!({"prompt": "hi", "max_tokens": 128_001})).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_prompt")), "{reply}");

    let blocks: String = (0..12).map(|n| format!("```python\nprint({n})\n```\n")).collect();
    let (status, reply) = server.claude(json!({"prompt": blocks, "execute": true})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["executions"].as_array().unwrap().len(), 10, "TRACEBOX_CLAUDE_MAX_BLOCKS");
    assert_eq!(reply["executions"][9]["stdout"], "9\n", "in the reply's order");
    assert_eq!(
        reply["skipped_blocks"],
        json!(["python (over TRACEBOX_CLAUDE_MAX_BLOCKS)", "python (over TRACEBOX_CLAUDE_MAX_BLOCKS)"])
    );
}

#[tokio::test]
async fn a_conversation_in_anthropics_shape_is_sent_as_is() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let messages = json!([
        {"role": "user", "content": "Write a program"},
        {"role": "assistant", "content": "Which one?"},
        {"role": "user", "content": [{"type": "text", "text": python("print('turn three')")}]},
    ]);
    let (status, reply) =
        server.claude(json!({"messages": messages, "execute": true, "model": "claude-haiku-4-5"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["executions"][0]["stdout"], "turn three\n");
    assert_eq!(reply["model"], "claude-haiku-4-5");
    assert_eq!(fake.requests().await[0]["body"]["messages"], messages);
}

#[tokio::test]
async fn the_websocket_asks_claude_too() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let url = server.url("/ws").replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let ask = json!({"type": "claude", "id": "c1", "prompt": python("print(6 * 7)"), "execute": true});
    socket.send(Message::text(ask.to_string())).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(patience(), socket.next()).await.unwrap().unwrap().unwrap();
        let Message::Text(body) = message else { continue };
        let frame: Value = serde_json::from_str(&body).unwrap();
        let last = matches!(frame["type"].as_str(), Some("exit" | "error"));
        frames.push(frame);
        if last {
            break;
        }
    }
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert!(kinds.contains(&"text"), "{kinds:?}");
    let run = frames.iter().find(|f| f["type"] == "execution").expect("an execution frame");
    assert_eq!(run["execution"]["stdout"], "42\n");
    let exit = frames.last().unwrap();
    assert_eq!((exit["type"].as_str(), exit["id"].as_str()), (Some("exit"), Some("c1")), "{exit}");
    assert_eq!(exit["executions"][0]["stdout"], "42\n");
    assert_eq!(server.trace(text(exit, "trace_id")).await["source"], "websocket");
}
