//! tracebox as an MCP server: the same fifteen tools over stdio (`tracebox mcp`, a client of a
//! running server) and over streamable HTTP (`/mcp` on the server itself). MCP is a door that
//! translates: every tool is a call of tracebox's own HTTP API (`client.rs`), so it is screened,
//! limited and traced exactly as that route, whichever transport carried it.

mod client;
pub mod http;
mod params;
mod render;
mod session;
pub mod stdio;
mod tools;

use std::borrow::Cow;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ProtocolVersion, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool_handler};

pub use client::{ApiClient, ClientError};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use session::Owned;

/// What the server tells a client about itself at the start, for the model to read.
const INSTRUCTIONS: &str = "tracebox runs code in hardened, network-less sandboxes and keeps a \
    trace of everything that ran. Use `execute` for a one-off program; for work across several \
    steps, `create_sandbox` (optionally from a git repository), then `run_command`, `run_code`, \
    the file tools and `execute_tool`, and `close_sandbox` when done (sandboxes this session \
    made are closed when it ends unless created with keep: true). Every result names its \
    trace_id: `get_trace` reads it back, `search_traces` finds earlier ones.";

/// The tool server of one MCP session: the API it calls and the sandboxes the session owns.
/// rmcp makes one per session (over stdio, one per process); its clones share both.
#[derive(Clone)]
pub struct Tracebox {
    client: ApiClient,
    owned: Owned,
    tool_router: ToolRouter<Tracebox>,
}

impl Tracebox {
    pub fn new(client: ApiClient) -> Tracebox {
        Tracebox { owned: Owned::new(client.clone()), client, tool_router: Tracebox::tool_router() }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tracebox {
    /// A tool call runs as the caller of the `/mcp` request that carried it: `api/mcp.rs` passes
    /// its key or token on as `Authorization`, and every API call the tool makes sends it.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let credential = context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.headers.get(::http::header::AUTHORIZATION))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned);
        let call = ToolCallContext::new(self, request, context);
        client::as_caller(credential, self.tool_router.call(call)).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_server_info(Implementation::new("tracebox", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// The revisions with `initialize`, whose sessions own sandboxes. 2026-07-28 removed
    /// sessions (each HTTP request is served alone), which leaves a sandbox made by
    /// `create_sandbox` nothing to be closed with; a client that asks for it first falls back
    /// to `initialize`.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE))
    }
}
