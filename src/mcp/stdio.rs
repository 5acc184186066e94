//! `tracebox mcp`: the tools over stdio for one client (Claude Desktop, Claude Code…), until
//! stdin closes or a signal comes; then the sandboxes the session made without `keep` are
//! closed before the process exits.

use super::{ApiClient, Tracebox};
use rmcp::ServiceExt;

/// Why the stdio server could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP client's first messages were not an MCP handshake: {0}")]
    Handshake(#[source] Box<rmcp::service::ServerInitializeError>),
}

/// Serve one MCP session on stdin and stdout, calling the API through `client`.
pub async fn serve(client: ApiClient) -> Result<(), StdioError> {
    let server = Tracebox::new(client);
    let owned = server.owned.clone();
    let served = server.serve(rmcp::transport::stdio()).await;
    let outcome = match served {
        Ok(running) => {
            tokio::select! {
                quit = running.waiting() => {
                    if let Err(error) = quit {
                        tracing::warn!(%error, "the MCP session ended abnormally");
                    }
                }
                signal = ended_by_signal() => tracing::info!(signal, "stopping the MCP session"),
            }
            Ok(())
        }
        Err(error) => Err(StdioError::Handshake(Box::new(error))),
    };
    owned.close_all().await;
    outcome
}

/// SIGINT or SIGTERM (what a client sends a server it is done with), by name.
async fn ended_by_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // No signal handling: only the end of stdin ends the session.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
