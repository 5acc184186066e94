//! `fake-anthropic`: the fake Anthropic Messages API (the `fake_anthropic` library) as a process,
//! for tests and manual runs that point a client at `ANTHROPIC_BASE_URL`. Its one line on
//! stdout says where it listens; logs go to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fake_anthropic::{FakeConfig, FakeServer};

#[derive(Parser)]
#[command(
    name = "fake-anthropic",
    about = "A fake of the Anthropic Messages API for tests: real HTTP and SSE, scripted replies, [fake:…] directives",
    after_help = "Prints `listening on http://HOST:PORT` on stdout once it listens, then runs until SIGINT or SIGTERM. \
                  Logging: FAKE_ANTHROPIC_LOG sets the filter (default info), on stderr."
)]
struct Args {
    /// Where to listen; port 0 takes any free port
    #[arg(long, env = "FAKE_ANTHROPIC_ADDR", default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The key requests must carry in x-api-key or Authorization: Bearer; without it any non-empty key passes
    #[arg(long, env = "FAKE_ANTHROPIC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// JSON file of scripted replies: [{"contains": "…", "reply": "…"}], the first match wins
    #[arg(long, env = "FAKE_ANTHROPIC_SCRIPT")]
    script: Option<PathBuf>,
    /// A model name answered with 404 not_found_error (repeat for several)
    #[arg(long = "unknown-model", value_name = "MODEL", default_value = "claude-does-not-exist")]
    unknown_models: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = std::env::var("FAKE_ANTHROPIC_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(filter) => filter,
        Err(error) => return fail(&format!("FAKE_ANTHROPIC_LOG={filter:?} is not a log filter: {error}")),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let script = match &args.script {
        Some(path) => match FakeConfig::load_script(path) {
            Ok(script) => script,
            Err(error) => return fail(&error.to_string()),
        },
        None => Vec::new(),
    };
    let config = FakeConfig { api_key: args.api_key, script, unknown_models: args.unknown_models };
    let server = match FakeServer::start(args.addr, config) {
        Ok(server) => server,
        Err(error) => return fail(&format!("cannot listen on {}: {error}", args.addr)),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "listening on {}", server.url()).and_then(|()| stdout.flush()) {
        return fail(&format!("cannot write to stdout: {error}"));
    }
    drop(stdout);

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start a runtime to wait for signals: {error}")),
    };
    if let Err(error) = runtime.block_on(stopped()) {
        return fail(&format!("cannot wait for signals: {error}"));
    }
    tracing::info!("stopping");
    server.stop();
    ExitCode::SUCCESS
}

/// Resolve on SIGINT or SIGTERM.
async fn stopped() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("fake-anthropic: {message}");
    ExitCode::FAILURE
}
