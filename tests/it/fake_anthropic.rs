//! The fake Anthropic Messages API (crates/fake-anthropic) that the Claude tests talk to: it
//! must be faithful, so it is tested over real HTTP like the API it stands in for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_anthropic::{FakeConfig, FakeServer, ScriptRule};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test-key";

fn start() -> FakeServer {
    start_with(FakeConfig { api_key: Some(KEY.to_owned()), ..FakeConfig::default() })
}

fn start_with(config: FakeConfig) -> FakeServer {
    FakeServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).unwrap()
}

fn ask(prompt: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}]})
}

fn ask_streaming(prompt: &str) -> Value {
    let mut body = ask(prompt);
    body["stream"] = json!(true);
    body
}

fn client() -> reqwest::Client {
    tracebox::http_client::builder().build().unwrap()
}

async fn post(server: &FakeServer, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("request-id").unwrap().to_str().unwrap().to_owned()
}

fn is_request_id(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The status, `error.type` and `error.message` of an error answer, checking its shape.
async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    let error = &body["error"];
    (status, error["type"].as_str().unwrap().to_owned(), error["message"].as_str().unwrap().to_owned())
}

/// The events of an SSE body, as (name, data).
fn events_of(raw: &str) -> Vec<(String, Value)> {
    raw.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let mut lines = event.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap().to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The text a client assembles from the `text_delta`s.
fn assembled_text(events: &[(String, Value)]) -> String {
    events.iter().filter_map(|(_, data)| data["delta"]["text"].as_str()).collect()
}

/// Read a body chunk by chunk: what arrived, and whether it ended in an error (a cut)
/// rather than cleanly.
async fn read_to_end(mut response: reqwest::Response) -> (String, bool) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return (String::from_utf8(body).unwrap(), false),
            Err(_) => return (String::from_utf8(body).unwrap(), true),
        }
    }
}

const CODE_PROMPT: &str = "Print 29.\n```python\nprint(29)\n```\n";
const CODE_REPLY: &str = "Here is the program:\n\n```python\nprint(29)\n```\n";

#[tokio::test]
async fn every_request_is_recorded_with_its_key_redacted() {
    let server = start();
    let body = ask("hello");
    let response = post(&server, &body).await;
    let id = request_id(&response);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/messages"));
    assert_eq!(request.headers["x-api-key"], "<redacted>");
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert!(request.authorized);
    assert_eq!(request.body, body);
    assert_eq!(request.request_id, id);
    assert!(!serde_json::to_string(&recorded).unwrap().contains(KEY));

    let bearer = client()
        .get(format!("{}/v1/models", server.url()))
        .header("authorization", format!("Bearer {KEY}"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(server.requests()[1].headers["authorization"], "<redacted>");
}

#[tokio::test]
async fn the_record_is_served_at_fake_requests_and_cleared_by_reset() {
    let server = start();
    post(&server, &ask("one")).await;
    let listed: Value =
        client().get(format!("{}/_fake/requests", server.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, serde_json::to_value(server.requests()).unwrap());
    assert_eq!(listed.as_array().unwrap().len(), 1, "the fake's own routes are not recorded");

    let reset = client().post(format!("{}/_fake/reset", server.url())).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_answered_401_authentication_error() {
    let server = start();
    let url = format!("{}/v1/messages", server.url());
    let without = client().post(&url).header("anthropic-version", "2023-06-01").json(&ask("hi")).send().await.unwrap();
    assert_eq!(error_of(without).await, (401, "authentication_error".into(), "invalid x-api-key".into()));
    let wrong = client()
        .post(&url)
        .header("x-api-key", "sk-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&ask("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong).await.0, 401);
    assert!(server.requests().iter().all(|request| !request.authorized));
}

#[tokio::test]
async fn without_a_configured_key_any_non_empty_key_passes() {
    let server = start_with(FakeConfig::default());
    let url = format!("{}/v1/messages", server.url());
    let any = client().post(&url).header("x-api-key", "x").header("anthropic-version", "2023-06-01").json(&ask("hi"));
    assert_eq!(any.send().await.unwrap().status(), 200);
    let empty = client().post(&url).header("x-api-key", "").header("anthropic-version", "2023-06-01").json(&ask("hi"));
    assert_eq!(empty.send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_missing_anthropic_version_is_answered_400() {
    let server = start();
    let response = client()
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", KEY)
        .json(&ask("hi"))
        .send()
        .await
        .unwrap();
    let expected = (400, "invalid_request_error".into(), "anthropic-version: header is required".into());
    assert_eq!(error_of(response).await, expected);
}

#[tokio::test]
async fn an_invalid_body_is_answered_400_naming_the_field() {
    let server = start();
    let mut body = ask("hi");
    body["max_tokens"] = json!(0);
    let expected =
        (400, "invalid_request_error".into(), "max_tokens: Input should be greater than or equal to 1".into());
    assert_eq!(error_of(post(&server, &body).await).await, expected);
    body["max_tokens"] = json!(5);
    body["messages"][0]["role"] = json!("system");
    let (_, _, message) = error_of(post(&server, &body).await).await;
    assert_eq!(message, "messages.0.role: Input should be 'user' or 'assistant'");
    let (status, _, message) = error_of(post(&server, &ask("[fake:bogus]")).await).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("messages: [fake:bogus]: unknown directive"), "{message}");
}

#[tokio::test]
async fn an_unknown_model_is_answered_404_not_found_error() {
    let server = start();
    let mut body = ask("hi");
    body["model"] = json!("claude-does-not-exist");
    let expected = (404, "not_found_error".into(), "model: claude-does-not-exist".into());
    assert_eq!(error_of(post(&server, &body).await).await, expected);
}

#[tokio::test]
async fn an_unknown_path_is_answered_404_in_the_error_shape() {
    let server = start();
    let response = client().get(format!("{}/v1/nothing", server.url())).send().await.unwrap();
    assert_eq!(error_of(response).await, (404, "not_found_error".into(), "Not found: GET /v1/nothing".into()));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = start();
    let responses = [
        post(&server, &ask("hi")).await,
        post(&server, &ask_streaming("hi")).await,
        post(&server, &ask("[fake:status:500]")).await,
        client().post(format!("{}/v1/messages", server.url())).send().await.unwrap(),
        client().get(format!("{}/nowhere", server.url())).send().await.unwrap(),
    ];
    let ids: Vec<String> = responses.iter().map(request_id).collect();
    assert!(ids.iter().all(|id| is_request_id(id)), "{ids:?}");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each answer has an id of its own");
}

#[tokio::test]
async fn a_fenced_code_block_in_the_prompt_comes_back_verbatim_in_a_message() {
    let server = start();
    let response = post(&server, &ask(CODE_PROMPT)).await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(message["content"], json!([{"type": "text", "text": CODE_REPLY}]));
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["stop_sequence"], Value::Null);
    let usage = &message["usage"];
    assert_eq!(usage["input_tokens"], CODE_PROMPT.chars().count().div_ceil(4));
    assert_eq!(usage["output_tokens"], CODE_REPLY.chars().count().div_ceil(4));
    assert_eq!(
        (usage["cache_creation_input_tokens"].as_u64(), usage["cache_read_input_tokens"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(usage["service_tier"], "standard");
}

#[tokio::test]
async fn a_script_rule_answers_a_message_containing_it() {
    let rule = ScriptRule { contains: "primes".to_owned(), reply: "```python\nprint(2)\n```".to_owned() };
    let server = start_with(FakeConfig { script: vec![rule], ..FakeConfig::default() });
    let response = client()
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", "any")
        .header("anthropic-version", "2023-06-01")
        .json(&ask("list the primes"))
        .send()
        .await
        .unwrap();
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "```python\nprint(2)\n```");
}

#[tokio::test]
async fn a_stream_assembles_to_the_non_streaming_message_and_ends_with_message_stop() {
    let server = start();
    let whole: Value = post(&server, &ask(CODE_PROMPT)).await.json().await.unwrap();
    let response = post(&server, &ask_streaming(CODE_PROMPT)).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (raw, cut) = read_to_end(response).await;
    assert!(!cut);
    let events = events_of(&raw);
    assert!(events.iter().all(|(name, data)| data["type"] == name.as_str()));

    let names = names(&events);
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert!(names.iter().filter(|name| **name == "content_block_delta").count() >= 3);
    assert_eq!(assembled_text(&events), whole["content"][0]["text"].as_str().unwrap());

    let start = &events[0].1["message"];
    assert_eq!((start["stop_reason"].clone(), start["content"].clone()), (Value::Null, json!([])));
    assert_eq!(start["usage"]["input_tokens"], whole["usage"]["input_tokens"]);
    assert_eq!(start["usage"]["output_tokens"], 1);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], whole["usage"]["output_tokens"]);
}

#[tokio::test]
async fn tool_use_is_a_text_block_then_a_run_code_call_streamed_as_json_fragments() {
    let server = start();
    let whole: Value = post(&server, &ask("run it [fake:tool_use]")).await.json().await.unwrap();
    assert_eq!(whole["stop_reason"], "tool_use");
    let tool = &whole["content"][1];
    assert_eq!((tool["type"].as_str(), tool["name"].as_str()), (Some("tool_use"), Some("run_code")));
    assert!(tool["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(tool["input"], json!({"language": "python", "code": "print(1)"}));

    let (raw, _) = read_to_end(post(&server, &ask_streaming("run it [fake:tool_use]")).await).await;
    let events = events_of(&raw);
    let fragments: Vec<&str> = events.iter().filter_map(|(_, data)| data["delta"]["partial_json"].as_str()).collect();
    assert_eq!(fragments[0], "");
    assert!(fragments.len() >= 4);
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, tool["input"]);
    let start = events.iter().find(|(name, data)| name == "content_block_start" && data["index"] == 1).unwrap();
    assert_eq!(start.1["content_block"]["input"], json!({}));
}

#[tokio::test]
async fn flaky_529_fails_the_same_request_twice_then_succeeds() {
    let server = start();
    let body = ask("print 29 [fake:flaky:529:2]");
    for _ in 0..2 {
        let response = post(&server, &body).await;
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(error_of(response).await, (529, "overloaded_error".into(), "Overloaded".into()));
    }
    assert_eq!(post(&server, &body).await.status(), 200);
    assert_eq!(post(&server, &ask("another [fake:flaky:529:2]")).await.status(), 529, "a new body has its own count");
}

#[tokio::test]
async fn retry_after_is_set_by_its_directive_and_omitted_by_no_retry_after() {
    let server = start();
    let response = post(&server, &ask("[fake:status:429][fake:retry_after:0.2]")).await;
    assert_eq!(response.headers()["retry-after"], "0.2");
    assert_eq!(error_of(response).await.1, "rate_limit_error");
    let response = post(&server, &ask("[fake:status:529][fake:no_retry_after]")).await;
    assert!(response.headers().get("retry-after").is_none());
    let response = post(&server, &ask("[fake:status:500][fake:should_retry:false]")).await;
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert!(response.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn the_status_directive_answers_each_status_with_its_error_type() {
    let server = start();
    for (status, kind) in [(403, "permission_error"), (413, "request_too_large"), (504, "timeout_error")] {
        let (got_status, got_kind, _) = error_of(post(&server, &ask(&format!("[fake:status:{status}]"))).await).await;
        assert_eq!((got_status, got_kind.as_str()), (status, kind));
    }
}

#[tokio::test]
async fn a_midstream_error_follows_k_deltas_and_the_stream_ends_without_message_stop() {
    let server = start();
    let response = post(&server, &ask_streaming(&format!("{CODE_PROMPT}[fake:midstream_error:2]"))).await;
    assert_eq!(response.status(), 200);
    let (raw, cut) = read_to_end(response).await;
    assert!(!cut, "the stream ends cleanly after the error event");
    let events = events_of(&raw);
    let names = names(&events);
    assert_eq!(names.iter().filter(|name| **name == "content_block_delta").count(), 2);
    assert_eq!(names.last(), Some(&"error"));
    assert!(!names.contains(&"message_stop"));
    let error = &events[events.len() - 1].1;
    assert_eq!(*error, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
}

#[tokio::test]
async fn drop_cuts_a_stream_after_k_events_and_the_client_sees_an_incomplete_body() {
    let server = start();
    let response = post(&server, &ask_streaming(&format!("{CODE_PROMPT}[fake:drop:3]"))).await;
    assert_eq!(response.status(), 200);
    let (raw, cut) = read_to_end(response).await;
    assert!(cut, "the body must end in an error, not cleanly");
    assert_eq!(names(&events_of(&raw)), ["message_start", "content_block_start", "ping"]);
}

#[tokio::test]
async fn drop_cuts_a_json_body_in_half() {
    let server = start();
    let response = post(&server, &ask("[fake:drop:0]")).await;
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let (raw, cut) = read_to_end(response).await;
    assert!(cut);
    assert_eq!(raw.len(), length / 2);
}

#[tokio::test]
async fn stop_sequences_cut_the_reply_and_are_reported() {
    let server = start();
    let mut body = ask(CODE_PROMPT);
    body["stop_sequences"] = json!(["29", "```"]);
    let message: Value = post(&server, &body).await.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "Here is the program:\n\n");
    assert_eq!(
        (message["stop_reason"].as_str(), message["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some("```"))
    );
}

#[tokio::test]
async fn max_tokens_cuts_the_reply_to_four_characters_a_token() {
    let server = start();
    let mut body = ask_streaming(CODE_PROMPT);
    body["max_tokens"] = json!(2);
    let (raw, _) = read_to_end(post(&server, &body).await).await;
    let events = events_of(&raw);
    assert_eq!(assembled_text(&events), "Here is ");
    let delta = events.iter().find(|(name, _)| name == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta.1["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn faked_stops_and_refusals_report_their_stop_reason() {
    let server = start();
    for (prompt, reason) in [
        ("[fake:stop:max_tokens]", "max_tokens"),
        ("[fake:stop:stop_sequence]", "stop_sequence"),
        ("[fake:refusal]", "refusal"),
    ] {
        let message: Value = post(&server, &ask(prompt)).await.json().await.unwrap();
        assert_eq!(message["stop_reason"], reason, "{prompt}");
    }
}

#[tokio::test]
async fn usage_and_cache_directives_set_the_counts_exactly() {
    let server = start();
    let prompt = "[fake:usage:1200:345][fake:cache:1000:2000]";
    let message: Value = post(&server, &ask(prompt)).await.json().await.unwrap();
    let expected = json!({
        "input_tokens": 1200, "output_tokens": 345,
        "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    });
    assert_eq!(message["usage"], expected);

    let (raw, _) = read_to_end(post(&server, &ask_streaming(prompt)).await).await;
    let events = events_of(&raw);
    assert_eq!(events[0].1["message"]["usage"]["cache_read_input_tokens"], 2000);
    let delta = events.iter().find(|(name, _)| name == "message_delta").unwrap();
    let usage = &delta.1["usage"];
    assert_eq!((usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()), (Some(1200), Some(345)));
}

#[tokio::test]
async fn slow_first_byte_delays_the_answer_and_slow_tokens_the_deltas() {
    let server = start();
    let started = Instant::now();
    let response = post(&server, &ask("[fake:slow_first_byte:200]")).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status(), 200);

    let started = Instant::now();
    let response = post(&server, &ask_streaming(&format!("{CODE_PROMPT}[fake:slow_tokens:40]"))).await;
    let (raw, _) = read_to_end(response).await;
    let deltas = names(&events_of(&raw)).iter().filter(|name| **name == "content_block_delta").count();
    let deltas = u32::try_from(deltas).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(40) * (deltas - 1));
}

#[tokio::test]
async fn models_are_listed_as_one_page_of_model_info() {
    let server = start();
    let response = client()
        .get(format!("{}/v1/models", server.url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    let data = page["data"].as_array().unwrap();
    assert!(data.len() >= 3);
    assert!(data.iter().all(|model| model["type"] == "model" && model["created_at"].is_string()));
    assert_eq!(page["has_more"], false);
    assert_eq!(page["first_id"], data[0]["id"]);
    assert_eq!(page["last_id"], data[data.len() - 1]["id"]);
}

#[tokio::test]
async fn count_tokens_estimates_the_input() {
    let server = start();
    let response = client()
        .post(format!("{}/v1/messages/count_tokens", server.url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "12345678"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"input_tokens": 2}));
}

#[tokio::test]
async fn a_stopped_fake_no_longer_answers() {
    let server = start();
    let url = server.url().to_owned();
    server.stop();
    assert!(client().get(format!("{url}/v1/models")).send().await.is_err());
}
