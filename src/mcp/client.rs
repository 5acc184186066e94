//! A small client of tracebox's own HTTP API, the one way the MCP tools act: each tool is one
//! or two of these calls, so what a tool does is screened, limited and traced exactly as the
//! route it calls, and answers what that route answers. Replies stay the API's JSON (the tools
//! hand it on as structured content); refusals come back as [`ClientError::Refused`] with the
//! API's `error.code` and message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

/// How long to wait for the server to accept a connection. A reply may take as long as a step
/// runs, so nothing else is bounded here: the server bounds its steps.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a call of the API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with its error shape: a refusal by the policy, a sandbox that is not
    /// there, a limit…
    #[error("{code} (HTTP {status}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        /// The rules that refused the code (`blocked_by_policy`).
        rules: Vec<String>,
        /// The trace of the refusal, when the API made one.
        trace_id: Option<String>,
    },
    #[error("cannot reach tracebox at {url}: {source}; is the server running (--server, TRACEBOX_ADDR)?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status} with a body that is not the API's: {start}")]
    Unexpected { url: String, status: u16, start: String },
    #[error("cannot make an HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// The API's error body: `{"error": {"code", "message"}, "trace_id", "rules"}`.
#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorBody,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// A body as it came.
#[derive(Debug, Clone)]
pub struct Download {
    pub bytes: Bytes,
}

/// A client of one tracebox server.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    /// The key (or token) every request carries unless the call serves a caller of its own
    /// ([`as_caller`]).
    credential: Option<String>,
}

/// The key is never printed.
impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("credential", &self.credential.as_ref().map(|_| "…"))
            .finish()
    }
}

tokio::task_local! {
    /// The key or token of the `/mcp` request a tool call serves: the calls it makes carry it,
    /// so a tool reaches exactly what its caller may (and is counted against its key).
    static CALLER: Option<String>;
}

/// Run `work` (a tool call) as the caller whose credential is `credential`.
pub async fn as_caller<T>(credential: Option<String>, work: impl Future<Output = T>) -> T {
    CALLER.scope(credential, work).await
}

/// The credential of the caller the current tool call serves, if any.
pub fn current_caller() -> Option<String> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

impl ApiClient {
    /// A client of the server at `server`: a URL, or an address as `TRACEBOX_ADDR` gives it
    /// (`http://` is then added), as `tracebox sandbox --server` takes it.
    pub fn remote(server: &str) -> Result<ApiClient, ClientError> {
        let base = server.trim_end_matches('/');
        let base = if base.contains("://") { base.to_owned() } else { format!("http://{base}") };
        let http =
            crate::http_client::builder().connect_timeout(CONNECT_TIMEOUT).build().map_err(ClientError::Build)?;
        Ok(ApiClient { base, http, credential: None })
    }

    /// The same client, sending `credential` (an API key or token) with every request.
    pub fn with_credential(mut self, credential: Option<String>) -> ApiClient {
        self.credential = credential.filter(|credential| !credential.is_empty());
        self
    }

    /// A client of this server's own listener at `bound`, over loopback (an unspecified
    /// address, `0.0.0.0` or `[::]`, is reached at `127.0.0.1` or `[::1]`). No proxy: a proxy
    /// from the environment must never stand between the server and itself.
    pub fn loopback(bound: SocketAddr) -> Result<ApiClient, ClientError> {
        let ip = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base = format!("http://{}", SocketAddr::new(ip, bound.port()));
        let http = crate::http_client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(ClientError::Build)?;
        Ok(ApiClient { base, http, credential: None })
    }

    /// The server's base URL (`http://host:port`), for links in what the tools answer.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(&url, self.http.get(&url).header("accept", "application/json")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(&url, self.http.post(&url).json(body)).await
    }

    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(&url, self.http.put(&url).body(bytes)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        self.json(&url, self.http.delete(&url)).await.map(drop)
    }

    /// The raw body of a `GET` (a file's bytes, an artifact).
    pub async fn download(&self, path: &str) -> Result<Download, ClientError> {
        let url = self.url(path);
        let (status, bytes) = self.send(self.http.get(&url), &url).await?;
        if (200..300).contains(&status) {
            return Ok(Download { bytes });
        }
        Err(refusal(&url, status, &bytes))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send `request` (to `url`), and read the JSON reply (`null` for an empty one, as a `204`'s).
    async fn json(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let (status, bytes) = self.send(request, url).await?;
        if !(200..300).contains(&status) {
            return Err(refusal(url, status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|_| unexpected(url, status, &bytes))
    }

    /// Send `request` (to `url`): the status and the body.
    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<(u16, Bytes), ClientError> {
        let unreachable = |source| ClientError::Unreachable { url: url.to_owned(), source };
        let request = match current_caller().or_else(|| self.credential.clone()) {
            Some(credential) => request.bearer_auth(credential),
            None => request,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        Ok((status, bytes))
    }
}

/// The API's refusal, or what else came.
fn refusal(url: &str, status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorReply>(bytes) {
        Ok(reply) => ClientError::Refused {
            status,
            code: reply.error.code,
            message: reply.error.message,
            rules: reply.rules,
            trace_id: reply.trace_id,
        },
        Err(_) => unexpected(url, status, bytes),
    }
}

fn unexpected(url: &str, status: u16, bytes: &[u8]) -> ClientError {
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    ClientError::Unexpected { url: url.to_owned(), status, start }
}

/// One path segment or query value, percent-encoded.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query string (`?a=1&b=2`) of the pairs whose value is given; empty when none is.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let given: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{}={}", encode(key), encode(v))))
        .collect();
    if given.is_empty() { String::new() } else { format!("?{}", given.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bound_address_is_reached_over_loopback() {
        let at = |addr: &str| ApiClient::loopback(addr.parse().unwrap()).unwrap().base().to_owned();
        assert_eq!(at("0.0.0.0:5000"), "http://127.0.0.1:5000");
        assert_eq!(at("[::]:5000"), "http://[::1]:5000");
        assert_eq!(at("192.0.2.7:80"), "http://192.0.2.7:80");
    }

    #[test]
    fn a_server_given_as_an_address_is_spoken_to_over_http() {
        assert_eq!(ApiClient::remote("127.0.0.1:5000").unwrap().base(), "http://127.0.0.1:5000");
        assert_eq!(ApiClient::remote("https://tb.example/").unwrap().base(), "https://tb.example");
    }

    #[test]
    fn the_apis_error_shape_becomes_a_refusal_with_its_code() {
        let body = br#"{"error": {"code": "blocked_by_policy", "message": "no"}, "trace_id": "t", "rules": ["python.subprocess"]}"#;
        match refusal("u", 403, body) {
            ClientError::Refused { status, code, rules, trace_id, .. } => {
                assert_eq!((status, code.as_str(), trace_id.as_deref()), (403, "blocked_by_policy", Some("t")));
                assert_eq!(rules, ["python.subprocess"]);
            }
            other => panic!("{other}"),
        }
        assert!(matches!(refusal("u", 502, b"<html>"), ClientError::Unexpected { status: 502, .. }));
    }

    #[test]
    fn a_query_holds_only_what_is_given_encoded() {
        assert_eq!(
            query(&[("q", Some("a b&c".into())), ("kind", None), ("limit", Some("5".into()))]),
            "?q=a%20b%26c&limit=5"
        );
        assert_eq!(query(&[("q", None)]), "");
    }
}
