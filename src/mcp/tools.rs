//! The fifteen MCP tools. Each is a translation: its params into one request of the HTTP API
//! (two for a replay of the sandbox's own trajectory), the reply into text and structured
//! content (`render.rs`). Nothing here runs code or touches a sandbox itself.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{tool, tool_router};
use serde_json::{Value, json};

use super::Tracebox;
use super::client::{ClientError, encode, query};
use super::params;
use super::render::{self, Run, Sandbox, Trace, TracePage, answer, decode, failed, unreadable};

/// The most images of one run sent back as image content, and the largest: a model's context
/// is not a file store (the rest are listed with their URLs).
const MAX_IMAGES: usize = 4;
const MAX_IMAGE_BYTES: u64 = 4 * 1024 * 1024;

/// A JSON object without its null fields: the API's defaults apply to what a call left out.
fn body(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

fn sandbox_path(id: &str, rest: &str) -> String {
    format!("/sandboxes/{}{rest}", encode(id))
}

#[tool_router(vis = "pub(super)")]
impl Tracebox {
    #[tool(description = "Run a program once in a fresh, hardened sandbox (no network) and get its \
        stdout, stderr, exit code and trace id. A non-zero exit is a normal result; code the security \
        policy refuses, or a run stopped by its timeout or memory limit, is an error saying why. Images \
        the program writes under /workspace/out/ (png, jpeg, gif, webp) come back as images.")]
    async fn execute(&self, Parameters(p): Parameters<params::Execute>) -> CallToolResult {
        let request = body(json!({
            "code": p.code, "language": p.language, "stdin": p.stdin, "timeout": p.timeout,
            "handler": p.handler, "event": p.event,
        }));
        self.run("POST /execute", self.client.post("/execute", &request).await, true).await
    }

    #[tool(description = "Create a stateful sandbox: a hardened container (no network) with a \
        persistent /workspace, for run_command, run_code, the file tools and execute_tool. Optionally \
        clone a git repository into /workspace and run setup commands. Returns its sandbox_id. It is \
        closed when this MCP session ends unless keep is true, and removed when idle past its timeout.")]
    async fn create_sandbox(&self, Parameters(p): Parameters<params::CreateSandbox>) -> CallToolResult {
        let repo = p.repo.map(|repo| body(json!({"url": repo.url, "commit": repo.commit})));
        // A sandbox this session owns is killed, not paused, at its idle timeout: should the
        // session's end go unseen (a killed process), nothing is left waiting forever.
        let on_timeout = (!p.keep).then_some("kill");
        let request = body(json!({
            "language": p.language, "repo": repo, "setup": p.setup, "timeout": p.timeout,
            "metadata": p.metadata, "on_timeout": on_timeout,
        }));
        let reply = match self.client.post("/sandboxes", &request).await {
            Ok(reply) => reply,
            Err(error) => return failed(&error),
        };
        let sandbox: Sandbox = match decode(&reply) {
            Ok(sandbox) => sandbox,
            Err(error) => return unreadable("create_sandbox", &error, reply),
        };
        let lasts = if p.keep {
            "kept after this MCP session ends (close it with close_sandbox)"
        } else {
            self.owned.own(&sandbox.sandbox_id);
            "closed when this MCP session ends (keep: true to keep it)"
        };
        answer(format!("{}{lasts}\n", sandbox.text()), reply, false)
    }

    #[tool(description = "Run a cell of code in a sandbox's persistent interpreter (Python or Node, \
        as the sandbox was created): variables, imports and functions stay between calls, like a \
        notebook. Returns the output, the last expression's value (result) and any exception with \
        its traceback (a normal result), and the trace id.")]
    async fn run_code(&self, Parameters(p): Parameters<params::RunCode>) -> CallToolResult {
        let request = body(json!({"code": p.code, "timeout": p.timeout}));
        let reply = self.client.post(&sandbox_path(&p.sandbox_id, "/code"), &request).await;
        self.run("run_code", reply, false).await
    }

    #[tool(description = "Run a bash command line in a sandbox (in /workspace unless cwd says \
        otherwise). Returns stdout, stderr, the exit code and the trace id; a non-zero exit is a \
        normal result. Commands the security policy refuses are an error naming the rule.")]
    async fn run_command(&self, Parameters(p): Parameters<params::RunCommand>) -> CallToolResult {
        let request = body(json!({"cmd": p.command, "cwd": p.cwd, "stdin": p.stdin, "timeout": p.timeout}));
        let reply = self.client.post(&sandbox_path(&p.sandbox_id, "/commands"), &request).await;
        self.run("run_command", reply, false).await
    }

    #[tool(description = "Read a file of a sandbox's /workspace. Text comes back as text (secrets \
        redacted, as in all output); an image as an image; other binary files are described, not shown.")]
    async fn read_file(&self, Parameters(p): Parameters<params::ReadFile>) -> CallToolResult {
        let path =
            format!("{}{}", sandbox_path(&p.sandbox_id, "/files/content"), query(&[("path", Some(p.path.clone()))]));
        match self.client.download(&path).await {
            Ok(file) => render::file(&p.path, &file),
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "Write a text file in a sandbox's /workspace, replacing it if it exists \
        and making its parent directories. Returns the file's entry (path, size).")]
    async fn write_file(&self, Parameters(p): Parameters<params::WriteFile>) -> CallToolResult {
        let path =
            format!("{}{}", sandbox_path(&p.sandbox_id, "/files/content"), query(&[("path", Some(p.path.clone()))]));
        match self.client.put(&path, p.content.into_bytes()).await {
            Ok(reply) => {
                let size = reply["entry"]["size"].as_u64().unwrap_or_default();
                answer(format!("wrote {} ({size} bytes)\n", p.path), reply, false)
            }
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "List a directory of a sandbox's /workspace: each entry's type, size and path.")]
    async fn list_files(&self, Parameters(p): Parameters<params::ListFiles>) -> CallToolResult {
        let path = format!("{}{}", sandbox_path(&p.sandbox_id, "/files"), query(&[("path", p.path)]));
        match self.client.get(&path).await {
            Ok(reply) => answer(render::entries(&reply), reply, false),
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "Call an agent tool in a sandbox: file_read, file_write, shell, search or \
        git. Each call is recorded as a step of the sandbox's trajectory (replay_trajectory replays \
        them). Returns the tool's output, exit code, success and error, and the trace id; a tool \
        that ran and failed is a normal result with success false.")]
    async fn execute_tool(&self, Parameters(p): Parameters<params::ExecuteTool>) -> CallToolResult {
        let path = sandbox_path(&p.sandbox_id, &format!("/tools/{}", encode(&p.tool)));
        match self.client.post(&path, &Value::Object(p.params)).await {
            Ok(reply) => answer(render::tool_call(&p.tool, &reply), reply, false),
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "Snapshot a sandbox's /workspace as it is now; reset_sandbox can go back \
        to it. Returns the snapshot_id.")]
    async fn snapshot_sandbox(&self, Parameters(p): Parameters<params::SnapshotSandbox>) -> CallToolResult {
        let request = body(json!({"label": p.label}));
        match self.client.post(&sandbox_path(&p.sandbox_id, "/snapshots"), &request).await {
            Ok(reply) => {
                let text = format!(
                    "snapshot_id: {}\nbytes (compressed): {}\n(recorded as a step of sandbox {})\n",
                    reply["snapshot_id"].as_str().unwrap_or("?"),
                    reply["bytes"],
                    p.sandbox_id
                );
                answer(text, reply, false)
            }
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "Reset a sandbox's /workspace to a snapshot (default: its state right \
        after creation, repository and setup included), with a fresh interpreter. The trajectory \
        is kept. Returns the sandbox.")]
    async fn reset_sandbox(&self, Parameters(p): Parameters<params::ResetSandbox>) -> CallToolResult {
        let request = body(json!({"snapshot_id": p.snapshot_id}));
        let reply = self.client.post(&sandbox_path(&p.sandbox_id, "/reset"), &request).await;
        self.sandbox("reset_sandbox", reply, "reset: /workspace is as the snapshot holds it, with a new interpreter\n")
    }

    #[tool(description = "Replay a trajectory of agent tool calls in a sandbox (by default its \
        own, after a reset to its creation state) and compare each step's output and exit code with \
        the recorded ones. Returns success, divergence_step (-1 when none diverged) and each step.")]
    async fn replay_trajectory(&self, Parameters(p): Parameters<params::ReplayTrajectory>) -> CallToolResult {
        let trajectory = match p.trajectory {
            Some(trajectory) => trajectory,
            None => match self.client.get(&sandbox_path(&p.sandbox_id, "/trajectory")).await {
                Ok(own) => own,
                Err(error) => return failed(&error),
            },
        };
        let request = body(json!({"trajectory": trajectory, "reset": p.reset}));
        match self.client.post(&sandbox_path(&p.sandbox_id, "/replay"), &request).await {
            Ok(reply) => answer(render::replay(&reply), reply, false),
            Err(error) => failed(&error),
        }
    }

    #[tool(description = "Close (kill and remove) a sandbox; its trace and steps stay readable.")]
    async fn close_sandbox(&self, Parameters(p): Parameters<params::CloseSandbox>) -> CallToolResult {
        match self.client.delete(&sandbox_path(&p.sandbox_id, "")).await {
            Ok(()) => {
                self.owned.forget(&p.sandbox_id);
                answer(format!("closed {}\n", p.sandbox_id), json!({"closed": p.sandbox_id}), false)
            }
            Err(error) => failed(&error),
        }
    }

    #[tool(
        description = "List the server's sandboxes, newest first, optionally by status \
        (running, paused) or metadata labels: id, status, language, steps, expiry.",
        annotations(read_only_hint = true)
    )]
    async fn list_sandboxes(&self, Parameters(p): Parameters<params::ListSandboxes>) -> CallToolResult {
        let mut pairs = vec![("status".to_owned(), p.status)];
        pairs.extend(p.metadata.into_iter().map(|(k, v)| (format!("metadata.{k}"), Some(v))));
        let pairs: Vec<(&str, Option<String>)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        match self.client.get(&format!("/sandboxes{}", query(&pairs))).await {
            Ok(reply) => match decode::<render::SandboxList>(&reply) {
                Ok(list) => answer(list.text(), reply, false),
                Err(error) => unreadable("list_sandboxes", &error, reply),
            },
            Err(error) => failed(&error),
        }
    }

    #[tool(
        description = "Search the traces of everything that ran on this server (runs, sandbox \
        commands and cells, tool calls, file operations…), newest first: by text in the code or \
        output, kind, status or language. Each line gives a trace id for get_trace.",
        annotations(read_only_hint = true)
    )]
    async fn search_traces(&self, Parameters(p): Parameters<params::SearchTraces>) -> CallToolResult {
        let limit = Some(p.limit.unwrap_or(20).to_string());
        let filter = query(&[
            ("format", Some("json".to_owned())),
            ("q", p.q),
            ("kind", p.kind),
            ("status", p.status),
            ("language", p.language),
            ("limit", limit),
        ]);
        match self.client.get(&format!("/traces{filter}")).await {
            Ok(reply) => match decode::<TracePage>(&reply) {
                Ok(page) => answer(page.text(), reply, false),
                Err(error) => unreadable("search_traces", &error, reply),
            },
            Err(error) => failed(&error),
        }
    }

    #[tool(
        description = "Read one trace: what ran (code, command, tool params), how it ended \
        (status, exit code, output, policy hits, redactions), when, its parent and its children \
        (a sandbox's steps).",
        annotations(read_only_hint = true)
    )]
    async fn get_trace(&self, Parameters(p): Parameters<params::GetTrace>) -> CallToolResult {
        match self.client.get(&format!("/trace/{}?format=json", encode(&p.trace_id))).await {
            Ok(reply) => match decode::<Trace>(&reply) {
                Ok(trace) => answer(trace.text(self.client.base()), reply, false),
                Err(error) => unreadable("get_trace", &error, reply),
            },
            Err(error) => failed(&error),
        }
    }
}

impl Tracebox {
    /// A run's or step's reply as a result; with `images`, the images among its artifacts too.
    async fn run(&self, what: &str, reply: Result<Value, ClientError>, images: bool) -> CallToolResult {
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => return failed(&error),
        };
        let run: Run = match decode(&reply) {
            Ok(run) => run,
            Err(error) => return unreadable(what, &error, reply),
        };
        let mut result = answer(run.text(self.client.base()), reply, run.stopped());
        if images {
            result.content.extend(self.images(&run).await);
        }
        result
    }

    /// The images a run left, fetched from their download URLs (each fetch a traced download),
    /// within [`MAX_IMAGES`] and [`MAX_IMAGE_BYTES`]. One that cannot be fetched is left out:
    /// the text lists it with its URL.
    async fn images(&self, run: &Run) -> Vec<ContentBlock> {
        let mut images = Vec::new();
        for artifact in &run.artifacts {
            let Some(mime) = render::image_type(&artifact.name) else { continue };
            if images.len() == MAX_IMAGES || artifact.size > MAX_IMAGE_BYTES {
                continue;
            }
            match self.client.download(&artifact.url).await {
                Ok(file) => images.push(render::image(&file.bytes, mime)),
                Err(error) => tracing::warn!(artifact = %artifact.name, %error, "could not fetch an image artifact"),
            }
        }
        images
    }

    /// A sandbox's reply as a result, after `done`.
    fn sandbox(&self, what: &str, reply: Result<Value, ClientError>, done: &str) -> CallToolResult {
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => return failed(&error),
        };
        match decode::<Sandbox>(&reply) {
            Ok(sandbox) => answer(format!("{done}{}", sandbox.text()), reply, false),
            Err(error) => unreadable(what, &error, reply),
        }
    }
}
