//! MCP's streamable HTTP transport, as rmcp implements it (sessions, SSE, resumption), for the
//! server's `/mcp` route: `api/mcp.rs` hands each request over as an `http` request and streams
//! the answer back. Its tools call the server's own API over loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::{ApiClient, ClientError, Tracebox};

/// How often an open event stream says it is alive while nothing else comes (as the server's
/// other long answers do: proxies cut connections silent for a minute).
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The MCP endpoint: rmcp's service over its in-memory sessions.
#[derive(Clone)]
pub struct McpHttp {
    service: StreamableHttpService<Tracebox, LocalSessionManager>,
    /// Ends every session and open event stream ([`McpHttp::stop`]).
    stopping: CancellationToken,
}

impl McpHttp {
    /// The endpoint of a server listening at `bound`. A session that exchanges no message for
    /// `idle` ends (and closes its sandboxes); `max_body` bounds one message.
    pub fn new(bound: SocketAddr, idle: Duration, max_body: usize) -> Result<McpHttp, ClientError> {
        let client = ApiClient::loopback(bound)?;
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(idle);
        // The route's guard checks Host and Origin as for every route (TRACEBOX_ALLOWED_HOSTS and
        // _ORIGINS included); rmcp's own checks, loopback names only, would refuse what it allows.
        let stopping = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stopping.clone())
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
            .with_max_request_body_bytes(max_body);
        let service = StreamableHttpService::new(move || Ok(Tracebox::new(client.clone())), Arc::new(sessions), config);
        Ok(McpHttp { service, stopping })
    }

    /// End every session and event stream, as the server stops: a client's open stream would
    /// otherwise hold the graceful stop for its whole grace period.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Answer one request: JSON, or an event stream that goes on as the session speaks.
    pub async fn handle(&self, request: http::Request<Full<Bytes>>) -> http::Response<BoxBody<Bytes, Infallible>> {
        self.service.handle(request).await
    }
}
