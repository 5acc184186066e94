//! A sandbox's trajectory (its tool calls, in order, read back from their traces) and the
//! replay of one: every step called again, its output compared with the one recorded.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use tracebox_model::tool::{
    ReplayInput, ReplayOutput, ToolInput, ToolName, ToolOutput, Trajectory, TrajectoryStep, normalized,
};
use tracebox_model::{EventLog, Source, Status, TraceId, TraceInput, TraceKind, TraceOutput, TraceStatus};

use super::Call;
use crate::sandboxes::{Sandboxes, SandboxesError};
use crate::trace::{FinishedTrace, NewTrace};

/// A replay's answer.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// No step diverged.
    pub success: bool,
    /// The first step whose output or exit code differed; −1 when none did.
    pub divergence_step: i64,
    /// The replay's own trace (a child of the sandbox's).
    pub trace_id: TraceId,
    pub steps: Vec<ReplayedStep>,
}

/// One step of a replay: what the trajectory said and what the call gave this time.
#[derive(Debug, Serialize)]
pub struct ReplayedStep {
    pub tool_name: String,
    pub params: Value,
    pub expected_output: String,
    pub output: String,
    pub expected_exit_code: Option<i64>,
    pub exit_code: Option<i64>,
    /// Why the call failed this time, when it did.
    pub error: Option<String>,
    /// Whether this step was compared (a step may opt out with `compare: false`).
    pub compare: bool,
    pub diverged: bool,
    pub duration_ms: f64,
    /// The call's own trace.
    pub trace_id: Option<TraceId>,
}

impl Sandboxes {
    /// The tool calls made in sandbox `id`, in order: those that answered (a call refused by
    /// the policy or lost to an internal error is not part of it), never those of a replay.
    pub async fn trajectory(&self, id: &str) -> Result<Trajectory, SandboxesError> {
        let record = self.record(id).await?;
        let calls = self.inner.store.children_of_kind(record.trace_id, TraceKind::Tool).await?;
        let steps = calls
            .into_iter()
            .filter(|call| matches!(call.status, TraceStatus::Ended(Status::Success | Status::Error)))
            .filter_map(|call| {
                let input: ToolInput = serde_json::from_value(call.input).ok()?;
                let output: ToolOutput = serde_json::from_value(call.output).ok()?;
                Some(TrajectoryStep {
                    tool_name: input.tool.as_str().to_owned(),
                    params: input.params,
                    output: output.output,
                    exit_code: output.exit_code,
                    duration_ms: call.duration_ms,
                    compare: true,
                })
            })
            .collect();
        let mut metadata = BTreeMap::from([
            ("language".to_owned(), json!(record.language)),
            ("trace_id".to_owned(), json!(record.trace_id)),
        ]);
        if !record.metadata.is_empty() {
            metadata.insert("sandbox_metadata".to_owned(), json!(record.metadata));
        }
        if let Some(repo) = &record.repo {
            metadata.insert("repo".to_owned(), json!(repo));
        }
        Ok(Trajectory { sandbox_id: id.to_owned(), steps, metadata })
    }

    /// Call every step of `trajectory` again in sandbox `id` (after a reset to its creation
    /// state when `reset`), comparing each output and exit code with the recorded ones. The
    /// whole trajectory is checked before anything runs: a step that names no tool or whose
    /// params do not fit is refused, naming the step.
    pub async fn replay(&self, id: &str, trajectory: Trajectory, reset: bool) -> Result<ReplayReport, SandboxesError> {
        let calls = checked(&trajectory, self.inner.settings.max_file_bytes)?;
        let record = self.record(id).await?;
        self.session_of(&record).await?;
        if reset {
            self.reset(id, None).await?;
        }
        let trace_id = TraceId::new();
        let mut log = EventLog::start();
        let input = ReplayInput {
            sandbox_id: id.to_owned(),
            steps: trajectory.steps.len(),
            reset,
            metadata: trajectory.metadata.clone(),
        };
        self.inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: Some(record.trace_id),
            source: Source::Http,
            language: None,
            boot_id: self.inner.boot_id.clone(),
            started_at_us: log.started_at_us(),
            input: TraceInput::Replay(input),
            tenant: None,
        });
        let replayed = self.replay_steps(id, trace_id, trajectory.steps, calls).await;
        let (status, output, steps) = match replayed {
            Ok(steps) => {
                let diverged: Vec<usize> =
                    steps.iter().enumerate().filter(|(_, s)| s.diverged).map(|(i, _)| i).collect();
                let divergence_step = diverged.first().map_or(-1, |&step| step as i64);
                let output = ReplayOutput { divergence_step, success: diverged.is_empty(), diverged };
                let status = if output.success { Status::Success } else { Status::Error };
                (status, output, Ok(steps))
            }
            Err(error) => {
                let output = ReplayOutput { divergence_step: -1, diverged: Vec::new(), success: false };
                (Status::InternalError, output, Err(error))
            }
        };
        log.record("finished", json!({ "status": status, "divergence_step": output.divergence_step }));
        let (success, divergence_step) = (output.success, output.divergence_step);
        self.inner
            .store
            .finish(FinishedTrace {
                id: trace_id,
                status,
                ended_at_us: log.now_us(),
                exit_code: None,
                output: TraceOutput::Replay(output),
                events: log.into_events(),
            })
            .await?;
        Ok(ReplayReport { success, divergence_step, trace_id, steps: steps? })
    }

    async fn replay_steps(
        &self,
        id: &str,
        replay: TraceId,
        steps: Vec<TrajectoryStep>,
        calls: Vec<ToolName>,
    ) -> Result<Vec<ReplayedStep>, SandboxesError> {
        let replay_name = replay.to_string();
        let mut replayed = Vec::with_capacity(steps.len());
        for (step, tool) in steps.into_iter().zip(calls) {
            let started = std::time::Instant::now();
            let (output, trace_id) = match self.tool(id, tool, step.params.clone(), Some((replay, &replay_name))).await
            {
                Ok(reply) => (reply.output, Some(reply.trace_id)),
                // What a call can be refused for that only the sandbox knows (a path that is a
                // directory now, a file grown too large) is that step's outcome, not the replay's.
                Err(error) if error.is_callers() => {
                    (ToolOutput { error: Some(error.to_string()), ..ToolOutput::default() }, None)
                }
                Err(error) => return Err(error),
            };
            let differs = normalized(&output.output) != normalized(&step.output) || output.exit_code != step.exit_code;
            replayed.push(ReplayedStep {
                tool_name: step.tool_name,
                params: step.params,
                expected_output: step.output,
                output: output.output,
                expected_exit_code: step.exit_code,
                exit_code: output.exit_code,
                error: output.error,
                compare: step.compare,
                diverged: step.compare && differs,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                trace_id,
            });
        }
        Ok(replayed)
    }
}

/// Every step's tool, each step's params checked as a call of it would check them.
fn checked(trajectory: &Trajectory, max_file_bytes: u64) -> Result<Vec<ToolName>, SandboxesError> {
    if trajectory.steps.is_empty() {
        return Err(SandboxesError::Invalid("`trajectory.steps` is empty: there is nothing to replay".to_owned()));
    }
    trajectory
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let named = |error: String| SandboxesError::Invalid(format!("`trajectory.steps[{index}]`: {error}"));
            let tool: ToolName =
                step.tool_name.parse().map_err(|error: tracebox_model::tool::UnknownTool| named(error.to_string()))?;
            Call::parse(tool, &step.params, max_file_bytes).map_err(|error| named(error.to_string()))?;
            Ok(tool)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(tool: &str, params: Value) -> TrajectoryStep {
        TrajectoryStep {
            tool_name: tool.into(),
            params,
            output: String::new(),
            exit_code: None,
            duration_ms: None,
            compare: true,
        }
    }

    #[test]
    fn a_trajectory_is_refused_whole_naming_the_first_step_that_does_not_fit() {
        let refused = |steps: Vec<TrajectoryStep>| match checked(&Trajectory { steps, ..Trajectory::default() }, 100) {
            Err(SandboxesError::Invalid(message)) => message,
            other => panic!("passed: {other:?}"),
        };
        assert!(refused(vec![]).contains("empty"));
        let bad_tool = refused(vec![step("shell", json!({"command": "ls"})), step("exec", json!({}))]);
        assert!(bad_tool.starts_with("`trajectory.steps[1]`: no tool `exec`"), "{bad_tool}");
        let bad_params = refused(vec![step("git", json!({"args": ["-c", "core.pager=sh"]}))]);
        assert!(bad_params.starts_with("`trajectory.steps[0]`:"), "{bad_params}");
        let tools =
            checked(&Trajectory { steps: vec![step("search", json!({"pattern": "x"}))], ..Trajectory::default() }, 100);
        assert_eq!(tools.unwrap(), vec![ToolName::Search]);
    }
}
