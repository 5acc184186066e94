//! A fake of the Anthropic Messages API on loopback, for testing the Claude client without a
//! network: real HTTP, real server-sent events, the real error shapes and statuses
//! (ANTHROPIC.md §4, §5, §10). Replies come from a script or echo the prompt's fenced code;
//! `[fake:…]` directives in the prompt fake failures, stops, slowness and cut connections.
//!
//! Every request is recorded (keys redacted) so that a test can assert what the client sent:
//! [`FakeServer::requests`] in-process, `GET /_fake/requests` from another process.

mod directive;
mod failure;
mod reply;
mod request;
mod sse;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use directive::Directives;
use failure::{ErrorType, Failure};
use request::MessagesRequest;

/// The largest body accepted, the real Messages limit (§5); above it, 413 `request_too_large`.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What the fake answers and whom.
#[derive(Clone)]
pub struct FakeConfig {
    /// The key requests must carry in `x-api-key` (or `Authorization: Bearer`); None accepts any non-empty key.
    pub api_key: Option<String>,
    /// Replies chosen by a substring of the last user message (first match wins; an empty
    /// `contains` matches every message).
    pub script: Vec<ScriptRule>,
    /// Model names answered with 404 not_found_error (default: ["claude-does-not-exist"]).
    pub unknown_models: Vec<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig { api_key: None, script: Vec::new(), unknown_models: vec!["claude-does-not-exist".to_owned()] }
    }
}

/// Not derived, so that a key never reaches a log through `{:?}`.
impl std::fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("script", &self.script)
            .field("unknown_models", &self.unknown_models)
            .finish()
    }
}

impl FakeConfig {
    /// Read a script: a JSON array `[{"contains": "...", "reply": "..."}]`.
    pub fn load_script(path: impl AsRef<Path>) -> Result<Vec<ScriptRule>, FakeError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| FakeError::ReadScript { path: path.into(), source })?;
        serde_json::from_str(&text).map_err(|source| FakeError::ParseScript { path: path.into(), source })
    }
}

/// One scripted reply: `reply` answers a last user message that contains `contains`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRule {
    pub contains: String,
    pub reply: String,
}

/// The fake could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("cannot read the script {path}: {source}")]
    ReadScript { path: PathBuf, source: io::Error },
    #[error("the script {path} is not a JSON array of {{\"contains\": \"…\", \"reply\": \"…\"}}: {source}")]
    ParseScript { path: PathBuf, source: serde_json::Error },
}

/// A request as the fake received it.
#[derive(Serialize, Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-case; the values of x-api-key and authorization are replaced by "<redacted>" — the fake never keeps a key.
    pub headers: BTreeMap<String, String>,
    /// Whether the request carried the expected key (or any key when api_key is None).
    pub authorized: bool,
    /// Null when not JSON.
    pub body: Value,
    /// The `request-id` the fake answered with, to match what the client recorded.
    pub request_id: String,
}

/// A running fake. Stops when stopped or dropped.
pub struct FakeServer {
    url: String,
    state: Arc<State>,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FakeServer {
    /// Start on `addr` (port 0 = any free port) in a thread of its own, with its own actix System; returns once it listens.
    pub fn start(addr: SocketAddr, config: FakeConfig) -> io::Result<FakeServer> {
        let state = Arc::new(State { config, requests: Mutex::default(), attempts: Mutex::default() });
        let data = web::Data::from(Arc::clone(&state));
        let (ready, listening) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("fake-anthropic".to_owned()).spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let bound = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
                    .workers(1)
                    // The owner of the process decides about signals (the binary stops on them).
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(addr);
                let server = match bound {
                    Ok(server) => server,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return Ok(());
                    }
                };
                let bound_addr = server.addrs().first().copied().unwrap_or(addr);
                let server = server.run();
                let _ = ready.send(Ok((bound_addr, server.handle())));
                server.await
            })
        })?;
        let (bound, handle) =
            listening.recv().map_err(|_| io::Error::other("the fake's server thread ended before it listened"))??;
        tracing::info!(url = %format!("http://{bound}"), "fake Anthropic API listening");
        Ok(FakeServer { url: format!("http://{bound}"), state, handle, thread: Some(thread) })
    }

    /// "http://127.0.0.1:PORT": no trailing slash and no `/v1`, like `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far, in order (not those to `/_fake/…`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Stop now, cutting any stream still open; dropping the server does the same.
    pub fn stop(self) {}
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Not graceful: a stream held open by `slow_tokens` must not hold up a test.
        std::mem::drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the fake Anthropic server failed"),
                Err(_) => tracing::warn!("the fake Anthropic server's thread panicked"),
            }
        }
    }
}

/// What the handlers share.
struct State {
    config: FakeConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Attempts seen per request body (sha256), for `[fake:flaky]`.
    attempts: Mutex<HashMap<[u8; 32], u32>>,
}

impl State {
    /// Whether this attempt of `body` is one of the first `failures`, counting it.
    fn fails_again(&self, body: &[u8], failures: u32) -> bool {
        let key: [u8; 32] = Sha256::digest(body).into();
        let mut attempts = lock(&self.attempts);
        let seen = attempts.entry(key).or_insert(0);
        *seen = seen.saturating_add(1);
        *seen <= failures
    }

    /// Whether the request carries the key the fake expects (any non-empty one without a key).
    fn authorized(&self, request: &HttpRequest) -> bool {
        let headers = request.headers();
        let api_key = headers.get("x-api-key").and_then(|value| value.to_str().ok());
        let bearer = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        });
        let mut presented = [api_key, bearer].into_iter().flatten().map(str::trim).filter(|key| !key.is_empty());
        match &self.config.api_key {
            Some(expected) => presented.any(|key| key == expected),
            None => presented.next().is_some(),
        }
    }

    /// Keep the request (without its key) and say whether it is authorized.
    fn record(&self, request: &HttpRequest, body: &[u8], request_id: &str) -> bool {
        let authorized = self.authorized(request);
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in request.headers() {
            let value = if name == "x-api-key" || name == header::AUTHORIZATION {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|seen| *seen = format!("{seen}, {value}"))
                .or_insert(value);
        }
        lock(&self.requests).push(RecordedRequest {
            method: request.method().to_string(),
            path: request.path().to_owned(),
            headers,
            authorized,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            request_id: request_id.to_owned(),
        });
        authorized
    }
}

/// The data behind a poisoned lock is still whole (every writer pushes or inserts at once).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The route table: the fake's own two routes, and the API's (None: no such route).
enum Route {
    FakeRequests,
    FakeReset,
    Api(Option<Endpoint>),
}

enum Endpoint {
    Messages,
    CountTokens,
    Models,
    Model(String),
}

fn route(method: &Method, path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let endpoint = match (method.as_str(), path) {
        ("GET", "/_fake/requests") => return Route::FakeRequests,
        ("POST", "/_fake/reset") => return Route::FakeReset,
        ("POST", "/v1/messages") => Endpoint::Messages,
        ("POST", "/v1/messages/count_tokens") => Endpoint::CountTokens,
        ("GET", "/v1/models") => Endpoint::Models,
        ("GET", _) => match path.strip_prefix("/v1/models/") {
            Some(id) => Endpoint::Model(id.to_owned()),
            None => return Route::Api(None),
        },
        _ => return Route::Api(None),
    };
    Route::Api(Some(endpoint))
}

/// Every request: read the body, record it, answer, and put the `request-id` on the answer.
async fn handle(request: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let request_id = random_id("req_");
    let route = route(request.method(), request.path());
    let answer = match read_body(payload).await {
        Err(failure) => Err(failure),
        Ok(body) => match route {
            Route::FakeRequests => Ok(HttpResponse::Ok().json(&*lock(&state.requests))),
            Route::FakeReset => {
                lock(&state.requests).clear();
                lock(&state.attempts).clear();
                Ok(HttpResponse::NoContent().finish())
            }
            Route::Api(endpoint) => {
                let authorized = state.record(&request, &body, &request_id);
                api(&state, &request, endpoint, &body, authorized).await
            }
        },
    };
    let mut response = answer.unwrap_or_else(|failure| failure.respond(&request_id));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HeaderName::from_static("request-id"), value);
    }
    tracing::info!(%request_id, method = %request.method(), path = request.path(), status = response.status().as_u16(), "answered");
    response
}

async fn read_body(mut payload: web::Payload) -> Result<Bytes, Failure> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| Failure::new(ErrorType::InvalidRequest, format!("body: {error}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Failure::new(
                ErrorType::RequestTooLarge,
                "Request exceeds the maximum allowed number of bytes (32 MB for Messages).",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The API's own routes: the key first, then `anthropic-version`, then the route.
async fn api(
    state: &State,
    request: &HttpRequest,
    endpoint: Option<Endpoint>,
    body: &Bytes,
    authorized: bool,
) -> Result<HttpResponse, Failure> {
    let Some(endpoint) = endpoint else {
        let message = format!("Not found: {} {}", request.method(), request.path());
        return Err(Failure::new(ErrorType::NotFound, message));
    };
    if !authorized {
        return Err(Failure::new(ErrorType::Authentication, "invalid x-api-key"));
    }
    if !request.headers().contains_key("anthropic-version") {
        return Err(Failure::new(ErrorType::InvalidRequest, "anthropic-version: header is required"));
    }
    match endpoint {
        Endpoint::Messages => messages(state, body).await,
        Endpoint::CountTokens => count_tokens(state, body),
        Endpoint::Models => Ok(HttpResponse::Ok().json(models())),
        Endpoint::Model(id) => model(&id).map(|model| HttpResponse::Ok().json(model)),
    }
}

/// A body the real API would accept, its directives and the prompt without them.
fn checked(
    state: &State,
    body: &[u8],
    max_tokens_required: bool,
) -> Result<(MessagesRequest, Directives, String), Failure> {
    let invalid = |message: String| Failure::new(ErrorType::InvalidRequest, message);
    let json: Value =
        serde_json::from_slice(body).map_err(|error| invalid(format!("body: not valid JSON: {error}")))?;
    let request = request::parse(&json, max_tokens_required).map_err(|error| invalid(error.to_string()))?;
    if state.config.unknown_models.contains(&request.model) {
        return Err(Failure::new(ErrorType::NotFound, format!("model: {}", request.model)));
    }
    let (directives, prompt) =
        directive::parse(&request.last_user_text).map_err(|error| invalid(format!("messages: {error}")))?;
    Ok((request, directives, prompt))
}

/// `POST /v1/messages`.
async fn messages(state: &State, body: &Bytes) -> Result<HttpResponse, Failure> {
    let (request, directives, prompt) = checked(state, body, true)?;
    if let Some(pause) = directives.slow_first_byte {
        tokio::time::sleep(pause).await;
    }
    if let Some(status) = directives.status {
        return Err(Failure::faked(status, &directives));
    }
    if let Some((status, failures)) = directives.flaky
        && state.fails_again(body, failures)
    {
        return Err(Failure::faked(status, &directives));
    }
    let message = reply::message(&request, &directives, &prompt, &state.config.script);
    if request.stream {
        let pacing = sse::Pacing {
            midstream_error: directives.midstream_error,
            drop: directives.drop,
            slow_tokens: directives.slow_tokens,
        };
        let steps = sse::plan(sse::events(&message), pacing);
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(sse::body(steps)));
    }
    if directives.drop.is_some() {
        let json = serde_json::to_vec(&message)
            .map_err(|error| Failure::new(ErrorType::Api, format!("cannot encode the message: {error}")))?;
        // The length of the whole body is announced, so a client knows it got half.
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CONTENT_LENGTH, json.len()))
            .streaming(sse::body(sse::half_then_cut(Bytes::from(json)))));
    }
    Ok(HttpResponse::Ok().json(message))
}

/// `POST /v1/messages/count_tokens`: the input estimate a message would report.
fn count_tokens(state: &State, body: &Bytes) -> Result<HttpResponse, Failure> {
    let (request, directives, _) = checked(state, body, false)?;
    let input_tokens = directives.usage.map_or_else(|| reply::tokens(request.input_chars), |(input, _)| input);
    Ok(HttpResponse::Ok().json(json!({"input_tokens": input_tokens})))
}

/// A few models of §8, as `ModelInfo`. Their dates are invented where the id has none.
const MODELS: &[(&str, &str, &str)] = &[
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
];

fn model_info((id, display_name, created_at): (&str, &str, &str)) -> Value {
    json!({"type": "model", "id": id, "display_name": display_name, "created_at": created_at})
}

/// `GET /v1/models`: one page with every model (the cursor parameters are ignored).
fn models() -> Value {
    json!({
        "data": MODELS.iter().copied().map(model_info).collect::<Vec<_>>(),
        "has_more": false,
        "first_id": MODELS.first().map(|(id, _, _)| id),
        "last_id": MODELS.last().map(|(id, _, _)| id),
    })
}

/// `GET /v1/models/{id}`.
fn model(id: &str) -> Result<Value, Failure> {
    MODELS
        .iter()
        .copied()
        .find(|(known, _, _)| *known == id)
        .map(model_info)
        .ok_or_else(|| Failure::new(ErrorType::NotFound, format!("model: {id}")))
}

/// An opaque id like the API's: `prefix` then 24 base62 characters.
fn random_id(prefix: &str) -> String {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend(random.iter().take(24).map(|byte| char::from(BASE62[usize::from(byte % 62)])));
    id
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use super::*;

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
        // reqwest is built without a crypto provider of its own; the client installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
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
        let without =
            client().post(&url).header("anthropic-version", "2023-06-01").json(&ask("hi")).send().await.unwrap();
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
        let any =
            client().post(&url).header("x-api-key", "x").header("anthropic-version", "2023-06-01").json(&ask("hi"));
        assert_eq!(any.send().await.unwrap().status(), 200);
        let empty =
            client().post(&url).header("x-api-key", "").header("anthropic-version", "2023-06-01").json(&ask("hi"));
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
        let fragments: Vec<&str> =
            events.iter().filter_map(|(_, data)| data["delta"]["partial_json"].as_str()).collect();
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
        assert_eq!(
            post(&server, &ask("another [fake:flaky:529:2]")).await.status(),
            529,
            "a new body has its own count"
        );
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
            let (got_status, got_kind, _) =
                error_of(post(&server, &ask(&format!("[fake:status:{status}]"))).await).await;
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
}
