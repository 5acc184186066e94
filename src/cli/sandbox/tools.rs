//! `tracebox sandbox exec ID --tool T --params JSON`, `trajectory ID` and `replay ID FILE`: an
//! agent's tools, its trajectory and the replay of one, from a terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};
use tracebox_model::tool::Trajectory;

use super::{FAILED, Refused, Server, Usage, Verb, encode, read, stdout, table};

#[derive(Args)]
pub(super) struct TrajectoryArgs {
    /// The sandbox's id (sbx_…)
    id: String,
    /// tracebox (what `replay` takes back) or swe-agent (SWE-agent's .traj)
    #[arg(long, value_parser = ["tracebox", "swe-agent"], default_value = "tracebox")]
    format: String,
}

#[derive(Args)]
pub(super) struct ReplayArgs {
    /// The sandbox's id (sbx_…)
    id: String,
    /// A trajectory, as `tracebox sandbox trajectory` prints it, or `-` for stdin
    file: PathBuf,
    /// Replay on /workspace as it is now, not after a reset to the creation state
    #[arg(long)]
    no_reset: bool,
}

/// A tool call's reply.
#[derive(Deserialize)]
struct ToolReply {
    output: String,
    exit_code: Option<i64>,
    error: Option<String>,
    success: bool,
    #[serde(default)]
    truncated: bool,
    trace_id: String,
}

/// A replay's reply (the fields shown).
#[derive(Deserialize)]
struct Replayed {
    success: bool,
    divergence_step: i64,
    trace_id: String,
    steps: Vec<ReplayedStep>,
}

#[derive(Deserialize)]
struct ReplayedStep {
    tool_name: String,
    params: Value,
    diverged: bool,
    compare: bool,
    exit_code: Option<i64>,
    expected_exit_code: Option<i64>,
    output: String,
    expected_output: String,
}

/// The exit code of a replay in which a step diverged.
const DIVERGED: u8 = 1;

impl Server {
    /// Call one tool: its output on stdout, why it failed on stderr, its exit code as this one's.
    pub(super) async fn tool(&self, id: &str, tool: &str, params: &str) -> anyhow::Result<ExitCode> {
        let params: Value = serde_json::from_str(params).map_err(|error| {
            Usage(format!("--params is not JSON ({error}); e.g. --params '{{\"command\": \"ls\"}}'"))
        })?;
        let path = format!("/sandboxes/{}/tools/{}", encode(id), encode(tool));
        let reply: ToolReply = self.call(Verb::Post, &path, Some(params)).await?;
        stdout(&reply.output);
        if !reply.output.is_empty() && !reply.output.ends_with('\n') {
            stdout("\n");
        }
        if reply.truncated {
            eprintln!("tracebox: the output was cut (trace {})", reply.trace_id);
        }
        if let Some(error) = reply.error.filter(|_| !reply.success) {
            eprintln!("tracebox: {tool} failed: {error} (trace {})", reply.trace_id);
        }
        let code = match (reply.success, reply.exit_code) {
            (_, Some(code)) => u8::try_from(code).unwrap_or(FAILED),
            (true, None) => 0,
            (false, None) => FAILED,
        };
        Ok(ExitCode::from(code))
    }

    pub(super) async fn trajectory(&self, args: TrajectoryArgs) -> anyhow::Result<ExitCode> {
        let path = format!("/sandboxes/{}/trajectory?format={}", encode(&args.id), encode(&args.format));
        let trajectory: Value = self.call(Verb::Get, &path, None).await?;
        stdout(&format!("{trajectory:#}\n"));
        Ok(ExitCode::SUCCESS)
    }

    /// Replay a trajectory file: a table of its steps, each diverged one's expected and actual
    /// output after it.
    pub(super) async fn replay(&self, args: ReplayArgs) -> anyhow::Result<ExitCode> {
        let text = read(&args.file)?;
        let trajectory: Trajectory = serde_json::from_str(&text)
            .map_err(|error| Usage(format!("{} is not a trajectory: {error}", args.file.display())))?;
        let body = json!({"trajectory": trajectory, "reset": !args.no_reset});
        let replayed: Replayed =
            match self.call(Verb::Post, &format!("/sandboxes/{}/replay", encode(&args.id)), Some(body)).await {
                Ok(replayed) => replayed,
                // The server found a step it cannot replay: the file is at fault.
                Err(error) if error.downcast_ref::<Refused>().is_some_and(|r| r.error.code == "invalid_sandbox") => {
                    return Err(Usage(format!("{} cannot be replayed: {error:#}", args.file.display())).into());
                }
                Err(error) => return Err(error),
            };
        let mut rows = vec![["STEP", "TOOL", "CALL", "EXIT", "RESULT"].map(String::from)];
        for (index, step) in replayed.steps.iter().enumerate() {
            let result = match (step.compare, step.diverged) {
                (false, _) => "not compared",
                (true, true) => "DIVERGED",
                (true, false) => "same",
            };
            let mut call = step.params.to_string();
            if call.chars().count() > 60 {
                call = format!("{}…", call.chars().take(59).collect::<String>());
            }
            let exit = match step.exit_code {
                Some(code) => code.to_string(),
                None => "-".to_owned(),
            };
            rows.push([index.to_string(), step.tool_name.clone(), call, exit, result.to_owned()]);
        }
        stdout(&table(&rows));
        if let Some(first) = usize::try_from(replayed.divergence_step).ok().and_then(|at| replayed.steps.get(at)) {
            eprintln!(
                "step {} diverged (exit {:?}, expected {:?}):\n--- expected\n{}\n--- got\n{}",
                replayed.divergence_step,
                first.exit_code,
                first.expected_exit_code,
                first.expected_output,
                first.output
            );
        }
        let (verdict, code) = if replayed.success {
            ("no step diverged", ExitCode::SUCCESS)
        } else {
            ("diverged", ExitCode::from(DIVERGED))
        };
        eprintln!("replay {verdict} (trace {})", replayed.trace_id);
        Ok(code)
    }
}
