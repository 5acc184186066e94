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
