//! The `tracebox` command: serve, run one program, run a prompt set, use a server's sandboxes,
//! build the sandbox image.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use tracebox_model::{Execution, HandlerOutcome, Language, OutputStream, RunEvent, Source, Status};

use tracebox::config::{Config, LogFormat};
use tracebox::runner::LiveRun;
use tracebox::sandbox::ImageStatus;
use tracebox::services::Services;
use tracebox::submission::Submission;

mod cli;

#[derive(Parser)]
#[command(name = "tracebox", version, about = "A code-execution sandbox for AI agents, with a trace of every run")]
struct Cli {
    /// TOML file of settings (see config.example.toml); env and flags override it
    #[arg(long, env = "TRACEBOX_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server, building the sandbox image first when it is absent
    #[command(
        after_help = "Logging: TRACEBOX_LOG sets the filter (default info; tracing syntax, e.g. tracebox=debug)."
    )]
    Serve {
        #[command(flatten)]
        settings: Config,
    },
    /// Run one program through the pipeline without a server; exits with the program's code
    ///
    /// Exit codes: the program's own; 124 timeout; 137 out of memory; 141 output limit;
    /// 126 refused by the policy; 125 tracebox itself failed; 130 interrupted.
    Run(RunArgs),
    /// Run a prompt set as one batch: items with `prompt` go through Claude and their code runs,
    /// items with `code` run as is, each judged against its `expect`
    ///
    /// Exit codes: 0 every expectation held; 1 some item failed, was blocked or could not run;
    /// 2 the prompt set is invalid or unreadable (the message names the line); 125 tracebox
    /// itself failed.
    Batch(BatchArgs),
    /// Stateful sandboxes of a running server: create, list, get, exec, code, rm, pause, resume,
    /// cleanup
    ///
    /// Exit codes: `exec` and `code` exit with the command's own code (a cell: 0, or 1 when it
    /// raised), 124 timeout, 137 out of memory, 1 output limit or a failure of the sandbox, 2
    /// refused by the policy (the rules named). Every subcommand exits 1 when the server refuses
    /// (its error code and message on stderr, e.g. no_such_sandbox) or cannot be reached, and 2
    /// on bad usage.
    Sandbox(cli::sandbox::SandboxArgs),
    /// Serve the MCP tools (execute, sandboxes, agent tools, traces) over stdio to an MCP client
    /// such as Claude Desktop or Claude Code, as a client of a running server
    ///
    /// Sandboxes the session creates without `keep` are closed when stdin closes or on SIGINT or
    /// SIGTERM. Logs go to stderr (TRACEBOX_LOG, default warn). Exit code 125 when the client's
    /// first messages are not an MCP handshake.
    Mcp(cli::mcp::McpArgs),
    /// API keys of a data directory: create (printed once), list, revoke
    ///
    /// With no key, a server on a loopback address is open; once one exists every request but
    /// /health needs one (docs/access.md). Exit codes: 0 done; 1 no such key or a name taken; 2
    /// bad usage.
    Keys(cli::keys::KeysArgs),
    /// Manage the sandbox image
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The program, or `-` to read it from stdin
    file: PathBuf,
    /// python or node; by default guessed from the file extension, else python
    #[arg(long, short)]
    language: Option<String>,
    /// A file whose content is the program's stdin, or `-` for this command's stdin
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Wall-clock limit in seconds (default: default_timeout_secs)
    #[arg(long)]
    timeout: Option<f64>,
    /// Memory limit in MiB (default: default_memory_mb)
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Handler mode: call this function of the program (Python `def NAME(event, context)`, Node
    /// `exports.NAME`) with the event; its result is printed as JSON on stdout, and the
    /// program's own output goes to stderr
    #[arg(long, value_name = "NAME")]
    handler: Option<String>,
    /// The handler's event: a file of JSON, or `-` for this command's stdin (default: null)
    #[arg(long, value_name = "FILE", requires = "handler")]
    event: Option<PathBuf>,
    #[command(flatten)]
    settings: Config,
}

#[derive(clap::Args)]
struct BatchArgs {
    /// The prompt set: JSON Lines (or one JSON array) of items with `prompt` or `code`
    promptset: PathBuf,
    /// Items run at once (1–64)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// A running tracebox (e.g. http://127.0.0.1:5000) to send the prompt set to; without it,
    /// the batch runs in this process
    #[arg(long)]
    server: Option<String>,
    /// The server's API key, when it has keys (with --server)
    #[arg(long, env = "TRACEBOX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Write the results here, one JSON line per item as it ends
    #[arg(long)]
    out: Option<PathBuf>,
    /// Model of the prompt items that name none (default: claude_model)
    #[arg(long)]
    model: Option<String>,
    /// Timeout in seconds of the items that set none (default: default_timeout_secs)
    #[arg(long)]
    timeout: Option<f64>,
    #[command(flatten)]
    settings: Config,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build the sandbox image from Dockerfile.sandbox unless it is up to date
    Build {
        /// Rebuild even when the image is up to date
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        settings: Config,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match dispatch(cli, &matches) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tracebox: {error:#}");
            ExitCode::from(125)
        }
    }
}

fn dispatch(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve { .. } => {
            let config = Config::load(sub(matches, &["serve"]), file)?;
            init_logging(config.log_format, "info")?;
            tracebox::server::serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = Config::load(sub(matches, &["run"]), file)?;
            init_logging(config.log_format, "warn")?;
            run_program(config, args)
        }
        Command::Batch(args) => {
            let config = Config::load(sub(matches, &["batch"]), file)?;
            init_logging(config.log_format, "warn")?;
            cli::batch::run(config, args)
        }
        // A client of a server: no settings, no logging of its own.
        Command::Sandbox(args) => Ok(cli::sandbox::run(args)),
        Command::Keys(args) => cli::keys::run(args),
        Command::Mcp(args) => {
            init_logging(LogFormat::Text, "warn")?;
            cli::mcp::run(args)
        }
        Command::Image { command: ImageCommand::Build { force, .. } } => {
            let config = Config::load(sub(matches, &["image", "build"]), file)?;
            init_logging(config.log_format, "info")?;
            build_image(config, force)
        }
    }
}

/// The matches of a (nested) subcommand, where its settings' sources are recorded.
fn sub<'a>(matches: &'a ArgMatches, path: &[&str]) -> &'a ArgMatches {
    path.iter().fold(matches, |m, name| m.subcommand_matches(name).unwrap_or(m))
}

fn init_logging(format: LogFormat, default_level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("TRACEBOX_LOG") {
        Ok(directives) => tracing_subscriber::EnvFilter::try_new(&directives)
            .with_context(|| format!("TRACEBOX_LOG={directives:?} is not a log filter (e.g. info, tracebox=debug)"))?,
        Err(_) => tracing_subscriber::EnvFilter::new(default_level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn build_image(config: Config, force: bool) -> anyhow::Result<ExitCode> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let ready = runtime()?.block_on(tracebox::sandbox::ensure_image(&config.sandbox_settings(), force, &mut |line| {
        if line.starts_with("Step ") || line.starts_with("building ") {
            spinner.set_message(line.to_owned());
        }
        spinner.suspend(|| tracing::debug!(target: "tracebox::image", "{line}"));
    }));
    spinner.finish_and_clear();
    let ready = ready?;
    match ready.status {
        ImageStatus::UpToDate => eprintln!("{} is up to date, on {}", config.image, ready.base),
        ImageStatus::Built => eprintln!("built {} on {}", config.image, ready.base),
    }
    Ok(ExitCode::SUCCESS)
}

/// Read a program (and its stdin) as `tracebox run` was told to.
fn read_submission(args: &RunArgs) -> anyhow::Result<Submission> {
    let read = |path: &Path| -> anyhow::Result<String> {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read stdin")?;
            Ok(text)
        } else {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
    };
    let dashes = [Some(args.file.as_path()), args.stdin.as_deref(), args.event.as_deref()];
    if dashes.iter().filter(|path| *path == &Some(Path::new("-"))).count() > 1 {
        anyhow::bail!("only one of the program, its stdin and its event can come from this command's stdin");
    }
    let language = args.language.clone().or_else(|| Language::from_path(&args.file).map(|l| l.as_str().to_owned()));
    let event = match args.event.as_deref() {
        Some(path) => Some(
            serde_json::from_str(&read(path)?)
                .with_context(|| format!("the event in {} is not JSON", path.display()))?,
        ),
        None => None,
    };
    Ok(Submission {
        code: read(&args.file)?,
        language,
        stdin: args.stdin.as_deref().map(read).transpose()?.unwrap_or_default(),
        env: Default::default(),
        timeout_secs: args.timeout,
        memory_mb: args.memory_mb,
        isolation: None,
        tenant: None,
        owner: None,
        handler: args.handler.clone(),
        event,
    })
}

fn run_program(mut config: Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    let request = read_submission(&args)?.check(&config.request_limits(), Source::Cli)?;
    // A handler's result is this command's stdout: the program's own output goes to stderr.
    let handler_mode = request.handler.is_some();
    // One run: a warm pool would only start containers nobody takes.
    config.pool_size = 0;
    let runtime = runtime()?;
    let services = Services::open(config, runtime.handle().clone())?;
    let outcome = runtime.block_on(async {
        services.recover().await?;
        services.sandbox.check_runtime().await?;
        services.sandbox.ensure_image(false, &mut |line| tracing::info!(target: "tracebox::image", "{line}")).await?;
        let LiveRun { mut events, control, outcome, .. } = services.runner.start(request, false);
        // The program's output appears as it writes it, already screened.
        let follow = async {
            while let Some(event) = events.recv().await {
                if let RunEvent::Output { stream, text } = event {
                    let _ = match stream {
                        OutputStream::Stdout if !handler_mode => std::io::stdout().write_all(text.as_bytes()),
                        OutputStream::Stdout | OutputStream::Stderr => std::io::stderr().write_all(text.as_bytes()),
                    };
                }
            }
        };
        tokio::select! {
            () = follow => {}
            () = interrupted() => control.kill(),
        }
        let outcome = outcome.await;
        // Whatever this process made goes with it (a run's container is removed after its end).
        services.shutdown().await;
        Ok::<_, anyhow::Error>(outcome??)
    });
    let execution = outcome?;
    let kept = services.files.artifacts_dir(execution.trace_id);
    for artifact in &execution.artifacts {
        eprintln!(
            "tracebox: artifact {} ({} bytes): {}",
            artifact.name,
            artifact.size,
            kept.join(&artifact.name).display()
        );
    }
    for omitted in &execution.artifacts_omitted {
        eprintln!("tracebox: left out {}: {}", omitted.name, omitted.reason);
    }
    match &execution.handler {
        Some(HandlerOutcome::Result(value)) => println!("{value}"),
        // Its stack, when it has one, is on stderr already (the runner printed it); a message of
        // the run's own says it below.
        Some(HandlerOutcome::Error(error)) if execution.message.is_none() => {
            eprintln!("tracebox: the handler failed: {}: {}", error.kind, error.message)
        }
        Some(HandlerOutcome::Error(_)) | None => {}
    }
    Ok(report(&execution))
}

/// Resolve when the user presses Ctrl-C or the process is asked to terminate.
async fn interrupted() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

/// Say how a run ended when it is not a plain exit, and pick the exit code.
fn report(execution: &Execution) -> ExitCode {
    if let Some(message) = &execution.message {
        eprintln!("tracebox: {}: {message} (trace {})", execution.status.as_str(), execution.trace_id);
    }
    let code = match execution.status {
        Status::Success | Status::Error => execution.exit_code.unwrap_or(1),
        Status::Timeout => 124,
        Status::Oom => 137,
        Status::OutputLimit => 141,
        Status::Blocked => 126,
        Status::InternalError => 125,
        Status::Killed => 130,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
