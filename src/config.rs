//! The one configuration struct, with every setting's default, env variable and meaning.
//!
//! Precedence: built-in default < TOML file (`--config` / `TRACEBOX_CONFIG`) < `TRACEBOX_*`
//! environment < command-line flag. Each field is a clap argument, so `tracebox serve --help`
//! lists them all; the TOML file uses the same names. A malformed value stops start-up naming it.
//! Each subsystem is handed only its own part of it (`settings.rs`).

mod nodes;
mod settings;

pub use nodes::{LOCAL_NODE, NodeConfig};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use tracebox_model::{Isolation, Strategy};

use crate::api::{Authority, WebOrigin};
use crate::claude::ApiKey;
use crate::submission::{MIN_MEMORY_MB, MIN_TIMEOUT_SECS};

const MIB: u64 = 1024 * 1024;

/// Every setting of tracebox. Field names are also the TOML keys.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on
    #[arg(long, env = "TRACEBOX_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    /// Directory that holds traces/ (the SQLite store) and uploads/
    #[arg(long, env = "TRACEBOX_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,

    /// Security policy file (TOML) replacing the built-in one; see policy.toml
    #[arg(long, env = "TRACEBOX_POLICY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,

    /// Docker engine address (unix:///… or tcp://…); unset: $DOCKER_HOST, else the local socket
    #[arg(long, env = "TRACEBOX_DOCKER_HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,

    /// How runs and sandboxes are spread over the nodes when a request names no strategy:
    /// least_loaded, round_robin or random
    #[arg(long, env = "TRACEBOX_PLACEMENT", default_value = "least_loaded")]
    pub placement: Strategy,

    /// Seconds between heartbeats to each node's engine; three missed in a row and the node is
    /// down (no new work) until it answers again
    #[arg(long, env = "TRACEBOX_NODE_HEARTBEAT_SECS", default_value_t = 2.0)]
    pub node_heartbeat_secs: f64,

    /// The Docker engines to drive: `[[nodes]]` tables, in the TOML file only (docs/scaling.md);
    /// none: one node named `local`, the engine of docker_host
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeConfig>,

    /// Sandbox image that runs the code (built from Dockerfile.sandbox when absent)
    #[arg(long, env = "TRACEBOX_IMAGE", default_value = "tracebox-sandbox:latest")]
    pub image: String,

    /// Base image Dockerfile.sandbox builds on; unset: the one the sandbox image was built on,
    /// else debian:bookworm-slim if present, else tracebox-base:bookworm (built offline by
    /// scripts/build-base-image.sh) if present, else debian:bookworm-slim pulled
    #[arg(long, env = "TRACEBOX_BASE_IMAGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,

    /// Docker runtime every container runs under: runc (the engine's usual one) or another the
    /// engine has registered, e.g. runsc (gVisor: a kernel of its own between the code and the
    /// host's; scripts/ensure-runsc.sh installs and registers it). Checked at start
    #[arg(long, env = "TRACEBOX_RUNTIME", default_value = "runc")]
    pub runtime: String,

    /// Wall-clock limit of a run that asks for none, in seconds
    #[arg(long, env = "TRACEBOX_DEFAULT_TIMEOUT_SECS", default_value_t = 10.0)]
    pub default_timeout_secs: f64,

    /// Largest `timeout` a request may ask for, in seconds
    #[arg(long, env = "TRACEBOX_MAX_TIMEOUT_SECS", default_value_t = 60.0)]
    pub max_timeout_secs: f64,

    /// Memory limit of a run that asks for none, in MiB (swap is set equal: no swap)
    #[arg(long, env = "TRACEBOX_DEFAULT_MEMORY_MB", default_value_t = 256)]
    pub default_memory_mb: u64,

    /// Largest `memory_mb` a request may ask for
    #[arg(long, env = "TRACEBOX_MAX_MEMORY_MB", default_value_t = 1024)]
    pub max_memory_mb: u64,

    /// CPU quota of each run, in CPUs
    #[arg(long, env = "TRACEBOX_CPUS", default_value_t = 1.0)]
    pub cpus: f64,

    /// Processes and threads a run may have at once (stops fork bombs)
    #[arg(long, env = "TRACEBOX_PIDS_LIMIT", default_value_t = 128)]
    pub pids_limit: i64,

    /// Open files a process may hold (ulimit -n)
    #[arg(long, env = "TRACEBOX_NOFILE_LIMIT", default_value_t = 256)]
    pub nofile_limit: u64,

    /// Largest file a run may write, in MiB (ulimit -f)
    #[arg(long, env = "TRACEBOX_FILE_SIZE_LIMIT_MB", default_value_t = 32)]
    pub file_size_limit_mb: u64,

    /// Size of the writable /tmp of each run, and of its /dev/shm, in MiB (counts toward its memory)
    #[arg(long, env = "TRACEBOX_TMP_SIZE_MB", default_value_t = 64)]
    pub tmp_size_mb: u64,

    /// Size of the writable /workspace of each run, in MiB (counts toward its memory)
    #[arg(long, env = "TRACEBOX_WORKSPACE_SIZE_MB", default_value_t = 64)]
    pub workspace_size_mb: u64,

    /// stdout + stderr bytes after which a run is stopped and its output marked truncated
    #[arg(long, env = "TRACEBOX_OUTPUT_LIMIT_BYTES", default_value_t = MIB)]
    pub output_limit_bytes: u64,

    /// Largest `code` accepted, in bytes
    #[arg(long, env = "TRACEBOX_MAX_CODE_BYTES", default_value_t = 256 * 1024)]
    pub max_code_bytes: usize,

    /// Largest `stdin` accepted, in bytes (and largest handler `event`, as JSON)
    #[arg(long, env = "TRACEBOX_MAX_STDIN_BYTES", default_value_t = MIB as usize)]
    pub max_stdin_bytes: usize,

    /// Largest result a handler may return, in bytes of JSON; a larger one is an error
    /// (Runtime.ResultTooLarge) instead
    #[arg(long, env = "TRACEBOX_MAX_RESULT_BYTES", default_value_t = MIB)]
    pub max_result_bytes: u64,

    /// Longest pause between two chunks of a request body, in seconds; a body that pauses longer
    /// gets 408 (a timeout on pauses, not on the whole body: a large upload on a slow link that
    /// keeps sending is never cut)
    #[arg(long, env = "TRACEBOX_BODY_READ_TIMEOUT_SECS", default_value_t = 10.0)]
    pub body_read_timeout_secs: f64,

    /// Least average pace of a request body past its first body_read_timeout_secs, in bytes per
    /// second; a slower body gets 408, so one trickled a byte at a time, each within the pause
    /// allowed, cannot hold its connection for ever (0: no floor)
    #[arg(long, env = "TRACEBOX_BODY_MIN_BYTES_PER_SEC", default_value_t = 1024)]
    pub body_min_bytes_per_sec: u64,

    /// HTTP connections served at once, in all; further ones wait to be accepted. Keep it under
    /// the process's open-file limit (ulimit -n): a connection holds one, an upload two
    #[arg(long, env = "TRACEBOX_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Runs executing at once; further runs wait in a queue
    #[arg(long, env = "TRACEBOX_MAX_CONCURRENT_RUNS", default_value_t = 8)]
    pub max_concurrent_runs: usize,

    /// How long a run may wait in that queue before the request gets 503, in seconds
    #[arg(long, env = "TRACEBOX_QUEUE_TIMEOUT_SECS", default_value_t = 30.0)]
    pub queue_timeout_secs: f64,

    /// Runs that may wait in that queue; past it a request gets 503 at once
    #[arg(long, env = "TRACEBOX_MAX_QUEUED_RUNS", default_value_t = 64)]
    pub max_queued_runs: usize,

    /// Runs one WebSocket may have going at once; past it an `execute` gets an `error` frame
    #[arg(long, env = "TRACEBOX_WS_MAX_RUNS", default_value_t = 4)]
    pub ws_max_runs: usize,

    /// Largest WebSocket message accepted, in bytes; a larger one gets an `error` frame (one over
    /// four times this closes the socket, code 1009)
    #[arg(long, env = "TRACEBOX_WS_MAX_MESSAGE_BYTES", default_value_t = 2 * MIB as usize)]
    pub ws_max_message_bytes: usize,

    /// Seconds between pings on an idle WebSocket; a socket silent for three of them is closed
    #[arg(long, env = "TRACEBOX_WS_PING_SECS", default_value_t = 15.0)]
    pub ws_ping_secs: f64,

    /// Web origins (scheme://host[:port], e.g. https://ide.example.com) whose pages may call
    /// every route from a browser (the WebSocket too), besides the server's own (a page on a host
    /// it answers to); comma-separated. Other pages get 403 but for static files and links to
    /// pages; clients that send no Origin (not browsers) are let in
    #[arg(long, env = "TRACEBOX_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_origins: Vec<String>,

    /// Hosts (host[:port], as clients write them in `Host`: no port for the scheme's default)
    /// the server answers to, besides its own listen address and localhost, 127.0.0.1 and [::1]
    /// at its port; comma-separated. Any other Host gets 421, so a page on a name its attacker
    /// points at this server (DNS rebinding) reads nothing. Listening on 0.0.0.0 or [::], list
    /// the names and addresses clients use; behind a proxy, the Host it passes on
    #[arg(long, env = "TRACEBOX_ALLOWED_HOSTS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,

    /// Start on an address beyond loopback with no API key, open to whoever reaches it (logged
    /// loudly, reported by /health). Without it such a start is refused: make a key first
    #[arg(long, env = "TRACEBOX_INSECURE_NO_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    #[serde(default)]
    pub insecure_no_auth: bool,

    /// Life of a token from POST /auth/token that asks for none, in seconds
    #[arg(long, env = "TRACEBOX_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// Longest life a token may ask for, in seconds
    #[arg(long, env = "TRACEBOX_TOKEN_MAX_TTL_SECS", default_value_t = 86_400)]
    pub token_max_ttl_secs: u64,

    /// How long a browser stays signed in, in seconds
    #[arg(long, env = "TRACEBOX_SESSION_TTL_SECS", default_value_t = 43_200)]
    pub session_ttl_secs: u64,

    /// Secret tokens are signed with (32 bytes or more); unset: the file token-secret in the data
    /// directory, made on first start. Changing it ends every token; never logged or shown
    #[arg(long, env = "TRACEBOX_TOKEN_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub token_secret: Option<ApiKey>,

    /// Largest file `POST /upload` stores, in bytes; a larger one gets 413 and nothing is kept
    #[arg(long, env = "TRACEBOX_UPLOAD_MAX_FILE_BYTES", default_value_t = 100 * MIB)]
    pub upload_max_file_bytes: u64,

    /// Largest total of the files in one `POST /upload` request, in bytes (multipart framing
    /// may add up to 1 MiB); a larger request gets 413 and nothing is kept
    #[arg(long, env = "TRACEBOX_UPLOAD_MAX_REQUEST_BYTES", default_value_t = 256 * MIB)]
    pub upload_max_request_bytes: u64,

    /// Most bytes all uploaded files in uploads/ may hold together (artifacts aside: they have
    /// artifacts_max_total_bytes); an upload that would pass it gets 413 and nothing is kept
    #[arg(long, env = "TRACEBOX_UPLOAD_MAX_TOTAL_BYTES", default_value_t = 4096 * MIB)]
    pub upload_max_total_bytes: u64,

    /// Warm containers kept started per language, their interpreter loaded, so a run skips
    /// creating and starting one (0: each run starts its own)
    #[arg(long, env = "TRACEBOX_POOL_SIZE", default_value_t = 2)]
    pub pool_size: usize,

    /// Warm containers started at once while the pool refills
    #[arg(long, env = "TRACEBOX_POOL_REFILL_CONCURRENCY", default_value_t = 2)]
    pub pool_refill_concurrency: usize,

    /// Seconds a warm container may wait in the pool before it is replaced
    #[arg(long, env = "TRACEBOX_POOL_MAX_AGE_SECS", default_value_t = 300.0)]
    pub pool_max_age_secs: f64,

    /// What runs may share: fresh (a container per run, nothing shared) or recycle (a container
    /// serves several runs of one tenant, wiped between them); a request may ask for fresh always,
    /// and for recycle when this is recycle or recycle_allowed is true
    #[arg(long, env = "TRACEBOX_ISOLATION", default_value = "fresh")]
    pub isolation: Isolation,

    /// May a request ask for recycle isolation when the server's default is fresh?
    #[arg(long, env = "TRACEBOX_RECYCLE_ALLOWED", default_value_t = false, action = clap::ArgAction::Set)]
    pub recycle_allowed: bool,

    /// Runs one recycled container serves before it is replaced
    #[arg(long, env = "TRACEBOX_RECYCLE_MAX_RUNS", default_value_t = 100)]
    pub recycle_max_runs: u32,

    /// Recycled containers kept waiting for tenants other than the default, across all of
    /// them; past it the one that waited longest goes (tenants are what clients say, so they
    /// must not make containers pile up)
    #[arg(long, env = "TRACEBOX_RECYCLE_MAX_IDLE", default_value_t = 16)]
    pub recycle_max_idle: usize,

    /// Most files a run's `/workspace/out/` returns as artifacts; further files are left out
    /// (the reply names them)
    #[arg(long, env = "TRACEBOX_ARTIFACTS_MAX_FILES", default_value_t = 100)]
    pub artifacts_max_files: usize,

    /// Most bytes a run's artifacts may hold in all; a file that would pass it is left out
    #[arg(long, env = "TRACEBOX_ARTIFACTS_MAX_BYTES", default_value_t = 64 * MIB)]
    pub artifacts_max_bytes: u64,

    /// Most bytes the artifacts of all runs may hold on this data directory; past it, runs'
    /// files are left out until older ones expire
    #[arg(long, env = "TRACEBOX_ARTIFACTS_MAX_TOTAL_BYTES", default_value_t = 4096 * MIB)]
    pub artifacts_max_total_bytes: u64,

    /// How long artifacts are kept, in hours (0: for ever); the server removes older ones
    #[arg(long, env = "TRACEBOX_ARTIFACTS_RETENTION_HOURS", default_value_t = 168.0)]
    pub artifacts_retention_hours: f64,

    /// How long traces are kept, in days (0: for ever); every minute the server removes older
    /// ones, each with its children, events, search rows and artifacts (a trace still running,
    /// or under a batch or call still running, is kept)
    #[arg(long, env = "TRACEBOX_TRACE_RETENTION_DAYS", default_value_t = 30.0)]
    pub trace_retention_days: f64,

    /// Most traces kept (0: no cap); past it, every minute the server removes the oldest, whole
    /// trees at a time, so the store may end a tree under the cap
    #[arg(long, env = "TRACEBOX_TRACE_MAX_COUNT", default_value_t = 1_000_000)]
    pub trace_max_count: u64,

    /// Anthropic API key for Claude calls and prompt sets; never logged, stored or shown
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub anthropic_api_key: Option<ApiKey>,

    /// Where the Anthropic API is (`/v1/messages` is added); point it at a fake for tests
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com")]
    pub anthropic_base_url: String,

    /// Model of a Claude call that names none
    #[arg(long, env = "TRACEBOX_CLAUDE_MODEL", default_value = "claude-sonnet-4-5")]
    pub claude_model: String,

    /// `max_tokens` of a Claude call that asks for none
    #[arg(long, env = "TRACEBOX_CLAUDE_MAX_TOKENS", default_value_t = 1024)]
    pub claude_max_tokens: u32,

    /// Retries of a Claude call that failed in a way that heals (408, 409, 429, 5xx, 529, a
    /// lost connection)
    #[arg(long, env = "TRACEBOX_CLAUDE_MAX_RETRIES", default_value_t = 2)]
    pub claude_max_retries: u32,

    /// Longest a Claude call may go on retrying, waits included, in seconds
    #[arg(long, env = "TRACEBOX_CLAUDE_RETRY_BUDGET_SECS", default_value_t = 120.0)]
    pub claude_retry_budget_secs: f64,

    /// Longest wait to connect to the Anthropic API, in seconds
    #[arg(long, env = "TRACEBOX_CLAUDE_CONNECT_TIMEOUT_SECS", default_value_t = 5.0)]
    pub claude_connect_timeout_secs: f64,

    /// Longest silence between the events of a streamed reply, in seconds
    #[arg(long, env = "TRACEBOX_CLAUDE_READ_TIMEOUT_SECS", default_value_t = 60.0)]
    pub claude_read_timeout_secs: f64,

    /// Longest one attempt of an unstreamed Claude call may take, in seconds
    #[arg(long, env = "TRACEBOX_CLAUDE_TIMEOUT_SECS", default_value_t = 600.0)]
    pub claude_timeout_secs: f64,

    /// Most code blocks of one reply that run (in order); the rest are named, not run
    #[arg(long, env = "TRACEBOX_CLAUDE_MAX_BLOCKS", default_value_t = 10)]
    pub claude_max_blocks: usize,

    /// Price table (TOML) for the cost estimates of Claude calls, replacing the built-in
    /// prices.toml
    #[arg(long, env = "TRACEBOX_CLAUDE_PRICES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claude_prices: Option<PathBuf>,

    /// Log format: text (for people) or json (for log collectors)
    #[arg(long, env = "TRACEBOX_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Stateful sandboxes that may exist at once, running or paused (1–10,000)
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX", default_value_t = 100)]
    pub sandbox_max: usize,

    /// Idle seconds before a sandbox that names no `timeout` is paused (or killed)
    #[arg(long, env = "TRACEBOX_SANDBOX_TIMEOUT_SECS", default_value_t = 300.0)]
    pub sandbox_timeout_secs: f64,

    /// Smallest idle `timeout` a sandbox may ask for, in seconds (a smaller one is refused)
    #[arg(long, env = "TRACEBOX_SANDBOX_MIN_TIMEOUT_SECS", default_value_t = 10.0)]
    pub sandbox_min_timeout_secs: f64,

    /// Largest idle `timeout` a sandbox may ask for, in seconds
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX_TIMEOUT_SECS", default_value_t = 86_400.0)]
    pub sandbox_max_timeout_secs: f64,

    /// Longest a sandbox lives, active or not, paused included, in seconds; then it is removed
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX_LIFETIME_SECS", default_value_t = 604_800.0)]
    pub sandbox_max_lifetime_secs: f64,

    /// Size of a sandbox's /workspace when it names no `disk_mb`, in MiB
    #[arg(long, env = "TRACEBOX_SANDBOX_DISK_MB", default_value_t = 256)]
    pub sandbox_disk_mb: u64,

    /// Largest `disk_mb` a sandbox may ask for
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX_DISK_MB", default_value_t = 4096)]
    pub sandbox_max_disk_mb: u64,

    /// Longest a sandbox's command or code cell may ask to run, in seconds (the default is
    /// TRACEBOX_DEFAULT_TIMEOUT_SECS)
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX_STEP_TIMEOUT_SECS", default_value_t = 600.0)]
    pub sandbox_max_step_timeout_secs: f64,

    /// Commands and cells that may wait while a sandbox runs one
    #[arg(long, env = "TRACEBOX_SANDBOX_MAX_QUEUED_STEPS", default_value_t = 8)]
    pub sandbox_max_queued_steps: usize,

    /// Seconds an MCP session over HTTP (`/mcp`) may pass without a message either way before
    /// it ends and its sandboxes made without `keep` are closed; keep it above the longest
    /// step (TRACEBOX_SANDBOX_MAX_STEP_TIMEOUT_SECS), which sends nothing while it runs
    #[arg(long, env = "TRACEBOX_MCP_SESSION_IDLE_SECS", default_value_t = 900.0)]
    pub mcp_session_idle_secs: f64,

    /// Compressed bytes of one sandbox's snapshots (its pause included)
    #[arg(long, env = "TRACEBOX_SNAPSHOT_MAX_BYTES", default_value_t = 1024 * MIB)]
    pub snapshot_max_bytes: u64,

    /// Compressed bytes of every sandbox's snapshots together
    #[arg(long, env = "TRACEBOX_SNAPSHOT_MAX_TOTAL_BYTES", default_value_t = 16 * 1024 * MIB)]
    pub snapshot_max_total_bytes: u64,

    /// Sandbox containers started ahead per language, for sandboxes of the default memory, CPUs
    /// and disk with no environment of their own (0–64)
    #[arg(long, env = "TRACEBOX_SANDBOX_POOL_SIZE", default_value_t = 1)]
    pub sandbox_pool_size: usize,

    /// The most a sandbox's `repo` may hold, `.git` included, in bytes (it is bounded by the
    /// sandbox's `disk_mb` too)
    #[arg(long, env = "TRACEBOX_REPO_MAX_BYTES", default_value_t = 1024 * MIB)]
    pub repo_max_bytes: u64,

    /// Longest a sandbox's `repo` may take to clone, in seconds
    #[arg(long, env = "TRACEBOX_REPO_CLONE_TIMEOUT_SECS", default_value_t = 120.0)]
    pub repo_clone_timeout_secs: f64,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that stops start-up, named so it can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid setting `{key}` ({}): {message}", env_var(key))]
    Invalid { key: &'static str, message: String },
    #[error("setting `{old}` ({}) was renamed `{new}` ({}): {why}; rename it", env_var(old), env_var(new))]
    Renamed { old: &'static str, new: &'static str, why: &'static str },
}

/// Settings the TOML file alone holds: tables no flag or environment variable could.
const FILE_ONLY: &[&str] = &["nodes"];

/// Settings that were renamed: the old key, the new one, and why. An old name set in the
/// environment or the file stops start-up naming the new one: a setting ignored in silence
/// would leave the operator wondering why it no longer works.
const RENAMED: &[(&str, &str, &str)] =
    &[("ws_allowed_origins", "allowed_origins", "it now covers every route, not only /ws")];

/// The first renamed setting that `is_set` says is still given by its old name.
fn renamed(is_set: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
    match RENAMED.iter().find(|(old, _, _)| is_set(old)) {
        Some(&(old, new, why)) => Err(ConfigError::Renamed { old, new, why }),
        None => Ok(()),
    }
}

/// The environment variable of setting `key`: Anthropic's own names for its settings, as its
/// SDKs read them; `TRACEBOX_*` for the rest.
fn env_var(key: &str) -> String {
    if key.starts_with("anthropic_") { key.to_uppercase() } else { format!("TRACEBOX_{}", key.to_uppercase()) }
}

impl Config {
    /// Every built-in default, whatever the environment says.
    #[cfg(test)]
    pub fn defaults() -> Config {
        let command = Self::bare_command().no_binary_name(true).mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(Vec::<String>::new()).expect("the defaults parse");
        Config::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// Build the config from parsed arguments (which already hold env and defaults), layering
    /// the TOML file named by `config_file` under everything set explicitly.
    pub fn load(matches: &ArgMatches, config_file: Option<&Path>) -> Result<Config, ConfigError> {
        renamed(|key| std::env::var_os(env_var(key)).is_some())?;
        let mut config = Config::from_arg_matches(matches)?;
        if let Some(path) = config_file {
            config = config.with_file(matches, path)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn with_file(self, matches: &ArgMatches, path: &Path) -> Result<Config, ConfigError> {
        let file_error = |message: String| ConfigError::File { path: path.to_owned(), message };
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let file: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        renamed(|key| file.contains_key(key))?;
        let mut known: Vec<String> = Self::bare_command().get_arguments().map(|arg| arg.get_id().to_string()).collect();
        // Settings of the file alone (tables, not flags).
        known.extend(FILE_ONLY.iter().map(|key| key.to_string()));
        let mut merged = toml::Table::try_from(&self).map_err(|e| file_error(e.to_string()))?;
        for (key, value) in file {
            if !known.contains(&key) {
                return Err(file_error(format!("unknown setting `{key}`; known settings: {}", known.join(", "))));
            }
            let explicit = !FILE_ONLY.contains(&key.as_str())
                && matches!(matches.value_source(&key), Some(ValueSource::EnvVariable | ValueSource::CommandLine));
            if !explicit {
                merged.insert(key, value);
            }
        }
        let mut config: Config =
            toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
        // Never in the file, never serialised: carried over as the environment gave it.
        config.anthropic_api_key = self.anthropic_api_key;
        config.token_secret = self.token_secret;
        Ok(config)
    }

    fn bare_command() -> clap::Command {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            config: Config,
        }
        Bare::command()
    }

    /// Every setting within its bounds, or the first that is not, named.
    fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, key: &'static str, message: String| {
            if ok { Ok(()) } else { Err(ConfigError::Invalid { key, message }) }
        };
        let secs = |value: f64, max: f64| value.is_finite() && value > 0.0 && value <= max;
        let timeout = |value: f64, max: f64| value.is_finite() && (MIN_TIMEOUT_SECS..=max).contains(&value);
        check((1..=10_000).contains(&self.sandbox_max), "sandbox_max", "must be between 1 and 10000".into())?;
        check(self.sandbox_pool_size <= 64, "sandbox_pool_size", "must be at most 64".into())?;
        check(self.repo_max_bytes >= 1, "repo_max_bytes", "must be at least 1".into())?;
        check(
            secs(self.repo_clone_timeout_secs, 86_400.0),
            "repo_clone_timeout_secs",
            "must be more than 0 and at most a day".into(),
        )?;
        let within = |value: f64, min: f64, max: f64| value.is_finite() && (min..=max).contains(&value);
        check(
            within(self.sandbox_min_timeout_secs, 1.0, self.sandbox_max_timeout_secs),
            "sandbox_min_timeout_secs",
            "must be at least 1 and at most sandbox_max_timeout_secs".into(),
        )?;
        check(
            within(self.sandbox_timeout_secs, self.sandbox_min_timeout_secs, self.sandbox_max_timeout_secs),
            "sandbox_timeout_secs",
            "must lie between sandbox_min_timeout_secs and sandbox_max_timeout_secs".into(),
        )?;
        check(
            within(self.sandbox_max_lifetime_secs, 60.0, 366.0 * 86_400.0),
            "sandbox_max_lifetime_secs",
            "must be between 60 s and a year".into(),
        )?;
        check(
            (1..=self.sandbox_max_disk_mb).contains(&self.sandbox_disk_mb),
            "sandbox_disk_mb",
            "must be at least 1 and at most sandbox_max_disk_mb".into(),
        )?;
        check(
            within(self.mcp_session_idle_secs, 1.0, 86_400.0),
            "mcp_session_idle_secs",
            "must be between 1 s and a day".into(),
        )?;
        check(
            within(self.sandbox_max_step_timeout_secs, self.default_timeout_secs, 86_400.0),
            "sandbox_max_step_timeout_secs",
            "must be at least default_timeout_secs and at most a day".into(),
        )?;
        check(
            timeout(self.max_timeout_secs, MAX_SECS),
            "max_timeout_secs",
            format!("must be between {MIN_TIMEOUT_SECS} and {MAX_SECS}"),
        )?;
        check(
            timeout(self.default_timeout_secs, self.max_timeout_secs),
            "default_timeout_secs",
            format!("must be between {MIN_TIMEOUT_SECS} and max_timeout_secs ({})", self.max_timeout_secs),
        )?;
        check(
            (MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.max_memory_mb),
            "max_memory_mb",
            format!("must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB}"),
        )?;
        check(
            (MIN_MEMORY_MB..=self.max_memory_mb).contains(&self.default_memory_mb),
            "default_memory_mb",
            format!("must be between {MIN_MEMORY_MB} and max_memory_mb ({})", self.max_memory_mb),
        )?;
        check(
            self.cpus.is_finite() && (0.01..=1024.0).contains(&self.cpus),
            "cpus",
            "must be between 0.01 and 1024".into(),
        )?;
        check(self.pids_limit >= 8, "pids_limit", "must be at least 8 (the interpreters need a few threads)".into())?;
        check(
            self.nofile_limit >= 16,
            "nofile_limit",
            "must be at least 16 (the interpreters open a few files)".into(),
        )?;
        check(self.file_size_limit_mb >= 1, "file_size_limit_mb", "must be at least 1".into())?;
        check(self.tmp_size_mb >= 1, "tmp_size_mb", "must be at least 1 (0 would mean unlimited to tmpfs)".into())?;
        check(
            self.workspace_size_mb >= 1,
            "workspace_size_mb",
            "must be at least 1 (0 would mean unlimited to tmpfs)".into(),
        )?;
        check(self.output_limit_bytes >= 1, "output_limit_bytes", "must be at least 1".into())?;
        check(self.max_code_bytes >= 1, "max_code_bytes", "must be at least 1".into())?;
        check(
            (1..=MAX_RESULT_BYTES).contains(&self.max_result_bytes),
            "max_result_bytes",
            format!("must be between 1 and {MAX_RESULT_BYTES} (64 MiB)"),
        )?;
        check(self.max_concurrent_runs >= 1, "max_concurrent_runs", "must be at least 1".into())?;
        check(
            within(self.node_heartbeat_secs, 0.1, 3600.0),
            "node_heartbeat_secs",
            "must be between 0.1 and 3600".into(),
        )?;
        nodes::check(&self.nodes)?;
        check(
            secs(self.body_read_timeout_secs, MAX_SECS),
            "body_read_timeout_secs",
            format!("must be above 0 and at most {MAX_SECS}"),
        )?;
        check(
            self.body_min_bytes_per_sec <= MAX_BYTES_PER_SEC,
            "body_min_bytes_per_sec",
            format!("must be at most {MAX_BYTES_PER_SEC} (1 GiB/s; 0 sets no floor)"),
        )?;
        check(
            (1..=MAX_CONNECTIONS).contains(&self.max_connections),
            "max_connections",
            format!("must be between 1 and {MAX_CONNECTIONS}"),
        )?;
        check(self.pool_size <= 256, "pool_size", "must be at most 256 (0 starts a container per run)".into())?;
        check(
            (1..=64).contains(&self.pool_refill_concurrency),
            "pool_refill_concurrency",
            "must be between 1 and 64".into(),
        )?;
        check(
            self.pool_max_age_secs.is_finite() && (1.0..=MAX_SECS).contains(&self.pool_max_age_secs),
            "pool_max_age_secs",
            format!("must be between 1 and {MAX_SECS}"),
        )?;
        check(
            (1..=100_000).contains(&self.recycle_max_runs),
            "recycle_max_runs",
            "must be between 1 and 100000".into(),
        )?;
        check((1..=1024).contains(&self.recycle_max_idle), "recycle_max_idle", "must be between 1 and 1024".into())?;
        check((1..=64).contains(&self.ws_max_runs), "ws_max_runs", "must be between 1 and 64".into())?;
        check(
            (1024..=64 * MIB as usize).contains(&self.ws_max_message_bytes),
            "ws_max_message_bytes",
            "must be between 1024 and 67108864".into(),
        )?;
        check(
            self.ws_ping_secs.is_finite() && (0.1..=3600.0).contains(&self.ws_ping_secs),
            "ws_ping_secs",
            "must be between 0.1 and 3600".into(),
        )?;
        let upload = |value: u64| (1..=MAX_UPLOAD_BYTES).contains(&value);
        check(
            upload(self.upload_max_file_bytes),
            "upload_max_file_bytes",
            format!("must be between 1 and {MAX_UPLOAD_BYTES} (1 TiB)"),
        )?;
        check(
            upload(self.upload_max_request_bytes),
            "upload_max_request_bytes",
            format!("must be between 1 and {MAX_UPLOAD_BYTES} (1 TiB)"),
        )?;
        check(
            (1..=1024 * MAX_UPLOAD_BYTES).contains(&self.upload_max_total_bytes),
            "upload_max_total_bytes",
            "must be between 1 and 1 PiB".into(),
        )?;
        check(
            self.artifacts_max_files <= MAX_ARTIFACT_FILES,
            "artifacts_max_files",
            format!("must be at most {MAX_ARTIFACT_FILES} (0 returns no artifacts)"),
        )?;
        check(
            self.artifacts_max_bytes <= MAX_UPLOAD_BYTES,
            "artifacts_max_bytes",
            format!("must be at most {MAX_UPLOAD_BYTES} (1 TiB; 0 returns no artifacts)"),
        )?;
        check(
            self.artifacts_max_total_bytes <= 1024 * MAX_UPLOAD_BYTES,
            "artifacts_max_total_bytes",
            "must be at most 1 PiB".into(),
        )?;
        check(
            self.artifacts_retention_hours.is_finite() && (0.0..=1e6).contains(&self.artifacts_retention_hours),
            "artifacts_retention_hours",
            "must be between 0 (keep for ever) and 1000000".into(),
        )?;
        check(
            self.trace_retention_days.is_finite() && (0.0..=MAX_RETENTION_DAYS).contains(&self.trace_retention_days),
            "trace_retention_days",
            format!("must be between 0 (keep for ever) and {MAX_RETENTION_DAYS}"),
        )?;
        check(
            self.trace_max_count <= MAX_TRACE_COUNT,
            "trace_max_count",
            format!("must be at most {MAX_TRACE_COUNT} (0: no cap)"),
        )?;
        check(
            self.anthropic_base_url.starts_with("http://") || self.anthropic_base_url.starts_with("https://"),
            "anthropic_base_url",
            "must be an http:// or https:// URL without /v1, e.g. https://api.anthropic.com".into(),
        )?;
        check(self.claude_max_tokens >= 1, "claude_max_tokens", "must be at least 1".into())?;
        check(self.claude_max_retries <= 10, "claude_max_retries", "must be at most 10".into())?;
        check(self.claude_max_blocks <= 100, "claude_max_blocks", "must be at most 100 (0 runs none)".into())?;
        for (value, key) in [
            (self.claude_retry_budget_secs, "claude_retry_budget_secs"),
            (self.claude_connect_timeout_secs, "claude_connect_timeout_secs"),
            (self.claude_read_timeout_secs, "claude_read_timeout_secs"),
            (self.claude_timeout_secs, "claude_timeout_secs"),
        ] {
            check(secs(value, MAX_SECS), key, format!("must be above 0 and at most {MAX_SECS}"))?;
        }
        // Parsed as the guard parses them, so an entry accepted here is one it can match.
        if let Some(origin) = self.allowed_origins.iter().find(|origin| WebOrigin::parse(origin).is_none()) {
            check(
                false,
                "allowed_origins",
                format!("{origin:?} is not an origin; write http(s)://host[:port], e.g. https://ide.example.com"),
            )?;
        }
        if let Some(host) = self.allowed_hosts.iter().find(|host| Authority::parse(host).is_none()) {
            check(
                false,
                "allowed_hosts",
                format!(
                    "{host:?} is not host[:port]; write it without a scheme or path, e.g. tracebox.example.com:5000"
                ),
            )?;
        }
        check(
            (1..=365 * 86_400).contains(&self.token_max_ttl_secs),
            "token_max_ttl_secs",
            "must be 1 to 31536000 (a year)".into(),
        )?;
        check(
            (1..=self.token_max_ttl_secs).contains(&self.token_ttl_secs),
            "token_ttl_secs",
            "must be 1 to token_max_ttl_secs".into(),
        )?;
        check(
            (60..=self.token_max_ttl_secs).contains(&self.session_ttl_secs),
            "session_ttl_secs",
            "must be 60 to token_max_ttl_secs".into(),
        )?;
        check(
            self.token_secret.as_ref().is_none_or(|secret| secret.expose().len() >= 32),
            "token_secret",
            "must be at least 32 bytes; or leave it unset and a random one is kept in the data directory".into(),
        )?;
        check(
            is_runtime_name(&self.runtime),
            "runtime",
            format!(
                "{:?} is not a runtime name: 1 to 64 letters, digits, `-`, `_` or `.` (e.g. runc, runsc)",
                self.runtime
            ),
        )?;
        check(
            self.runtime != "runsc" || self.pids_limit >= MIN_RUNSC_PIDS,
            "pids_limit",
            format!(
                "must be at least {MIN_RUNSC_PIDS} under runtime runsc: gVisor's own threads (about 50) count against it"
            ),
        )?;
        check(
            secs(self.queue_timeout_secs, MAX_SECS),
            "queue_timeout_secs",
            format!("must be above 0 and at most {MAX_SECS}"),
        )
    }

    /// How often an idle WebSocket is pinged.
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs_f64(self.ws_ping_secs)
    }

    /// Where uploaded files live.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }

    /// How long traces are kept; None: for ever.
    pub fn trace_retention(&self) -> Option<Duration> {
        (self.trace_retention_days > 0.0).then(|| Duration::from_secs_f64(self.trace_retention_days * 86_400.0))
    }

    /// Most traces kept; None: no cap.
    pub fn trace_cap(&self) -> Option<u64> {
        (self.trace_max_count > 0).then_some(self.trace_max_count)
    }

    /// Where the trace database and the boot locks live.
    pub fn traces_dir(&self) -> PathBuf {
        self.data_dir.join("traces")
    }

    /// Where sandboxes' snapshots are kept.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// Scratch space for the clones of sandboxes' repositories.
    pub fn clones_dir(&self) -> PathBuf {
        self.data_dir.join("clones")
    }

    /// The longest pause between two chunks of a request body.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_read_timeout_secs)
    }
}

/// Is `name` one a Docker runtime may have (as daemon.json's `runtimes` keys are written)? It
/// lands in every container's create request and in messages, so nothing else gets through.
pub(crate) fn is_runtime_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The least pids limit under gVisor: its sandbox takes about 50 of the host's tasks at rest
/// (its kernel's and file server's threads), and a container below this does not start.
const MIN_RUNSC_PIDS: i64 = 64;
/// The largest memory limit accepted (1 TiB): beyond it, a typo.
const MAX_MEMORY_MB: u64 = 1024 * 1024;
/// The largest upload limit accepted (1 TiB): beyond it, a typo.
const MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * MIB;
/// The most artifacts a run may be allowed to return: beyond it, a typo.
const MAX_ARTIFACT_FILES: usize = 100_000;
/// The highest floor on a body's pace (1 GiB/s): beyond it, a typo.
const MAX_BYTES_PER_SEC: u64 = 1024 * MIB;
/// Largest handler result a server may allow: it is held in memory, replied whole and kept in
/// its trace.
const MAX_RESULT_BYTES: u64 = 64 * MIB;
/// The most connections accepted (a million): beyond it, a typo.
const MAX_CONNECTIONS: usize = 1_000_000;
/// The longest trace retention accepted (a century): beyond it, a typo.
const MAX_RETENTION_DAYS: f64 = 36_500.0;
/// The largest cap on traces accepted (a trillion): beyond it, a typo.
const MAX_TRACE_COUNT: u64 = 1_000_000_000_000;
/// The longest timeout accepted (a day): beyond it, a typo.
const MAX_SECS: f64 = 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Config,
    }

    fn load(args: &[&str], file: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracebox.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        // The environment of whoever runs the tests must not change what the tests see.
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(std::iter::once("tracebox").chain(args.iter().copied()))?;
        Config::load(&matches, file.map(|_| path.as_path()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::defaults();
        assert_eq!(config.addr.to_string(), "127.0.0.1:5000");
        assert_eq!(config.data_dir, PathBuf::from("."));
        assert_eq!(config.output_limit_bytes, 1024 * 1024);
        assert_eq!(config.max_result_bytes, 1024 * 1024);
        assert_eq!(config.default_timeout_secs, 10.0);
        assert_eq!(config.upload_max_file_bytes, 100 * MIB);
        assert_eq!(config.upload_max_request_bytes, 256 * MIB);
        assert_eq!(config.upload_max_total_bytes, 4096 * MIB);
        assert_eq!(config.body_read_timeout(), Duration::from_secs(10));
        assert_eq!(config.body_min_bytes_per_sec, 1024);
        assert_eq!(config.max_connections, 512);
        assert_eq!(config.trace_retention(), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(config.trace_cap(), Some(1_000_000));
        assert!(config.policy.is_none());
    }

    #[test]
    fn the_base_image_is_unset_unless_a_setting_names_it() {
        assert_eq!(Config::defaults().base_image, None, "unset: the sandbox chooses (sandbox::image::choose_base)");
        let from_file = load(&[], Some("base_image = \"my/base:1\"\n")).unwrap();
        assert_eq!(from_file.base_image.as_deref(), Some("my/base:1"));
        let from_flag = load(&["--base-image", "flag/base:2"], Some("base_image = \"my/base:1\"\n")).unwrap();
        assert_eq!(from_flag.base_image.as_deref(), Some("flag/base:2"));
    }

    #[test]
    fn the_runtime_is_runc_unless_a_setting_names_another_and_its_name_is_checked() {
        assert_eq!(Config::defaults().runtime, "runc");
        assert_eq!(load(&[], Some("runtime = \"runsc\"\n")).unwrap().runtime, "runsc");
        assert_eq!(load(&["--runtime", "kata-runtime.v2_x"], None).unwrap().runtime, "kata-runtime.v2_x");
        for bad in ["", "run sc", "runsc;rm", "../runsc", "r\u{e9}sc", &"r".repeat(65)] {
            let error = load(&["--runtime", bad], None).unwrap_err().to_string();
            assert!(error.contains("`runtime`") && error.contains("TRACEBOX_RUNTIME"), "{bad:?}: {error}");
        }
        let error = load(&["--runtime", "runsc", "--pids-limit", "63"], None).unwrap_err().to_string();
        assert!(error.contains("`pids_limit`") && error.contains("runsc"), "{error}");
        assert!(load(&["--runtime", "runsc", "--pids-limit", "64"], None).is_ok());
        assert!(load(&["--runtime", "runc", "--pids-limit", "8"], None).is_ok());
    }

    #[test]
    fn the_file_fills_in_what_flags_leave_at_default() {
        let config = load(&["--max-timeout-secs", "30"], Some("max_timeout_secs = 99.0\ncpus = 0.5\n")).unwrap();
        assert_eq!(config.max_timeout_secs, 30.0, "a flag beats the file");
        assert_eq!(config.cpus, 0.5, "the file beats the default");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let error = load(&[], Some("max_timeout = 5\n")).unwrap_err().to_string();
        assert!(error.contains("unknown setting `max_timeout`"), "{error}");
    }

    #[test]
    fn a_renamed_setting_under_its_old_name_stops_start_up_naming_the_new_one() {
        let error = load(&[], Some("ws_allowed_origins = [\"https://a.example\"]\n")).unwrap_err().to_string();
        assert!(error.contains("`ws_allowed_origins`") && error.contains("`allowed_origins`"), "{error}");
        let error = renamed(|key| key == "ws_allowed_origins").unwrap_err().to_string();
        assert!(error.contains("TRACEBOX_WS_ALLOWED_ORIGINS") && error.contains("TRACEBOX_ALLOWED_ORIGINS"), "{error}");
        assert!(renamed(|_| false).is_ok());
    }

    #[test]
    fn a_value_of_the_wrong_type_in_the_file_is_named() {
        let error = load(&[], Some("pids_limit = \"many\"\n")).unwrap_err().to_string();
        assert!(error.contains("pids_limit"), "{error}");
    }

    #[test]
    fn settings_out_of_bounds_stop_start_up_naming_the_setting() {
        for (flag, value, key) in [
            ("--max-timeout-secs", "1e12", "max_timeout_secs"),
            ("--tmp-size-mb", "0", "tmp_size_mb"),
            ("--workspace-size-mb", "0", "workspace_size_mb"),
            ("--nofile-limit", "0", "nofile_limit"),
            ("--file-size-limit-mb", "0", "file_size_limit_mb"),
            ("--max-concurrent-runs", "0", "max_concurrent_runs"),
            ("--cpus", "NaN", "cpus"),
            ("--queue-timeout-secs", "0", "queue_timeout_secs"),
            ("--ws-max-runs", "0", "ws_max_runs"),
            ("--ws-max-runs", "65", "ws_max_runs"),
            ("--ws-max-message-bytes", "1023", "ws_max_message_bytes"),
            ("--ws-ping-secs", "0", "ws_ping_secs"),
            ("--allowed-origins", "https://a.example/path", "allowed_origins"),
            ("--allowed-origins", "a.example", "allowed_origins"),
            ("--allowed-origins", "null", "allowed_origins"),
            ("--allowed-hosts", "http://a.example", "allowed_hosts"),
            ("--allowed-hosts", "a.example:http", "allowed_hosts"),
            ("--allowed-hosts", "a.example, b.example", "allowed_hosts"),
            ("--upload-max-file-bytes", "0", "upload_max_file_bytes"),
            ("--upload-max-request-bytes", "0", "upload_max_request_bytes"),
            ("--upload-max-request-bytes", "1099511627777", "upload_max_request_bytes"),
            ("--upload-max-total-bytes", "0", "upload_max_total_bytes"),
            ("--upload-max-total-bytes", "1125899906842625", "upload_max_total_bytes"),
            ("--artifacts-max-files", "100001", "artifacts_max_files"),
            ("--artifacts-max-bytes", "1099511627777", "artifacts_max_bytes"),
            ("--body-read-timeout-secs", "0", "body_read_timeout_secs"),
            ("--body-read-timeout-secs", "NaN", "body_read_timeout_secs"),
            ("--body-min-bytes-per-sec", "1073741825", "body_min_bytes_per_sec"),
            ("--max-connections", "0", "max_connections"),
            ("--trace-retention-days", "36501", "trace_retention_days"),
            ("--trace-retention-days", "NaN", "trace_retention_days"),
            ("--trace-max-count", "1000000000001", "trace_max_count"),
        ] {
            let error = load(&[flag, value], None).unwrap_err().to_string();
            let env = format!("TRACEBOX_{}", key.to_uppercase());
            assert!(error.contains(&format!("`{key}`")) && error.contains(&env), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn websocket_and_browser_settings_at_their_bounds_are_accepted() {
        let config = load(
            &[
                "--ws-max-runs",
                "64",
                "--ws-max-message-bytes",
                "1024",
                "--allowed-origins",
                "https://a.example,http://b:8080",
                "--allowed-hosts",
                "tracebox.example,[::1]:8080",
            ],
            None,
        )
        .unwrap();
        assert_eq!(config.ws_max_runs, 64);
        assert_eq!(config.allowed_origins, ["https://a.example", "http://b:8080"]);
        assert_eq!(config.allowed_hosts, ["tracebox.example", "[::1]:8080"]);
        assert!(load(&["--ws-max-runs", "1"], None).is_ok());
    }

    #[test]
    fn a_default_above_its_maximum_stops_start_up() {
        let error = load(&["--default-timeout-secs", "90"], None).unwrap_err().to_string();
        assert!(error.contains("default_timeout_secs") && error.contains("TRACEBOX_DEFAULT_TIMEOUT_SECS"), "{error}");
    }

    #[test]
    fn trace_retention_of_zero_keeps_everything_and_its_bounds_are_accepted() {
        let config = load(&["--trace-retention-days", "0", "--trace-max-count", "0"], None).unwrap();
        assert_eq!((config.trace_retention(), config.trace_cap()), (None, None));
        let config = load(&["--trace-retention-days", "36500", "--trace-max-count", "1000000000000"], None).unwrap();
        assert_eq!(config.trace_retention(), Some(Duration::from_secs(36_500 * 86_400)));
        assert_eq!(config.trace_cap(), Some(1_000_000_000_000));
        let error = load(&["--trace-retention-days=-1"], None).unwrap_err().to_string();
        assert!(error.contains("trace_retention_days") && error.contains("TRACEBOX_TRACE_RETENTION_DAYS"), "{error}");
    }

    #[test]
    fn nodes_come_from_the_file_with_their_labels_tls_and_capacity() {
        let file = r#"
            placement = "round_robin"
            max_concurrent_runs = 3

            [[nodes]]
            name = "local"
            docker_host = "unix:///var/run/docker.sock"
            labels = { zone = "home" }

            [[nodes]]
            name = "cloud-1"
            docker_host = "tcp://10.0.0.7:2376"
            tls_ca = "/etc/hostname"
            tls_cert = "/etc/hostname"
            tls_key = "/etc/hostname"
            max_concurrent_runs = 16
        "#;
        let config = load(&[], Some(file)).unwrap();
        let settings = config.nodes_settings();
        assert_eq!(settings.strategy, Strategy::RoundRobin);
        let names: Vec<&str> = settings.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["local", "cloud-1"]);
        assert_eq!(settings.nodes[0].labels.get("zone").map(String::as_str), Some("home"));
        assert_eq!(settings.nodes[0].max_concurrent_runs, 3, "unset: max_concurrent_runs");
        assert_eq!(settings.nodes[1].sandbox.docker_host.as_deref(), Some("tcp://10.0.0.7:2376"));
        assert!(settings.nodes[1].sandbox.tls.is_some());
        assert_eq!(config.runs_at_once(), 19, "the nodes' capacities add up");
        let none = Config::defaults().nodes_settings();
        assert_eq!((none.nodes.len(), none.nodes[0].name.as_str()), (1, LOCAL_NODE));
        let twice = "[[nodes]]\nname = \"a\"\ndocker_host = \"unix:///x\"\n[[nodes]]\nname = \"a\"\ndocker_host = \"unix:///y\"\n";
        let error = load(&[], Some(twice)).unwrap_err().to_string();
        assert!(error.contains("two nodes are named \"a\""), "{error}");
        let typo = "[[nodes]]\nname = \"a\"\ndocker_hots = \"unix:///x\"\n";
        assert!(load(&[], Some(typo)).unwrap_err().to_string().contains("docker_hots"));
    }

    #[test]
    fn the_example_config_file_parses_and_matches_the_defaults() {
        let example = include_str!("../config.example.toml");
        let config = load(&[], Some(example)).unwrap();
        assert_eq!(config, Config { policy: config.policy.clone(), ..Config::defaults() });
    }

    #[test]
    fn the_example_config_file_names_every_setting() {
        let example = include_str!("../config.example.toml");
        for arg in Config::bare_command().get_arguments() {
            let key = arg.get_id().as_str();
            let named = example.lines().any(|line| line.trim_start_matches("# ").starts_with(&format!("{key} = ")));
            assert!(named, "config.example.toml lacks {key}");
        }
    }

    #[test]
    fn the_configuration_reference_documents_every_setting() {
        let reference = include_str!("../docs/configuration.md");
        for arg in Config::bare_command().get_arguments() {
            let env = arg.get_env().expect("every setting has an env variable").to_string_lossy();
            // A row of the table, not a mention elsewhere.
            assert!(
                reference.contains(&format!("\n| `{env}` |")),
                "docs/configuration.md's settings table lacks {env}"
            );
        }
    }

    #[test]
    fn the_defaults_other_modules_test_with_are_the_shipped_ones() {
        let config = Config::defaults();
        assert_eq!(config.request_limits(), crate::submission::RequestLimits::defaults());
        assert_eq!(config.claude_settings().calls, crate::claude::CallSettings::defaults());
    }

    #[test]
    fn run_limits_accept_the_maximum_and_refuse_above_it() {
        let config = Config::defaults();
        let limits = config.request_limits();
        let at_edge = limits.run_limits(Some(config.max_timeout_secs), Some(config.max_memory_mb)).unwrap();
        assert_eq!(at_edge.timeout, Duration::from_secs_f64(config.max_timeout_secs));
        assert_eq!(at_edge.memory_bytes, config.max_memory_mb * MIB);

        let over = limits.run_limits(Some(config.max_timeout_secs + 0.5), None).unwrap_err();
        assert_eq!(over.field, "timeout");
        assert!(over.message.contains("TRACEBOX_MAX_TIMEOUT_SECS"));
        let over = limits.run_limits(None, Some(config.max_memory_mb + 1)).unwrap_err();
        assert_eq!(over.field, "memory_mb");
    }

    #[test]
    fn run_limits_refuse_nonsense() {
        let limits = Config::defaults().request_limits();
        for timeout in [0.0, 1e-300, MIN_TIMEOUT_SECS / 2.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(limits.run_limits(Some(timeout), None).unwrap_err().field, "timeout");
        }
        assert_eq!(limits.run_limits(None, Some(MIN_MEMORY_MB - 1)).unwrap_err().field, "memory_mb");
        assert!(limits.run_limits(None, Some(MIN_MEMORY_MB)).is_ok());
    }
}
