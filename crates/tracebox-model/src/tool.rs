//! An agent's tools in a sandbox, the trajectory its calls make, and the replay of one: the
//! shapes the API answers and the traces keep (`tool` and `replay` kinds).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The tools an agent calls in a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    /// Lines of a text file.
    FileRead,
    /// A whole file, its parent directories made.
    FileWrite,
    /// `bash -c`, stdout and stderr as one stream.
    Shell,
    /// A regex over files' contents (ripgrep), `path:line:text` lines.
    Search,
    /// git, its subcommands and options held to an allow-list.
    Git,
}

impl ToolName {
    pub const ALL: [ToolName; 5] =
        [ToolName::FileRead, ToolName::FileWrite, ToolName::Shell, ToolName::Search, ToolName::Git];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::FileRead => "file_read",
            ToolName::FileWrite => "file_write",
            ToolName::Shell => "shell",
            ToolName::Search => "search",
            ToolName::Git => "git",
        }
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no tool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tool `{0}`: the tools are file_read, file_write, shell, search and git")]
pub struct UnknownTool(pub String);

impl FromStr for ToolName {
    type Err = UnknownTool;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ToolName::ALL.into_iter().find(|tool| tool.as_str() == name).ok_or_else(|| UnknownTool(name.to_owned()))
    }
}

/// A tool call, as its trace keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInput {
    pub sandbox_id: String,
    pub tool: ToolName,
    /// The call's params as sent (a file's `content` redacted as code is).
    pub params: Value,
    /// The replay this call was made by, if any: such calls are not the sandbox's trajectory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

/// How a tool call ended: what the API answers, and what a trajectory step replays against.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// What the tool printed: stdout and stderr in the order they came, a file's lines, the
    /// search's matches.
    pub output: String,
    /// The program's exit code (0 or 1 for the file tools).
    pub exit_code: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub success: bool,
    /// The output was cut (a search's result count, the output limit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// A `file_write`'s change, as a unified diff (bounded), for readers of the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// The tool calls of a sandbox, in order: what `GET /sandboxes/{id}/trajectory` answers and
/// what a replay takes back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    #[serde(default)]
    pub sandbox_id: String,
    pub steps: Vec<TrajectoryStep>,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

/// One tool call of a trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    pub tool_name: String,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// False for a step whose output differs from run to run (a timestamp): a replay runs it
    /// but never counts it as diverged.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub compare: bool,
}

fn yes() -> bool {
    true
}

impl TrajectoryStep {
    /// The call as one line an agent's log would show: a shell command or a git command as
    /// typed, another tool as its name and params.
    pub fn action(&self) -> String {
        let text = |key: &str| self.params.get(key).and_then(Value::as_str);
        match (self.tool_name.as_str(), text("command"), self.params.get("args").and_then(Value::as_array)) {
            ("shell", Some(command), _) => command.to_owned(),
            ("git", _, Some(args)) => {
                let args: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
                format!("git {}", args.join(" "))
            }
            _ => format!("{} {}", self.tool_name, self.params),
        }
    }
}

impl Trajectory {
    /// The trajectory as SWE-agent writes a `.traj` file (`trajectory` with `action`,
    /// `observation`, `execution_time`…, `history` as the model saw it, `info`), for the tools
    /// that read those. A tool call has no model thought behind it here: `thought` is empty.
    pub fn to_swe_agent(&self) -> Value {
        let mut history = Vec::with_capacity(self.steps.len() * 2);
        let trajectory: Vec<Value> = self
            .steps
            .iter()
            .map(|step| {
                let action = step.action();
                history
                    .push(json!({"role": "assistant", "content": action, "agent": "main", "message_type": "action"}));
                history.push(
                    json!({"role": "user", "content": step.output, "agent": "main", "message_type": "observation"}),
                );
                json!({
                    "action": action,
                    "observation": step.output,
                    "response": action,
                    "thought": "",
                    "execution_time": step.duration_ms.map(|ms| ms / 1000.0),
                    "state": {"exit_code": step.exit_code, "tool_name": step.tool_name, "params": step.params},
                    "query": [],
                })
            })
            .collect();
        json!({
            "trajectory": trajectory,
            "history": history,
            "info": {"tracebox": {"sandbox_id": self.sandbox_id, "metadata": self.metadata}},
        })
    }
}

/// Outputs compared the way a replay does: every line's trailing whitespace and the trailing
/// empty lines are not part of it (a tool that adds a newline at the end has not diverged).
pub fn normalized(output: &str) -> String {
    let mut lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// A replay, as its trace keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayInput {
    pub sandbox_id: String,
    /// Steps in the trajectory replayed.
    pub steps: usize,
    /// Whether the sandbox went back to its creation state first.
    pub reset: bool,
    /// The trajectory's own metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayOutput {
    /// The first step whose output or exit code differed, −1 when none did.
    pub divergence_step: i64,
    /// Every step that differed.
    pub diverged: Vec<usize>,
    pub success: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_compare_without_trailing_whitespace_or_trailing_empty_lines() {
        assert_eq!(normalized("a  \nb\t\n\n\n"), normalized("a\nb"));
        assert_ne!(normalized("a\n\nb"), normalized("a\nb"), "an empty line inside counts");
        assert_ne!(normalized(" a"), normalized("a"), "leading whitespace counts");
    }

    #[test]
    fn a_step_compares_unless_it_says_not_and_says_so_only_then() {
        let step: TrajectoryStep = serde_json::from_str(r#"{"tool_name": "shell", "params": {}}"#).unwrap();
        assert!(step.compare);
        assert!(serde_json::to_value(&step).unwrap().get("compare").is_none());
        let step: TrajectoryStep =
            serde_json::from_str(r#"{"tool_name": "shell", "params": {}, "compare": false}"#).unwrap();
        assert_eq!(serde_json::to_value(&step).unwrap()["compare"], false);
    }

    #[test]
    fn a_swe_agent_export_has_an_action_and_observation_per_step_and_the_history_between() {
        let steps = vec![
            TrajectoryStep {
                tool_name: "shell".into(),
                params: json!({"command": "ls -a"}),
                output: "a\n".into(),
                exit_code: Some(0),
                duration_ms: Some(1500.0),
                compare: true,
            },
            TrajectoryStep {
                tool_name: "git".into(),
                params: json!({"args": ["diff", "--stat"]}),
                output: String::new(),
                exit_code: Some(0),
                duration_ms: None,
                compare: true,
            },
            TrajectoryStep {
                tool_name: "file_read".into(),
                params: json!({"path": "a"}),
                output: "x".into(),
                exit_code: Some(0),
                duration_ms: None,
                compare: true,
            },
        ];
        let exported = Trajectory { sandbox_id: "sbx_1".into(), steps, metadata: BTreeMap::new() }.to_swe_agent();
        let actions: Vec<&str> =
            exported["trajectory"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["ls -a", "git diff --stat", r#"file_read {"path":"a"}"#]);
        assert_eq!(exported["trajectory"][0]["observation"], "a\n");
        assert_eq!(exported["trajectory"][0]["execution_time"], 1.5);
        assert_eq!(exported["history"].as_array().unwrap().len(), 6);
        assert_eq!(exported["history"][1]["message_type"], "observation");
        assert_eq!(exported["info"]["tracebox"]["sandbox_id"], "sbx_1");
    }

    #[test]
    fn tool_names_read_back() {
        for tool in ToolName::ALL {
            assert_eq!(tool.as_str().parse::<ToolName>(), Ok(tool));
        }
        assert!("exec".parse::<ToolName>().unwrap_err().to_string().contains("file_read"));
    }
}
