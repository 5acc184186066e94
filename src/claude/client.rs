//! The Anthropic Messages API client (reqwest): one call, streamed or not, with retries, and a
//! record of every attempt for the trace. The API key goes out in one header marked sensitive
//! and nowhere else: not in logs, errors or the record.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;

use tracebox_model::record::Attempt;

use super::messages::{ErrorBody, MessagesRequest, Reply};
use super::retry;
use super::settings::{ApiKey, ClientSettings};
use super::sse::{Assembler, Decoder, StreamError};

/// The API version every request names (both SDKs hard-code it).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Most bytes of an error body kept for its message (a proxy's HTML page can be long).
const ERROR_BODY_BYTES: usize = 2048;

/// Above this `max_tokens` a reply may take longer than any sane wait for a silent response,
/// so the call streams on the wire even when its caller did not ask to (the SDKs' rule:
/// 60 min × max_tokens / 128,000 > 10 min).
const STREAM_ABOVE_TOKENS: u32 = 21_333;

/// Mid-stream error types worth another attempt (when no text was passed on yet).
const RETRYABLE_STREAM_ERRORS: &[&str] = &["overloaded_error", "api_error"];

/// A Claude call that failed. None of these carries the API key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClaudeError {
    #[error(
        "no Anthropic API key: set ANTHROPIC_API_KEY (to try tracebox without one, run the fake API: see \"Without a key\" in docs/api.md)"
    )]
    NoApiKey,
    /// Anthropic answered with an error status (after the retries it allows).
    #[error("the Anthropic API answered {status} {kind}: {message}{}", request_note(request_id))]
    Api { status: u16, kind: String, message: String, request_id: Option<String>, retry_after: Option<Duration> },
    /// No answer: the connection failed or timed out.
    #[error("the Anthropic API at {url} did not answer: {detail}")]
    Unreachable { url: String, detail: String },
    /// The streamed reply broke off or carried an error event.
    #[error("Claude's streamed reply failed: {source}{}", request_note(request_id))]
    Stream { source: StreamError, request_id: Option<String> },
    /// The reply is not the JSON the API documents.
    #[error("Claude's reply could not be read: {detail}{}", request_note(request_id))]
    Malformed { detail: String, request_id: Option<String> },
    /// The client cannot be set up as configured.
    #[error("{0}")]
    Setup(String),
}

/// The key as a header value marked sensitive (kept out of reqwest's own Debug output).
fn header_of(key: &ApiKey) -> Result<HeaderValue, ClaudeError> {
    let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
        ClaudeError::Setup(
            "ANTHROPIC_API_KEY holds characters no HTTP header may carry; set it to the key alone".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn request_note(request_id: &Option<String>) -> String {
    request_id.as_deref().map(|id| format!(" (request {id})")).unwrap_or_default()
}

impl ClaudeError {
    /// Anthropic's id of the failed request, when it gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClaudeError::Api { request_id, .. }
            | ClaudeError::Stream { request_id, .. }
            | ClaudeError::Malformed { request_id, .. } => request_id.as_deref(),
            ClaudeError::NoApiKey | ClaudeError::Unreachable { .. } | ClaudeError::Setup(_) => None,
        }
    }
}

/// What happened on the way to a reply, for the trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Exchange {
    pub attempts: Vec<Attempt>,
    /// The last attempt's request id: the one that answered.
    pub request_id: Option<String>,
    /// From sending the successful attempt to its first streamed text.
    pub ttft_ms: Option<f64>,
    /// The whole call, retries and waits included.
    pub ms: f64,
}

impl Exchange {
    /// Attempts after the first.
    pub fn retries(&self) -> usize {
        self.attempts.len().saturating_sub(1)
    }
}

/// An attempt that failed, and whether trying again may help.
struct Failure {
    error: ClaudeError,
    status: Option<u16>,
    retry: bool,
    headers: Option<HeaderMap>,
}

/// A client of one Messages API endpoint. Cheap to clone.
#[derive(Clone)]
pub struct MessagesClient {
    http: reqwest::Client,
    url: String,
    key: Option<HeaderValue>,
    max_retries: u32,
    retry_budget: Duration,
    attempt_timeout: Duration,
    /// Longest silence between the pieces of a streamed reply.
    read_timeout: Duration,
}

impl MessagesClient {
    /// The client `settings` describe. Fails when the key cannot be sent as a header, or no
    /// HTTP client can be built.
    pub fn new(settings: &ClientSettings) -> Result<MessagesClient, ClaudeError> {
        // Redirects are not followed: reqwest would carry `x-api-key` to whatever host the
        // answer names, as the SDKs never do.
        let http = crate::http_client::builder()
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tracebox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClaudeError::Setup(format!("cannot build the HTTP client: {e}")))?;
        let key = settings.api_key.as_ref().filter(|key| !key.expose().is_empty()).map(header_of).transpose()?;
        Ok(MessagesClient {
            http,
            url: format!("{}/v1/messages", settings.base_url.trim_end_matches('/')),
            key,
            max_retries: settings.max_retries,
            retry_budget: settings.retry_budget,
            attempt_timeout: settings.attempt_timeout,
            read_timeout: settings.read_timeout,
        })
    }

    /// Is there a key to call with?
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Send `request` (streamed when it says so), retrying what may heal; streamed text goes
    /// to `on_text` as it arrives. A streamed call is retried only while none of its text has
    /// been passed on, so `on_text` never hears a piece twice.
    pub async fn create(
        &self,
        request: &MessagesRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> (Result<Reply, ClaudeError>, Exchange) {
        let started = Instant::now();
        let mut exchange = Exchange::default();
        let Some(key) = &self.key else { return (Err(ClaudeError::NoApiKey), exchange) };
        let outcome = loop {
            let attempt_started = Instant::now();
            let result = self.attempt(key, request, on_text, &mut exchange, attempt_started).await;
            let ms = attempt_started.elapsed().as_secs_f64() * 1000.0;
            let failure = match result {
                Ok((reply, request_id)) => {
                    exchange.attempts.push(Attempt { status: Some(200), request_id, error: None, ms, waited_ms: None });
                    break Ok(reply);
                }
                Err(failure) => failure,
            };
            exchange.attempts.push(Attempt {
                status: failure.status,
                request_id: failure.error.request_id().map(str::to_owned),
                error: Some(failure.error.to_string()),
                ms,
                waited_ms: None,
            });
            let retries_taken = exchange.retries() as u32;
            let wait = retry::delay(retries_taken, failure.headers.as_ref());
            let within_budget = started.elapsed() + wait < self.retry_budget;
            if !(failure.retry && retries_taken < self.max_retries && within_budget) {
                break Err(failure.error);
            }
            tracing::info!(status = failure.status, wait_ms = wait.as_millis() as u64, error = %failure.error, "retrying a Claude call");
            if let Some(last) = exchange.attempts.last_mut() {
                last.waited_ms = Some(wait.as_secs_f64() * 1000.0);
            }
            tokio::time::sleep(wait).await;
        };
        exchange.request_id = exchange.attempts.last().and_then(|a| a.request_id.clone());
        exchange.ms = started.elapsed().as_secs_f64() * 1000.0;
        (outcome, exchange)
    }

    async fn attempt(
        &self,
        key: &HeaderValue,
        request: &MessagesRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
        exchange: &mut Exchange,
        started: Instant,
    ) -> Result<(Reply, Option<String>), Failure> {
        // A long reply streams on the wire whatever the caller asked; its text is then not
        // passed on, as the caller did not ask for it.
        let quiet_stream = !request.stream && request.max_tokens > STREAM_ABOVE_TOKENS;
        let streamed = request.stream || quiet_stream;
        let wire;
        let body = if quiet_stream {
            wire = MessagesRequest { stream: true, ..request.clone() };
            &wire
        } else {
            request
        };
        let mut call = self
            .http
            .post(&self.url)
            .header("x-api-key", key.clone())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("accept", if streamed { "text/event-stream" } else { "application/json" })
            .json(body);
        if !streamed {
            call = call.timeout(self.attempt_timeout);
        }
        let response = call.send().await.map_err(|e| self.lost(e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = headers.get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if response.status().is_redirection() {
            let to = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("elsewhere").to_owned();
            let error = ClaudeError::Setup(format!(
                "ANTHROPIC_BASE_URL answered {status}, a redirect to {to}; set ANTHROPIC_BASE_URL to the API's own address (the key is never sent on to another)"
            ));
            return Err(Failure { error, status: Some(status), retry: false, headers: None });
        }
        if !response.status().is_success() {
            return Err(self.refused(status, headers, request_id, response).await);
        }
        if streamed {
            let mut quiet = |_: &str| {};
            let on_text: &mut (dyn FnMut(&str) + Send) = if quiet_stream { &mut quiet } else { on_text };
            let reply = self.stream(response, request_id.clone(), on_text, exchange, started).await?;
            return Ok((reply, request_id));
        }
        let body = response.bytes().await.map_err(|e| self.lost(e))?;
        let reply = serde_json::from_slice::<Reply>(&body).map_err(|e| Failure {
            error: ClaudeError::Malformed { detail: e.to_string(), request_id: request_id.clone() },
            status: Some(status),
            retry: false,
            headers: None,
        })?;
        Ok((reply, request_id))
    }

    /// Read a streamed reply, passing text on as it comes; a silence longer than the read
    /// timeout between its pieces is a lost connection.
    async fn stream(
        &self,
        response: reqwest::Response,
        request_id: Option<String>,
        on_text: &mut (dyn FnMut(&str) + Send),
        exchange: &mut Exchange,
        started: Instant,
    ) -> Result<Reply, Failure> {
        let mut decoder = Decoder::default();
        let mut assembler = Assembler::default();
        let mut body = response.bytes_stream();
        let broke = |source: StreamError, deltas: usize| {
            // Nothing passed on yet: trying again cannot show anything twice.
            let heals = match &source {
                StreamError::Api { kind, .. } => RETRYABLE_STREAM_ERRORS.contains(&kind.as_str()),
                StreamError::Malformed { .. } => false,
                StreamError::Incomplete { .. } | StreamError::Lost { .. } => true,
            };
            Failure {
                retry: deltas == 0 && heals,
                error: ClaudeError::Stream { source, request_id: request_id.clone() },
                status: Some(200),
                headers: None,
            }
        };
        while !assembler.stopped() {
            let chunk = match tokio::time::timeout(self.read_timeout, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "a streamed Claude reply broke off");
                    let detail = format!("the connection broke: {error}");
                    return Err(broke(StreamError::Lost { detail, deltas: assembler.deltas }, assembler.deltas));
                }
                Err(_silent) => {
                    let detail = format!(
                        "nothing came for {} s (TRACEBOX_CLAUDE_READ_TIMEOUT_SECS)",
                        self.read_timeout.as_secs_f64()
                    );
                    return Err(broke(StreamError::Lost { detail, deltas: assembler.deltas }, assembler.deltas));
                }
            };
            for event in decoder.push(&chunk) {
                match assembler.apply(&event) {
                    Ok(Some(text)) => {
                        if exchange.ttft_ms.is_none() {
                            exchange.ttft_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                        }
                        on_text(&text);
                    }
                    Ok(None) if assembler.stopped() => break,
                    Ok(None) => {}
                    Err(error) => return Err(broke(error, assembler.deltas)),
                }
            }
        }
        let deltas = assembler.deltas;
        assembler.finish().map_err(|error| broke(error, deltas))
    }

    /// An error status: Anthropic's error type and message, and whether it may heal.
    async fn refused(
        &self,
        status: u16,
        headers: HeaderMap,
        request_id: Option<String>,
        response: reqwest::Response,
    ) -> Failure {
        let body = response.bytes().await.unwrap_or_default();
        let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
        let (kind, message) = match &parsed {
            Some(body) => (body.error.kind.clone(), body.error.message.clone()),
            None => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]).trim().to_owned();
                ("http_error".to_owned(), if text.is_empty() { "(no body)".to_owned() } else { text })
            }
        };
        let request_id = request_id.or_else(|| parsed.and_then(|body| body.request_id));
        let retry = retry::retryable(status, &headers, &message);
        let retry_after = retry::asked_wait(&headers);
        Failure {
            error: ClaudeError::Api { status, kind, message, request_id, retry_after },
            status: Some(status),
            retry,
            headers: Some(headers),
        }
    }

    /// No answer at all: a connection that failed, or a timeout. Both may heal.
    fn lost(&self, error: reqwest::Error) -> Failure {
        let detail = if error.is_timeout() {
            "it timed out (TRACEBOX_CLAUDE_TIMEOUT_SECS, TRACEBOX_CLAUDE_READ_TIMEOUT_SECS)".to_owned()
        } else {
            // The URL is the configured base, never the key; the source chain says why.
            let mut detail = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                detail.push_str(": ");
                detail.push_str(&cause.to_string());
                source = cause.source();
            }
            detail
        };
        Failure {
            error: ClaudeError::Unreachable { url: self.url.clone(), detail },
            status: None,
            retry: true,
            headers: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_anthropic::{FakeConfig, FakeServer};
    use serde_json::json;

    const KEY: &str = "sk-ant-api03-test-key-never-shown";

    fn fake() -> FakeServer {
        let config = FakeConfig { api_key: Some(KEY.into()), ..FakeConfig::default() };
        FakeServer::start("127.0.0.1:0".parse().unwrap(), config).unwrap()
    }

    /// A client of `url` with the shipped defaults, spelled out.
    fn settings(url: &str, key: Option<&str>) -> ClientSettings {
        ClientSettings {
            base_url: url.to_owned(),
            api_key: key.map(|k| k.parse().unwrap()),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(600),
            max_retries: 2,
            retry_budget: Duration::from_secs(120),
        }
    }

    fn client(fake: &FakeServer, key: Option<&str>) -> MessagesClient {
        MessagesClient::new(&settings(fake.url(), key)).unwrap()
    }

    fn ask(prompt: &str, stream: bool) -> MessagesRequest {
        MessagesRequest {
            model: "claude-sonnet-4-5".into(),
            max_tokens: 256,
            messages: vec![json!({"role": "user", "content": prompt})],
            system: Some(json!("be brief")),
            temperature: Some(0.0),
            stop_sequences: vec!["STOP-HERE".into()],
            stream,
        }
    }

    async fn call(
        client: &MessagesClient,
        request: &MessagesRequest,
    ) -> (Result<Reply, ClaudeError>, Exchange, String) {
        let mut streamed = String::new();
        let (result, exchange) = client.create(request, &mut |text| streamed.push_str(text)).await;
        (result, exchange, streamed)
    }

    #[tokio::test]
    async fn the_request_carries_the_documented_headers_and_body() {
        let fake = fake();
        let (reply, exchange, _) =
            call(&client(&fake, Some(KEY)), &ask("Reply with:\n```python\nprint(29)\n```", false)).await;
        let reply = reply.unwrap();
        assert!(reply.text().contains("```python\nprint(29)\n```"), "{}", reply.text());
        assert!(reply.usage.input_tokens > 0 && reply.usage.output_tokens > 0);
        let sent = &fake.requests()[0];
        assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/messages"));
        assert!(sent.authorized);
        assert_eq!(sent.headers["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(sent.headers["content-type"], "application/json");
        assert_eq!(sent.headers["x-api-key"], "<redacted>");
        assert_eq!(sent.body["model"], "claude-sonnet-4-5");
        assert_eq!(sent.body["max_tokens"], 256);
        assert_eq!(sent.body["system"], "be brief");
        assert_eq!(sent.body["temperature"], 0.0);
        assert_eq!(sent.body["stop_sequences"], json!(["STOP-HERE"]));
        assert_eq!(sent.body.get("stream"), None);
        assert_eq!(exchange.request_id.as_deref(), Some(sent.request_id.as_str()));
        assert_eq!(exchange.retries(), 0);
    }

    #[tokio::test]
    async fn a_streamed_reply_is_the_same_message_passed_on_piece_by_piece() {
        let fake = fake();
        let client = client(&fake, Some(KEY));
        let prompt = "Reply with:\n```python\nprint('a fairly long line so that it comes in several pieces')\n```";
        let (whole, _, _) = call(&client, &ask(prompt, false)).await;
        let (streamed, exchange, pieces) = call(&client, &ask(prompt, true)).await;
        let (whole, streamed) = (whole.unwrap(), streamed.unwrap());
        assert_eq!(streamed.text(), whole.text());
        assert_eq!(pieces, whole.text(), "every piece passed on once, in order");
        assert_eq!(streamed.usage.output_tokens, whole.usage.output_tokens);
        assert_eq!(streamed.stop_reason.as_deref(), Some("end_turn"));
        assert!(exchange.ttft_ms.is_some());
        assert_eq!(fake.requests()[1].body["stream"], true);
    }

    #[tokio::test]
    async fn rate_limits_and_overload_are_retried_after_the_wait_asked_for() {
        let fake = fake();
        let client = client(&fake, Some(KEY));
        let started = Instant::now();
        let (reply, exchange, _) = call(&client, &ask("hi [fake:flaky:429:1] [fake:retry_after:0.3]", false)).await;
        assert!(reply.is_ok(), "{reply:?}");
        assert_eq!(exchange.retries(), 1);
        assert_eq!(exchange.attempts[0].status, Some(429));
        assert_eq!(exchange.attempts[0].waited_ms, Some(300.0));
        assert!(started.elapsed() >= Duration::from_millis(300), "retry-after was honoured");
        let (reply, exchange, _) = call(&client, &ask("hi [fake:flaky:529:2] [fake:retry_after:0.05]", true)).await;
        assert!(reply.is_ok(), "{reply:?}");
        let statuses: Vec<_> = exchange.attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(529), Some(529), Some(200)]);
    }

    #[tokio::test]
    async fn retries_stop_at_the_configured_count_with_the_last_error() {
        let fake = fake();
        let (reply, exchange, _) =
            call(&client(&fake, Some(KEY)), &ask("[fake:status:529] [fake:retry_after:0.01]", false)).await;
        let error = reply.unwrap_err();
        assert!(matches!(&error, ClaudeError::Api { status: 529, kind, .. } if kind == "overloaded_error"), "{error}");
        assert_eq!(exchange.attempts.len(), 3, "one try and two retries");
        assert!(error.request_id().is_some_and(|id| id.starts_with("req_")));
    }

    #[tokio::test]
    async fn a_wrong_key_fails_at_once_with_anthropics_own_error_and_never_shows_the_key() {
        let fake = fake();
        let wrong = "sk-ant-api03-wrong-key-0000";
        let (reply, exchange, _) = call(&client(&fake, Some(wrong)), &ask("hi", false)).await;
        let error = reply.unwrap_err();
        assert!(
            matches!(&error, ClaudeError::Api { status: 401, kind, .. } if kind == "authentication_error"),
            "{error}"
        );
        assert_eq!(exchange.attempts.len(), 1, "a 401 does not heal: no retry");
        let shown = format!("{error} {error:?} {}", serde_json::to_string(&exchange).unwrap());
        assert!(!shown.contains(wrong) && !shown.contains("wrong-key"), "{shown}");
        let (reply, _, _) = call(&client(&fake, None), &ask("hi", false)).await;
        assert!(matches!(reply, Err(ClaudeError::NoApiKey)));
        assert_eq!(fake.requests().len(), 1, "without a key nothing is sent");
    }

    #[tokio::test]
    async fn a_stream_cut_after_text_is_an_error_and_not_retried() {
        let fake = fake();
        let client = client(&fake, Some(KEY));
        let prompt = "Reply with:\n```python\nprint('some text that streams in pieces')\n``` [fake:drop:6]";
        let (reply, exchange, pieces) = call(&client, &ask(prompt, true)).await;
        let error = reply.unwrap_err();
        assert!(matches!(&error, ClaudeError::Stream { source: StreamError::Lost { .. }, .. }), "{error}");
        assert!(error.to_string().contains("the connection broke"), "{error}");
        assert!(!pieces.is_empty(), "text came before the cut");
        assert_eq!(exchange.attempts.len(), 1, "text was passed on, so a retry could show it twice");

        let (reply, exchange, _) = call(&client, &ask("text [fake:midstream_error:2]", true)).await;
        assert!(
            matches!(reply, Err(ClaudeError::Stream { source: StreamError::Api { ref kind, .. }, .. }) if kind == "overloaded_error")
        );
        assert_eq!(exchange.attempts.len(), 1);
    }

    /// A server that answers every connection with `response`, raw, then closes it; it counts
    /// the connections.
    async fn raw_server(response: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = vec![0; 64 * 1024];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, count)
    }

    fn settings_for(url: &str) -> ClientSettings {
        ClientSettings { retry_budget: Duration::from_secs(5), ..settings(url, Some(KEY)) }
    }

    #[tokio::test]
    async fn a_stream_that_ends_cleanly_without_message_stop_is_an_error_and_shows_nothing_twice() {
        let (url, connections) = raw_server(concat!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"x\",\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"HELLO\"}}\n\n",
        ))
        .await;
        let client = MessagesClient::new(&settings_for(&url)).unwrap();
        let (reply, _, pieces) = call(&client, &ask("hi", true)).await;
        assert!(
            matches!(reply, Err(ClaudeError::Stream { source: StreamError::Incomplete { deltas: 1 }, .. })),
            "{reply:?}"
        );
        assert_eq!(pieces, "HELLO", "passed on once, never again by a retry");
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed_so_the_key_goes_nowhere_else() {
        let (elsewhere, hits) = raw_server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let redirect: &'static str = Box::leak(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}/v1/messages\r\ncontent-length: 0\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let (url, _) = raw_server(redirect).await;
        let client = MessagesClient::new(&settings_for(&url)).unwrap();
        let (reply, exchange, _) = call(&client, &ask("hi", false)).await;
        let error = reply.unwrap_err().to_string();
        assert!(error.contains("redirect") && error.contains("ANTHROPIC_BASE_URL"), "{error}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the other host");
        assert_eq!(exchange.attempts.len(), 1);
    }

    #[tokio::test]
    async fn a_slow_unstreamed_reply_is_waited_for_beyond_the_read_timeout() {
        let fake = fake();
        let settings = ClientSettings { read_timeout: Duration::from_secs_f64(0.3), ..settings_for(fake.url()) };
        let client = MessagesClient::new(&settings).unwrap();
        let (reply, exchange, _) = call(&client, &ask("hi [fake:slow_first_byte:900]", false)).await;
        assert!(reply.is_ok(), "the read timeout is for silences inside a stream: {reply:?}");
        assert_eq!(exchange.attempts.len(), 1);
        let (reply, _, _) = call(&client, &ask("hi [fake:slow_tokens:900]", true)).await;
        let error = reply.unwrap_err().to_string();
        assert!(error.contains("TRACEBOX_CLAUDE_READ_TIMEOUT_SECS"), "a silent stream is lost: {error}");
    }

    #[tokio::test]
    async fn the_server_can_forbid_a_retry_and_the_budget_stops_them() {
        let fake = fake();
        let client = MessagesClient::new(&settings_for(fake.url())).unwrap();
        let (_, exchange, _) = call(&client, &ask("[fake:status:500] [fake:should_retry:false]", false)).await;
        assert_eq!(exchange.attempts.len(), 1, "x-should-retry: false is obeyed");
        let settings =
            ClientSettings { retry_budget: Duration::from_secs(1), max_retries: 5, ..settings_for(fake.url()) };
        let client = MessagesClient::new(&settings).unwrap();
        let started = Instant::now();
        let (reply, exchange, _) = call(&client, &ask("[fake:status:529] [fake:retry_after:0.4]", false)).await;
        assert!(reply.is_err());
        assert_eq!(exchange.attempts.len(), 3, "waits of 0.4 s fit twice in a 1 s budget: {:?}", exchange.attempts);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_error_event_before_any_text_is_retried() {
        let fake = fake();
        let client = MessagesClient::new(&settings_for(fake.url())).unwrap();
        let (reply, exchange, _) = call(&client, &ask("hi [fake:midstream_error:0]", true)).await;
        assert!(reply.is_err(), "the fake fails every attempt the same way");
        assert_eq!(exchange.attempts.len(), 3, "nothing was passed on, so each failure could be retried");
    }

    #[tokio::test]
    async fn a_key_no_header_can_carry_is_refused_when_the_client_is_made() {
        let settings = settings("https://api.anthropic.com", Some("bad\nkey"));
        let error = MessagesClient::new(&settings).err().unwrap().to_string();
        assert!(error.contains("ANTHROPIC_API_KEY") && !error.contains("bad"), "{error}");
    }

    #[tokio::test]
    async fn nothing_answering_is_a_clear_error_naming_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let settings = ClientSettings { max_retries: 1, ..settings(&url, Some(KEY)) };
        let (reply, exchange) = MessagesClient::new(&settings).unwrap().create(&ask("hi", false), &mut |_| {}).await;
        let error = reply.unwrap_err().to_string();
        assert!(error.contains(&url) && error.contains("did not answer"), "{error}");
        assert_eq!(exchange.attempts.len(), 2, "a refused connection may heal: retried once");
    }
}
