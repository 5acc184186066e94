//! The execution domain: what a door asks the pipeline to run, and what comes back.
//!
//! These types are transport-free; each door (HTTP, CLI, WebSocket…) converts its own wire
//! format into an [`ExecutionRequest`] and an [`Execution`] back into its protocol.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, LimitError};
use crate::files::{Artifact, Omitted};
use crate::policy::{PolicyHit, Redaction};
use crate::trace::TraceId;

/// Most environment variables a run may be given.
pub const MAX_ENV_VARS: usize = 100;
/// Most bytes of environment (names and values) a run may be given: well inside what the
/// kernel lets a process start with (128 KiB per variable).
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// A language the sandbox image can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Node,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Python, Language::Node];

    /// The canonical name, as stored in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
        }
    }

    /// Guess the language of a file from its extension (for `tracebox run FILE`).
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted spellings, as listed in error messages.
pub const LANGUAGE_NAMES: &str = "python (or py, python3), node (or javascript, js, nodejs)";

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Ok(Language::Python),
            "node" | "javascript" | "js" | "nodejs" => Ok(Language::Node),
            _ => Err(UnknownLanguage(name.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown language `{0}`; use one of: {LANGUAGE_NAMES}")]
pub struct UnknownLanguage(pub String);

/// Which door a run came through; recorded on its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Http,
    Cli,
    #[serde(rename = "websocket")]
    WebSocket,
    /// A prompt set run by `tracebox batch` (in-process, or sent to `POST /batch`).
    Batch,
}

impl Source {
    /// The name stored in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Cli => "cli",
            Source::WebSocket => "websocket",
            Source::Batch => "batch",
        }
    }
}

/// What a run may share with other runs (see the README's security model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A container of its own, used once: nothing shared.
    Fresh,
    /// A container that serves several runs of one tenant, wiped between them.
    Recycle,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Fresh => "fresh",
            Isolation::Recycle => "recycle",
        }
    }
}

/// The per-run limits after the request's values were checked against the server's bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLimits {
    /// Wall-clock limit; the container is killed when it passes.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Memory limit of the container (swap is set equal, so none is usable on top).
    pub memory_bytes: u64,
    /// CPU quota, in CPUs.
    pub cpus: f64,
    /// Maximum number of processes and threads inside the container.
    pub pids: i64,
    /// Combined stdout + stderr bytes after which the run is stopped.
    pub output_bytes: u64,
}

/// One program to run, checked, as every door hands it to the pipeline.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub language: Language,
    pub code: String,
    pub stdin: String,
    pub env: BTreeMap<String, String>,
    pub limits: RunLimits,
    pub source: Source,
    /// Uploaded files the program reads, mounted read-only under `/workspace/`.
    pub files: Vec<InputFile>,
    /// The trace this run belongs to (the Claude call whose code it is, a batch).
    pub parent: Option<TraceId>,
    /// Whether its container may serve other runs of its tenant.
    pub isolation: Isolation,
    /// Whose recycled containers it may use (recycle only).
    pub tenant: Option<String>,
}

/// An uploaded file given to a run: `/workspace/<name>` in the container, read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFile {
    pub name: String,
    /// Absolute path of the file on the engine's host.
    pub host_path: std::path::PathBuf,
    pub size: u64,
}

/// A program as a door received it, before it is checked against the server's limits.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub code: String,
    /// `None`: Python.
    pub language: Option<String>,
    pub stdin: String,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: Option<f64>,
    pub memory_mb: Option<u64>,
    /// `None`: the server's default.
    pub isolation: Option<Isolation>,
    /// Whose recycled containers the run may use.
    pub tenant: Option<String>,
}

/// Longest tenant name.
pub const MAX_TENANT_CHARS: usize = 64;

/// A submission that cannot run as it is; each names its field and the limit or fix.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("`code` is {size} bytes; the limit is {limit} bytes (TRACEBOX_MAX_CODE_BYTES)")]
    CodeTooLarge { size: usize, limit: usize },
    #[error("`stdin` is {size} bytes; the limit is {limit} bytes (TRACEBOX_MAX_STDIN_BYTES)")]
    StdinTooLarge { size: usize, limit: usize },
    #[error("`language`: {0}")]
    Language(#[from] UnknownLanguage),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("`env`: {0}")]
    Env(String),
    #[error("`env` holds {size} bytes; the limit is {MAX_ENV_BYTES} bytes of names and values")]
    EnvTooLarge { size: usize },
    #[error("{0}")]
    Isolation(String),
}

impl Submission {
    /// Check every field against `config`, naming the first that does not fit.
    pub fn check(self, config: &Config, source: Source) -> Result<ExecutionRequest, RequestError> {
        let Submission { code, language, stdin, env, timeout_secs, memory_mb, isolation, tenant } = self;
        if code.len() > config.max_code_bytes {
            return Err(RequestError::CodeTooLarge { size: code.len(), limit: config.max_code_bytes });
        }
        if stdin.len() > config.max_stdin_bytes {
            return Err(RequestError::StdinTooLarge { size: stdin.len(), limit: config.max_stdin_bytes });
        }
        let language = language.as_deref().map(str::parse).transpose()?.unwrap_or(Language::Python);
        let limits = config.run_limits(timeout_secs, memory_mb)?;
        check_env(&env)?;
        let isolation = check_isolation(isolation, tenant.as_deref(), config)?;
        Ok(ExecutionRequest {
            language,
            code,
            stdin,
            env,
            limits,
            source,
            files: Vec::new(),
            parent: None,
            isolation,
            tenant,
        })
    }
}

/// The isolation a run may have: fresh always; recycle when the server's default is recycle
/// or it allows asking for it. A tenant names only whose recycled containers a run may use.
fn check_isolation(asked: Option<Isolation>, tenant: Option<&str>, config: &Config) -> Result<Isolation, RequestError> {
    let isolation = asked.unwrap_or(config.isolation);
    if isolation == Isolation::Recycle && config.isolation != Isolation::Recycle && !config.recycle_allowed {
        return Err(RequestError::Isolation(
            "`isolation`: this server runs every program in a fresh container; recycle is allowed with TRACEBOX_RECYCLE_ALLOWED=true"
                .into(),
        ));
    }
    if let Some(tenant) = tenant {
        let well_formed = !tenant.is_empty()
            && tenant.chars().count() <= MAX_TENANT_CHARS
            && tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !well_formed {
            return Err(RequestError::Isolation(format!(
                "`tenant` must be 1 to {MAX_TENANT_CHARS} letters, digits, '-' or '_'"
            )));
        }
        if isolation != Isolation::Recycle {
            return Err(RequestError::Isolation(
                "`tenant` is for recycled containers; ask for \"isolation\": \"recycle\" too".into(),
            ));
        }
    }
    Ok(isolation)
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), RequestError> {
    if env.len() > MAX_ENV_VARS {
        return Err(RequestError::Env(format!("{} variables; at most {MAX_ENV_VARS} are allowed", env.len())));
    }
    let size: usize = env.iter().map(|(name, value)| name.len() + value.len()).sum();
    if size > MAX_ENV_BYTES {
        return Err(RequestError::EnvTooLarge { size });
    }
    for (name, value) in env {
        let mut chars = name.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(RequestError::Env(format!(
                "{name:?} is not a variable name; use letters, digits and '_', not starting with a digit"
            )));
        }
        if value.contains('\0') {
            return Err(RequestError::Env(format!("the value of {name} contains a NUL byte")));
        }
    }
    Ok(())
}

/// How a run ended. A bad result of user code is data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code 0.
    Success,
    /// Non-zero exit code.
    Error,
    /// Killed at its wall-clock limit.
    Timeout,
    /// Killed by the kernel for passing its memory limit.
    Oom,
    /// Refused by the input policy; never ran.
    Blocked,
    /// Stopped for writing more than the output limit.
    OutputLimit,
    /// Stopped by its client (a `kill` frame, a closed WebSocket).
    Killed,
    /// tracebox itself failed (Docker went away, …); the trace says why.
    InternalError,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Success,
        Status::Error,
        Status::Timeout,
        Status::Oom,
        Status::Blocked,
        Status::OutputLimit,
        Status::Killed,
        Status::InternalError,
    ];

    /// The name clients and traces see.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Blocked => "blocked",
            Status::OutputLimit => "output_limit",
            Status::Killed => "killed",
            Status::InternalError => "internal_error",
        }
    }
}

/// The result of one run through the pipeline, already redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub trace_id: TraceId,
    pub status: Status,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub truncated: bool,
    /// Output bytes that were not valid UTF-8 and were replaced by U+FFFD.
    pub invalid_utf8: bool,
    pub redactions: Vec<Redaction>,
    /// Input rules that matched (blocking ones when `status` is `blocked`, warnings otherwise).
    pub policy_hits: Vec<PolicyHit>,
    /// Why the run ended the way it did, in words, when it is not a plain exit.
    pub message: Option<String>,
    /// Files the program left in `/workspace/out/`, stored with the trace.
    pub artifacts: Vec<Artifact>,
    /// Files of `/workspace/out/` that did not come back, and why.
    pub artifacts_omitted: Vec<Omitted>,
}

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// What a live run tells its door while it runs; how it ended comes after, as an [`Execution`].
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The program is running in its container.
    Started,
    /// Output, decoded and already redacted, in the order the program wrote it.
    Output { stream: OutputStream, text: String },
}

impl Execution {
    /// A run that ended as `status` with nothing to show: refused, killed while queued, failed.
    pub fn empty(trace_id: TraceId, status: Status) -> Execution {
        Execution {
            trace_id,
            status,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            timed_out: false,
            oom_killed: false,
            truncated: false,
            invalid_utf8: false,
            redactions: Vec::new(),
            policy_hits: Vec::new(),
            message: None,
            artifacts: Vec::new(),
            artifacts_omitted: Vec::new(),
        }
    }

    /// The rules that refused the code (only blocking rules, not warnings).
    pub fn blocking_rules(&self) -> Vec<&str> {
        let blocking = self.policy_hits.iter().filter(|hit| hit.action == crate::policy::Action::Block);
        blocking.map(|hit| hit.rule.as_str()).collect()
    }
}

/// Serialise a `Duration` as (fractional) seconds, the unit users write limits in.
mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_alias_names_a_language() {
        for alias in ["python", "py", "python3", "PYTHON", " Py "] {
            assert_eq!(alias.parse::<Language>().unwrap(), Language::Python, "{alias}");
        }
        for alias in ["node", "javascript", "js", "nodejs", "JS"] {
            assert_eq!(alias.parse::<Language>().unwrap(), Language::Node, "{alias}");
        }
    }

    #[test]
    fn an_unknown_language_error_lists_the_accepted_names() {
        let error = "ruby".parse::<Language>().unwrap_err().to_string();
        assert!(error.contains("`ruby`") && error.contains("python") && error.contains("node"));
    }

    fn submission(code: &str) -> Submission {
        Submission { code: code.into(), ..Submission::default() }
    }

    fn refusal(submission: Submission) -> String {
        submission.check(&Config::defaults(), Source::Http).unwrap_err().to_string()
    }

    #[test]
    fn only_code_is_needed_and_python_is_the_default() {
        let request = submission("print(1)").check(&Config::defaults(), Source::Http).unwrap();
        assert_eq!(request.language, Language::Python);
        assert_eq!(request.limits.timeout.as_secs_f64(), Config::defaults().default_timeout_secs);
    }

    #[test]
    fn each_refusal_names_its_field() {
        assert!(refusal(Submission { language: Some("ruby".into()), ..submission("") }).contains("`language`"));
        assert!(refusal(Submission { timeout_secs: Some(0.0), ..submission("") }).contains("`timeout`"));
        assert!(refusal(Submission { memory_mb: Some(999_999), ..submission("") }).contains("`memory_mb`"));
        let env = |name: &str, value: &str| BTreeMap::from([(name.to_owned(), value.to_owned())]);
        assert!(refusal(Submission { env: env("1X", "a"), ..submission("") }).contains("`env`"));
        assert!(refusal(Submission { env: env("A", "a\0"), ..submission("") }).contains("NUL"));
    }

    #[test]
    fn code_stdin_and_env_at_their_limits_pass_and_one_byte_more_does_not() {
        let config = Config::defaults();
        let check = |submission: Submission| submission.check(&config, Source::Http);
        assert!(check(submission(&"x".repeat(config.max_code_bytes))).is_ok());
        let over = check(submission(&"x".repeat(config.max_code_bytes + 1))).unwrap_err();
        assert!(over.to_string().contains("TRACEBOX_MAX_CODE_BYTES"));
        assert!(check(Submission { stdin: "x".repeat(config.max_stdin_bytes), ..submission("") }).is_ok());
        let over = check(Submission { stdin: "x".repeat(config.max_stdin_bytes + 1), ..submission("") }).unwrap_err();
        assert!(over.to_string().contains("TRACEBOX_MAX_STDIN_BYTES"));
        let env = |len: usize| BTreeMap::from([("K".to_owned(), "v".repeat(len))]);
        assert!(check(Submission { env: env(MAX_ENV_BYTES - 1), ..submission("") }).is_ok());
        assert!(matches!(
            check(Submission { env: env(MAX_ENV_BYTES), ..submission("") }),
            Err(RequestError::EnvTooLarge { .. })
        ));
    }

    #[test]
    fn recycle_is_asked_for_only_where_allowed_and_tenants_are_names() {
        let config = Config::defaults();
        let ask = |isolation: Option<Isolation>, tenant: Option<&str>, config: &Config| {
            Submission { isolation, tenant: tenant.map(str::to_owned), ..submission("x") }.check(config, Source::Http)
        };
        assert_eq!(ask(None, None, &config).unwrap().isolation, Isolation::Fresh);
        assert!(
            ask(Some(Isolation::Recycle), None, &config).unwrap_err().to_string().contains("TRACEBOX_RECYCLE_ALLOWED")
        );
        let allowing = Config { recycle_allowed: true, ..Config::defaults() };
        assert_eq!(ask(Some(Isolation::Recycle), Some("acme-1"), &allowing).unwrap().isolation, Isolation::Recycle);
        assert!(ask(Some(Isolation::Recycle), Some("a b"), &allowing).is_err());
        assert!(ask(Some(Isolation::Recycle), Some(&"t".repeat(MAX_TENANT_CHARS + 1)), &allowing).is_err());
        assert!(ask(Some(Isolation::Recycle), Some(&"t".repeat(MAX_TENANT_CHARS)), &allowing).is_ok());
        assert!(ask(None, Some("acme"), &allowing).unwrap_err().to_string().contains("recycle"));
        let recycling = Config { isolation: Isolation::Recycle, ..Config::defaults() };
        assert_eq!(ask(None, None, &recycling).unwrap().isolation, Isolation::Recycle);
        assert_eq!(ask(Some(Isolation::Fresh), None, &recycling).unwrap().isolation, Isolation::Fresh);
    }

    #[test]
    fn file_extensions_pick_the_language() {
        use std::path::Path;
        assert_eq!(Language::from_path(Path::new("a/b.py")), Some(Language::Python));
        assert_eq!(Language::from_path(Path::new("x.mjs")), Some(Language::Node));
        assert_eq!(Language::from_path(Path::new("x.rb")), None);
        assert_eq!(Language::from_path(Path::new("Makefile")), None);
    }
}
