//! The `tracebox` command: serve, run one program, build the sandbox image.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracebox::config::{Config, LogFormat};
use tracebox::execution::{ExecutionRequest, Language, Source, Status};
use tracebox::sandbox::ImageStatus;
use tracebox::services::Services;

#[derive(Parser)]
#[command(
    name = "tracebox",
    version,
    about = "A code-execution sandbox for AI agents, with a trace of every run"
)]
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
    Serve {
        #[command(flatten)]
        settings: Config,
    },
    /// Run one program through the pipeline without a server; exits with the program's code
    ///
    /// Exit codes: the program's own; 124 timeout; 137 out of memory; 141 output limit;
    /// 126 refused by the policy; 125 tracebox itself failed.
    Run {
        /// The program, or `-` to read it from stdin
        file: PathBuf,
        /// python or node; by default guessed from the file extension, else python
        #[arg(long, short)]
        language: Option<String>,
        /// Wall-clock limit in seconds (default: default_timeout_secs)
        #[arg(long)]
        timeout: Option<f64>,
        /// Memory limit in MiB (default: default_memory_mb)
        #[arg(long)]
        memory_mb: Option<u64>,
        #[command(flatten)]
        settings: Config,
    },
    /// Manage the sandbox image
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
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
            init_logging(config.log_format, "info");
            tracebox::server::serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file: program,
            language,
            timeout,
            memory_mb,
            ..
        } => {
            let config = Config::load(sub(matches, &["run"]), file)?;
            init_logging(config.log_format, "warn");
            run_program(config, &program, language.as_deref(), timeout, memory_mb)
        }
        Command::Image {
            command: ImageCommand::Build { force, .. },
        } => {
            let config = Config::load(sub(matches, &["image", "build"]), file)?;
            init_logging(config.log_format, "info");
            build_image(config, force)
        }
    }
}

/// The matches of a (nested) subcommand, where its settings' sources are recorded.
fn sub<'a>(matches: &'a ArgMatches, path: &[&str]) -> &'a ArgMatches {
    path.iter()
        .fold(matches, |m, name| m.subcommand_matches(name).unwrap_or(m))
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACEBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn build_image(config: Config, force: bool) -> anyhow::Result<ExitCode> {
    let runtime = runtime()?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let status = runtime.block_on(tracebox::sandbox::ensure_image(
        &config,
        force,
        &mut |line| {
            if line.starts_with("Step ") || line.starts_with("building ") {
                spinner.set_message(line.to_owned());
            }
            spinner.suspend(|| tracing::debug!(target: "tracebox::image", "{line}"));
        },
    ));
    spinner.finish_and_clear();
    match status? {
        ImageStatus::UpToDate => eprintln!("{} is up to date", config.image),
        ImageStatus::Built => eprintln!("built {}", config.image),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_program(
    config: Config,
    program: &Path,
    language: Option<&str>,
    timeout: Option<f64>,
    memory_mb: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let from_stdin = program == Path::new("-");
    let code = if from_stdin {
        let mut code = String::new();
        std::io::stdin()
            .read_to_string(&mut code)
            .context("cannot read the program from stdin")?;
        code
    } else {
        std::fs::read_to_string(program)
            .with_context(|| format!("cannot read {}", program.display()))?
    };
    // The program's own stdin: whatever is piped to tracebox, unless that was the program.
    let mut stdin = String::new();
    if !from_stdin && !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_string(&mut stdin)
            .context("cannot read stdin")?;
    }
    let language = match language {
        Some(name) => name.parse()?,
        None => Language::from_path(program).unwrap_or(Language::Python),
    };
    if code.len() > config.max_code_bytes {
        bail!(
            "the program is {} bytes; the limit is {} (TRACEBOX_MAX_CODE_BYTES)",
            code.len(),
            config.max_code_bytes
        );
    }
    if stdin.len() > config.max_stdin_bytes {
        bail!(
            "stdin is {} bytes; the limit is {} (TRACEBOX_MAX_STDIN_BYTES)",
            stdin.len(),
            config.max_stdin_bytes
        );
    }
    let limits = config.run_limits(timeout, memory_mb)?;
    let request = ExecutionRequest {
        language,
        code,
        stdin,
        env: Default::default(),
        limits,
        source: Source::Cli,
    };

    let runtime = runtime()?;
    let services = Services::open(config, runtime.handle().clone())?;
    runtime.block_on(services.ensure_image(
        false,
        &mut |line| tracing::info!(target: "tracebox::image", "{line}"),
    ))?;
    let execution = runtime.block_on(services.runner.execute(request))?;
    runtime.block_on(async { services.store.close() });

    std::io::stdout().write_all(execution.stdout.as_bytes())?;
    std::io::stderr().write_all(execution.stderr.as_bytes())?;
    if let Some(message) = &execution.message {
        eprintln!(
            "tracebox: {}: {message} (trace {})",
            execution.status.as_str(),
            execution.trace_id
        );
    }
    let code = match execution.status {
        Status::Success | Status::Error => execution.exit_code.unwrap_or(1),
        Status::Timeout => 124,
        Status::Oom => 137,
        Status::OutputLimit => 141,
        Status::Blocked => 126,
        Status::InternalError => 125,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
