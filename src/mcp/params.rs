//! Each MCP tool's arguments. The doc comments are the JSON schema's descriptions, the only
//! thing a model reads before calling: each says what to pass and what happens by default.

use std::collections::BTreeMap;

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Execute {
    /// The program's source code.
    pub code: String,
    /// `python` (the default) or `node`.
    pub language: Option<String>,
    /// Text fed to the program's standard input.
    pub stdin: Option<String>,
    /// Seconds before the program is stopped (default: the server's, usually 10).
    pub timeout: Option<f64>,
    /// Handler mode: the name of a function the code defines, `handler(event, context)` (Python)
    /// or `exports.handler = async (event, context) => …` (Node), called with `event`; the
    /// result is what it returns (JSON), or the error it raised.
    pub handler: Option<String>,
    /// The event a handler is called with (any JSON; null when not given).
    pub event: Option<Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateSandbox {
    /// `python` (the default) or `node`: the language of `run_code` cells. Commands run in bash either way.
    pub language: Option<String>,
    /// A git repository the server clones into /workspace (with its history): `url` is an
    /// absolute path on the server, or a file://, https:// or ssh:// URL; `commit` a commit id,
    /// branch or tag (default HEAD).
    pub repo: Option<Repo>,
    /// Commands run in order after the repository is in, before the sandbox is handed over
    /// (e.g. `pip install -e .`); the first that fails fails the creation.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Idle seconds before the sandbox is removed (or, with `keep`, paused); default the server's.
    pub timeout: Option<f64>,
    /// Labels to find it by with `list_sandboxes`, e.g. {"task": "fix-parser"}.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Keep the sandbox after this MCP session ends (default false: it is closed with the
    /// session, and removed at its idle timeout if the session never ends cleanly).
    #[serde(default)]
    pub keep: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Repo {
    /// Absolute path on the server, or a file://, https:// or ssh:// URL.
    pub url: String,
    /// Commit id, branch or tag to check out (default HEAD).
    pub commit: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunCode {
    /// The sandbox, as `create_sandbox` returned it (sbx_…).
    pub sandbox_id: String,
    /// A cell of code for the sandbox's interpreter: variables, imports and functions persist
    /// between cells, like a notebook; the last expression's value comes back as `result`.
    pub code: String,
    /// Seconds before the cell is interrupted (default: the server's).
    pub timeout: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunCommand {
    /// The sandbox, as `create_sandbox` returned it (sbx_…).
    pub sandbox_id: String,
    /// A bash command line, run as `bash -c` (pipes, &&, redirections work); processes it
    /// starts in the background end with it.
    pub command: String,
    /// Working directory (default /workspace).
    pub cwd: Option<String>,
    /// Text fed to the command's standard input.
    pub stdin: Option<String>,
    /// Seconds before the command is killed (default: the server's).
    pub timeout: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadFile {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// A path relative to /workspace, or absolute inside it.
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteFile {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// A path relative to /workspace, or absolute inside it; parent directories are made and
    /// an existing file is replaced.
    pub path: String,
    /// The whole new content of the file, as text.
    pub content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListFiles {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// The directory to list, relative to /workspace (default: /workspace itself).
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteTool {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// The agent tool: `file_read` {path, start_line, end_line}, `file_write` {path, content},
    /// `shell` {command, timeout}, `search` {pattern, path, glob} (ripgrep) or `git` {args:
    /// ["diff"]} (status, diff, log, show, add, commit, checkout, reset, branch, rev-parse).
    /// Each call is a step of the sandbox's trajectory, which `replay_trajectory` replays.
    pub tool: String,
    /// The tool's params, e.g. {"command": "pytest -q"} for `shell`.
    #[serde(default)]
    pub params: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SnapshotSandbox {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// A label for the snapshot.
    pub label: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ResetSandbox {
    /// The sandbox (sbx_…).
    pub sandbox_id: String,
    /// The snapshot to go back to (default: the state right after creation, repository and
    /// setup included). The interpreter restarts either way.
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplayTrajectory {
    /// The sandbox to replay in (sbx_…).
    pub sandbox_id: String,
    /// A trajectory {"steps": [{"tool_name", "params", "output", "exit_code"}, …]} as a
    /// sandbox's trajectory reads; omit it to replay this sandbox's own tool calls.
    pub trajectory: Option<Value>,
    /// Reset the sandbox to its creation state first (default true).
    pub reset: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CloseSandbox {
    /// The sandbox to remove (sbx_…); its trace stays.
    pub sandbox_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListSandboxes {
    /// Only sandboxes in this state: `running` or `paused`.
    pub status: Option<String>,
    /// Only sandboxes carrying every one of these labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchTraces {
    /// Text to find in the code or the output of a trace (any substring of three characters or more).
    pub q: Option<String>,
    /// Only traces of this kind: execution (a one-shot run), sandbox, command, cell, tool,
    /// sandbox_op (file, snapshot, reset…), replay, claude, batch, upload or download.
    pub kind: Option<String>,
    /// Only traces in this state: running, success, error (non-zero exit), timeout, oom,
    /// killed, output_limit, blocked or internal_error.
    pub status: Option<String>,
    /// Only traces in this language: python or node.
    pub language: Option<String>,
    /// How many, newest first (1–500, default 20).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetTrace {
    /// The trace id (a UUID), as a tool's result or `search_traces` gave it.
    pub trace_id: String,
}
