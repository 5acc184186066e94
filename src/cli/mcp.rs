//! `tracebox mcp`: the MCP tools over stdio, for an MCP client that starts tracebox as its
//! server (Claude Desktop, Claude Code…), as a client of a running tracebox (`--server`).
//! stdout carries the protocol and nothing else; logs go to stderr.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct McpArgs {
    /// The tracebox server whose API the tools call: a URL, or an address as TRACEBOX_ADDR gives
    /// it (`http://` is then added)
    #[arg(long, env = "TRACEBOX_ADDR", default_value = "127.0.0.1:5000", value_name = "URL")]
    server: String,
    /// The server's API key (or a token from POST /auth/token), when it has keys
    #[arg(long, env = "TRACEBOX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let client = tracebox::mcp::ApiClient::remote(&args.server)?.with_credential(args.api_key);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let served = runtime.block_on(tracebox::mcp::stdio::serve(client));
    // A read of stdin may still be pending on a blocking thread (a signal ended the session
    // while the client kept stdin open): leave it behind rather than wait for a line.
    runtime.shutdown_background();
    served?;
    Ok(ExitCode::SUCCESS)
}
