//! `tracebox sandbox …`: stateful sandboxes from a terminal, as a client of a running server
//! (docs/api.md, "Sandboxes"). Each subcommand is one request: `Server::call` sends it, reads
//! the JSON reply and turns the API's error answer into a [`Refused`], which [`run`] reports
//! (exit 1; 2 for a refusal by the policy and for bad usage).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use tracebox_model::record::CellError;
use tracebox_model::sandbox::{OnTimeout, SandboxStatus};
use tracebox_model::{Language, Status};

mod tools;

#[derive(Args)]
pub struct SandboxArgs {
    /// The server: a URL, or an address as TRACEBOX_ADDR gives it (`http://` is then added)
    #[arg(long, global = true, env = "TRACEBOX_ADDR", default_value = "127.0.0.1:5000", value_name = "URL")]
    server: String,
    /// The server's API key (or a token from POST /auth/token), when it has keys
    #[arg(long, global = true, env = "TRACEBOX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Create a sandbox: its id alone on stdout (`ID=$(tracebox sandbox create)`), a summary on stderr
    Create(CreateArgs),
    /// The sandboxes, newest first, as a table
    List(ListArgs),
    /// One sandbox, as the server's JSON
    Get { id: String },
    /// Run a command in a sandbox: its stdout and stderr, and its exit code as this one's
    Exec(ExecArgs),
    /// Run a code cell in the sandbox's interpreter, whose variables persist between cells: its
    /// output, then the value of its last expression
    Code(CodeArgs),
    /// Kill and remove a sandbox (its trace stays)
    Rm { id: String },
    /// Keep a sandbox's /workspace on the server's disk and free its container; its
    /// interpreter's variables are lost
    Pause { id: String },
    /// Give a paused sandbox a container again, with its files
    Resume { id: String },
    /// Remove every sandbox on the server, without asking; prints how many went
    Cleanup,
    /// Put a sandbox's /workspace back as it was right after creation (its repository and
    /// setup), with a new interpreter
    Reset { id: String },
    /// A sandbox's tool calls, in order, as JSON (what `replay` takes back)
    Trajectory(tools::TrajectoryArgs),
    /// Call a trajectory's tools again in a sandbox and compare each output with the recorded
    /// one: exit 0 when none diverged, 1 when one did, 2 when the file is not a trajectory
    Replay(tools::ReplayArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// python or node (default python)
    #[arg(long, short)]
    language: Option<String>,
    /// Idle seconds before it is paused or killed (default: the server's)
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// What happens at the idle timeout (default pause)
    #[arg(long, value_parser = ["pause", "kill"])]
    on_timeout: Option<String>,
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    #[arg(long, value_name = "X")]
    cpus: Option<f64>,
    /// Size of /workspace in MiB (a tmpfs: it counts with the memory)
    #[arg(long, value_name = "N")]
    disk_mb: Option<u64>,
    /// A variable of its commands' and interpreter's environment (repeatable)
    #[arg(long, value_name = "K=V", value_parser = pair)]
    env: Vec<(String, String)>,
    /// An uploaded file (POST /upload) to copy into /workspace (repeatable)
    #[arg(long = "file", value_name = "NAME")]
    files: Vec<String>,
    /// A label to find it by (`list --metadata K=V`) (repeatable)
    #[arg(long, value_name = "K=V", value_parser = pair)]
    metadata: Vec<(String, String)>,
    /// A git repository the server clones into /workspace: an absolute path on the server, or a
    /// file://, https:// or ssh:// URL it reaches
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// The commit (or branch or tag) of --repo to check out (default HEAD)
    #[arg(long, value_name = "SHA", requires = "repo")]
    commit: Option<String>,
    /// A command run in the sandbox after the copy, before its creation state is kept
    /// (repeatable, in order)
    #[arg(long, value_name = "CMD")]
    setup: Vec<String>,
}

#[derive(Args)]
struct ListArgs {
    #[arg(long, value_parser = ["running", "paused"])]
    status: Option<String>,
    /// Only those with this label (repeatable: all must hold)
    #[arg(long, value_name = "K=V", value_parser = pair)]
    metadata: Vec<(String, String)>,
}

// One of the ways to say what to run is required.
#[derive(Args)]
#[command(
    group = clap::ArgGroup::new("what").required(true).args(["cmd", "argv", "tool"]),
    override_usage = "tracebox sandbox exec [OPTIONS] ID -- CMD...\n       tracebox sandbox exec [OPTIONS] ID --cmd LINE\n       tracebox sandbox exec ID --tool TOOL --params JSON"
)]
struct ExecArgs {
    /// The sandbox's id (sbx_…)
    id: String,
    /// The command as one bash line: `--cmd 'ls | wc -l'`
    #[arg(long, value_name = "LINE")]
    cmd: Option<String>,
    /// The command as words (after `--`), each passed as one argument, as `docker exec` does
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true)]
    argv: Vec<String>,
    /// Working directory (default /workspace)
    #[arg(long)]
    cwd: Option<String>,
    /// A variable of the command's environment (repeatable)
    #[arg(long, value_name = "K=V", value_parser = pair)]
    env: Vec<(String, String)>,
    /// Seconds before the command is killed (exit 124; default: the server's)
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// A file whose content is the command's stdin, or `-` for this command's stdin
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Call an agent tool instead: file_read, file_write, shell, search or git
    #[arg(long, value_name = "TOOL", requires = "params", conflicts_with_all = ["cwd", "env", "timeout", "stdin"])]
    tool: Option<String>,
    /// The tool's params as JSON: `--params '{"command": "pytest"}'`
    #[arg(long, value_name = "JSON", requires = "tool")]
    params: Option<String>,
}

#[derive(Args)]
struct CodeArgs {
    /// The sandbox's id (sbx_…)
    id: String,
    /// The cell's source, or `-` to read it from stdin
    file: PathBuf,
    /// Seconds before the cell is interrupted (exit 124; default: the server's)
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

/// Exit codes besides the command's own.
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const BLOCKED: u8 = 2;
const TIMEOUT: u8 = 124;
const OOM: u8 = 137;

pub fn run(args: SandboxArgs) -> ExitCode {
    let server = Server::at(&args.server, args.api_key.clone());
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(server.dispatch(args.command)));
    done.unwrap_or_else(|error| failed(&error))
}

/// The server's answer to a request it refused: `{"error": {"code", "message"}, …}`.
#[derive(Debug, Deserialize, thiserror::Error)]
#[error("{}: {}", error.code, error.message)]
struct Refused {
    error: ErrorBody,
    /// The rules that refused the code (`blocked_by_policy`).
    #[serde(default)]
    rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// Bad usage clap cannot see (a file that cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// Say why a subcommand failed and pick the exit code.
fn failed(error: &anyhow::Error) -> ExitCode {
    eprintln!("tracebox: {error:#}");
    match error.downcast_ref::<Refused>() {
        Some(refused) if refused.error.code == "blocked_by_policy" => {
            eprintln!("tracebox: rules: {}", refused.rules.join(", "));
            ExitCode::from(BLOCKED)
        }
        _ if error.is::<Usage>() => ExitCode::from(USAGE),
        _ => ExitCode::from(FAILED),
    }
}

/// A sandbox as the server shows it (the fields this command uses).
#[derive(Deserialize)]
struct Sandbox {
    sandbox_id: String,
    status: SandboxStatus,
    language: Language,
    memory_mb: u64,
    cpus: f64,
    disk_mb: u64,
    created_at: String,
    expires_at: String,
    timeout: f64,
    on_timeout: OnTimeout,
    steps: u64,
    note: Option<String>,
}

/// A command's or a code cell's reply (the `/execute` fields this command uses).
#[derive(Deserialize)]
struct Step {
    trace_id: String,
    status: Status,
    exit_code: Option<i64>,
    stdout: String,
    stderr: String,
    message: Option<String>,
    /// A cell's last expression's value.
    #[serde(default)]
    result: Option<String>,
    /// What a cell raised.
    #[serde(default)]
    error: Option<CellError>,
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Delete,
}

struct Server {
    url: String,
    api_key: Option<String>,
}

/// How long to wait for the server to accept a connection. A reply may take as long as a
/// command runs, so there is no limit on the rest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    fn at(server: &str, api_key: Option<String>) -> Server {
        let url = server.trim_end_matches('/');
        let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
        Server { url, api_key: api_key.filter(|key| !key.is_empty()) }
    }

    /// Send one request and read its JSON reply (`null` when there is none, as for a `204`); the
    /// API's error answer comes back as a `Refused`.
    async fn call<T: DeserializeOwned>(&self, verb: Verb, path: &str, body: Option<Value>) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        let client = tracebox::http_client::builder().connect_timeout(CONNECT_TIMEOUT).build()?;
        let request = match verb {
            Verb::Get => client.get(&url),
            Verb::Post => client.post(&url),
            Verb::Delete => client.delete(&url),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}; is a tracebox server there? (--server, TRACEBOX_ADDR)"))?;
        let status = response.status();
        let bytes = response.bytes().await.with_context(|| format!("the reply of {url} broke off"))?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        if status.is_success() {
            return serde_json::from_slice(bytes)
                .with_context(|| format!("{url} answered {status} with an unexpected body"));
        }
        match serde_json::from_slice::<Refused>(bytes) {
            Ok(refused) => Err(refused.into()),
            Err(_) => {
                let start = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                anyhow::bail!("{url} answered {status}: {start}")
            }
        }
    }

    async fn dispatch(&self, command: SandboxCommand) -> anyhow::Result<ExitCode> {
        match command {
            SandboxCommand::Create(args) => self.create(args).await,
            SandboxCommand::List(args) => self.list(args).await,
            SandboxCommand::Get { id } => {
                let sandbox: Value = self.call(Verb::Get, &format!("/sandboxes/{}", encode(&id)), None).await?;
                stdout(&format!("{sandbox:#}\n"));
                Ok(ExitCode::SUCCESS)
            }
            SandboxCommand::Exec(args) => self.exec(args).await,
            SandboxCommand::Code(args) => self.code(args).await,
            SandboxCommand::Rm { id } => {
                let () = self.call(Verb::Delete, &format!("/sandboxes/{}", encode(&id)), None).await?;
                eprintln!("removed {id}");
                Ok(ExitCode::SUCCESS)
            }
            SandboxCommand::Pause { id } => {
                let paused: Sandbox = self.call(Verb::Post, &format!("/sandboxes/{}/pause", encode(&id)), None).await?;
                eprintln!("paused {}: its files are kept, its interpreter's variables are not", paused.sandbox_id);
                Ok(ExitCode::SUCCESS)
            }
            SandboxCommand::Resume { id } => {
                let resumed: Sandbox =
                    self.call(Verb::Post, &format!("/sandboxes/{}/resume", encode(&id)), None).await?;
                let note = resumed.note.map(|note| format!(": {note}")).unwrap_or_default();
                eprintln!("resumed {}{note}", resumed.sandbox_id);
                Ok(ExitCode::SUCCESS)
            }
            SandboxCommand::Reset { id } => {
                let reset: Sandbox = self.call(Verb::Post, &format!("/sandboxes/{}/reset", encode(&id)), None).await?;
                eprintln!("reset {}: /workspace is as it was created, with a new interpreter", reset.sandbox_id);
                Ok(ExitCode::SUCCESS)
            }
            SandboxCommand::Trajectory(args) => self.trajectory(args).await,
            SandboxCommand::Replay(args) => self.replay(args).await,
            SandboxCommand::Cleanup => {
                let cleaned: Value = self.call(Verb::Post, "/sandboxes/cleanup", None).await?;
                stdout(&format!("removed {} sandboxes\n", cleaned["removed"]));
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    async fn create(&self, args: CreateArgs) -> anyhow::Result<ExitCode> {
        let CreateArgs {
            language,
            timeout,
            on_timeout,
            memory_mb,
            cpus,
            disk_mb,
            env,
            files,
            metadata,
            repo,
            commit,
            setup,
        } = args;
        let env: BTreeMap<_, _> = env.into_iter().collect();
        let metadata: BTreeMap<_, _> = metadata.into_iter().collect();
        let repo = repo.map(|url| json!({"url": url, "commit": commit.unwrap_or_else(|| "HEAD".to_owned())}));
        let body = json!({
            "language": language, "timeout": timeout, "on_timeout": on_timeout, "memory_mb": memory_mb,
            "cpus": cpus, "disk_mb": disk_mb, "env": env, "files": files, "metadata": metadata,
            "repo": repo, "setup": setup,
        });
        let made: Sandbox = self.call(Verb::Post, "/sandboxes", Some(body)).await?;
        stdout(&format!("{}\n", made.sandbox_id));
        let then = match made.on_timeout {
            OnTimeout::Pause => "paused",
            OnTimeout::Kill => "removed",
        };
        eprintln!(
            "created {} ({}, {} MiB memory, {} MiB disk, {} CPU; {then} after {} s idle)",
            made.sandbox_id, made.language, made.memory_mb, made.disk_mb, made.cpus, made.timeout
        );
        Ok(ExitCode::SUCCESS)
    }

    async fn list(&self, args: ListArgs) -> anyhow::Result<ExitCode> {
        let filters = args.status.iter().map(|status| format!("status={}", encode(status)));
        let labels = args.metadata.iter().map(|(k, v)| format!("metadata.{}={}", encode(k), encode(v)));
        let query: Vec<String> = filters.chain(labels).collect();
        let path = if query.is_empty() { "/sandboxes".to_owned() } else { format!("/sandboxes?{}", query.join("&")) };
        #[derive(Deserialize)]
        struct Listed {
            sandboxes: Vec<Sandbox>,
        }
        let listed: Listed = self.call(Verb::Get, &path, None).await?;
        let mut rows = vec![["ID", "STATUS", "LANGUAGE", "CREATED (UTC)", "EXPIRES (UTC)", "STEPS"].map(String::from)];
        for sandbox in &listed.sandboxes {
            // A paused sandbox has no idle timeout running: only its lifetime can end it.
            let expires = match sandbox.status {
                SandboxStatus::Running => short_time(&sandbox.expires_at),
                SandboxStatus::Paused | SandboxStatus::Stopped => "-".to_owned(),
            };
            rows.push([
                sandbox.sandbox_id.clone(),
                sandbox.status.to_string(),
                sandbox.language.to_string(),
                short_time(&sandbox.created_at),
                expires,
                sandbox.steps.to_string(),
            ]);
        }
        stdout(&table(&rows));
        if listed.sandboxes.is_empty() {
            eprintln!("no sandboxes");
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn exec(&self, args: ExecArgs) -> anyhow::Result<ExitCode> {
        let ExecArgs { id, cmd, argv, cwd, env, timeout, stdin, tool, params } = args;
        if let (Some(tool), Some(params)) = (tool, params) {
            return self.tool(&id, &tool, &params).await;
        }
        let cmd = cmd.unwrap_or_else(|| command_line(&argv));
        let stdin = stdin.as_deref().map(read).transpose()?.unwrap_or_default();
        let env: BTreeMap<_, _> = env.into_iter().collect();
        let body = json!({"cmd": cmd, "cwd": cwd, "env": env, "timeout": timeout, "stdin": stdin});
        let step: Step = self.call(Verb::Post, &format!("/sandboxes/{}/commands", encode(&id)), Some(body)).await?;
        Ok(show(&step))
    }

    async fn code(&self, args: CodeArgs) -> anyhow::Result<ExitCode> {
        let body = json!({"code": read(&args.file)?, "timeout": args.timeout});
        let step: Step = self.call(Verb::Post, &format!("/sandboxes/{}/code", encode(&args.id)), Some(body)).await?;
        Ok(show(&step))
    }
}

/// Write a step's output where it belongs, then a cell's result (stdout) or its error (stderr),
/// then why it ended, when that was not a plain exit; the exit code says how it ended.
fn show(step: &Step) -> ExitCode {
    stdout(&step.stdout);
    let _ = std::io::stderr().write_all(step.stderr.as_bytes());
    if let Some(result) = &step.result {
        let newline = if step.stdout.is_empty() || step.stdout.ends_with('\n') { "" } else { "\n" };
        stdout(&format!("{newline}{result}\n"));
    }
    if let Some(error) = &step.error {
        if error.traceback.is_empty() {
            eprintln!("{}: {}", error.name, error.value);
        } else {
            eprint!("{}", error.traceback);
        }
    }
    if let Some(message) = &step.message {
        eprintln!("tracebox: {}: {message} (trace {})", step.status.as_str(), step.trace_id);
    }
    let code = match step.status {
        Status::Success | Status::Error => step.exit_code.and_then(|code| u8::try_from(code).ok()).unwrap_or(FAILED),
        Status::Timeout => TIMEOUT,
        Status::Oom => OOM,
        // The server answers a refusal with a 403 (`failed`), never as a step.
        Status::Blocked => BLOCKED,
        Status::OutputLimit | Status::Killed | Status::InternalError => FAILED,
    };
    ExitCode::from(code)
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// A file's text, or this command's stdin for `-`.
fn read(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(path).map(|read| text = read)
    };
    read.map_err(|error| Usage(format!("cannot read {}: {error}", path.display())))?;
    Ok(text)
}

/// `K=V` of a repeatable flag.
fn pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `argv` as one bash line that runs it word for word: each word quoted unless it is plainly
/// one word (`=` included, as a leading `K=V` would set a variable).
fn command_line(argv: &[String]) -> String {
    let plain =
        |word: &str| !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:,+@%".contains(&b));
    let quoted =
        argv.iter().map(|word| if plain(word) { word.clone() } else { format!("'{}'", word.replace('\'', r"'\''")) });
    quoted.collect::<Vec<_>>().join(" ")
}

/// Percent-encode a path segment or a query value: all but the unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `2026-12-05T07:08:34.570639Z` as `2026-12-05 07:08:34`.
fn short_time(time: &str) -> String {
    time.get(..19).map_or_else(|| time.to_owned(), |start| start.replace('T', " "))
}

/// Rows as left-aligned columns two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|i| rows.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_reach_the_command_as_they_were_given() {
        let argv = |words: &[&str]| command_line(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(argv(&["ls", "-la", "/workspace"]), "ls -la /workspace");
        assert_eq!(argv(&["echo", "a b", "it's", ""]), r"echo 'a b' 'it'\''s' ''");
        assert_eq!(argv(&["A=1", "echo", "$HOME", "*"]), "'A=1' echo '$HOME' '*'");
    }

    #[test]
    fn slashes_and_query_characters_are_escaped() {
        assert_eq!(encode("sbx_abc-1.2~"), "sbx_abc-1.2~");
        assert_eq!(encode("../traces?x=1&y"), "..%2Ftraces%3Fx%3D1%26y");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn pairs_need_a_key() {
        assert_eq!(pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(pair("A="), Ok(("A".into(), String::new())));
        assert!(pair("=b").is_err() && pair("A").is_err());
    }

    #[test]
    fn the_table_lines_up() {
        let rows = [["ID", "STEPS"].map(String::from), ["sbx_1", "12"].map(String::from)];
        assert_eq!(table(&rows), "ID     STEPS\nsbx_1  12\n");
        assert_eq!(short_time("2026-12-05T07:08:34.570639Z"), "2026-12-05 07:08:34");
    }
}
