//! A schedule: tasks (programs, each as `/execute` takes one, with labels) placed over the nodes
//! and run at once within what the nodes take, through the one pipeline. A schedule is a trace
//! whose children are its tasks' runs; each task's result names its node and the attempts that
//! failed before it.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::json;

use tracebox_model::record::{ScheduleInput, ScheduleOutput, ScheduleTask};
use tracebox_model::{
    EventLog, Execution, ExecutionRequest, Source, Status, Strategy, TraceId, TraceInput, TraceOutput,
};

use crate::runner::{RunError, Runner};
use crate::trace::{FinishedTrace, NewTrace, StoreError, TraceStore};

/// Most tasks one schedule holds.
pub const MAX_TASKS: usize = 1000;

/// How a schedule runs.
pub struct ScheduleOptions {
    /// The strategy of tasks that name none.
    pub strategy: Strategy,
    /// Tasks running at once.
    pub concurrency: usize,
    /// Whose the schedule is.
    pub owner: Option<String>,
    /// The start of tracebox that runs it, on its trace.
    pub boot_id: String,
}

/// What a schedule gave: its trace, and each task's run (or why it did not run), in order.
pub struct ScheduleReport {
    pub trace_id: TraceId,
    pub results: Vec<Result<Execution, RunError>>,
}

/// Run `tasks` as one schedule on `runner`, recorded in `store`.
pub async fn run_schedule(
    runner: &Runner,
    store: &TraceStore,
    tasks: Vec<ExecutionRequest>,
    options: ScheduleOptions,
) -> Result<ScheduleReport, StoreError> {
    let trace_id = TraceId::new();
    let mut log = EventLog::start();
    store.begin(NewTrace {
        id: trace_id,
        parent_id: None,
        source: Source::Http,
        language: None,
        boot_id: options.boot_id.clone(),
        started_at_us: log.started_at_us(),
        input: TraceInput::Schedule(ScheduleInput { tasks: tasks.len(), strategy: options.strategy }),
        tenant: options.owner.clone(),
    });
    let started = Instant::now();
    let runs = tasks.into_iter().map(|mut task| {
        task.parent = Some(trace_id);
        task.placement.strategy = task.placement.strategy.or(Some(options.strategy));
        let runner = runner.clone();
        async move {
            let began = Instant::now();
            let ran = runner.execute(task).await;
            (ran, began.elapsed())
        }
    });
    // In the order sent, however they finish.
    let done: Vec<_> = futures_util::stream::iter(runs).buffered(options.concurrency.max(1)).collect().await;
    let wall_ms = started.elapsed().as_millis() as u64;
    let tasks: Vec<ScheduleTask> = done.iter().map(|(ran, took)| task_record(ran, took.as_millis() as u64)).collect();
    let succeeded = tasks.iter().filter(|task| task.status == Status::Success.as_str()).count();
    log.record("schedule.finished", json!({ "tasks": tasks.len(), "succeeded": succeeded, "wall_ms": wall_ms }));
    let status = if succeeded == tasks.len() { Status::Success } else { Status::Error };
    store
        .finish(FinishedTrace {
            id: trace_id,
            status,
            ended_at_us: log.now_us(),
            exit_code: None,
            output: TraceOutput::Schedule(ScheduleOutput { tasks, wall_ms }),
            events: log.into_events(),
        })
        .await?;
    Ok(ScheduleReport { trace_id, results: done.into_iter().map(|(ran, _)| ran).collect() })
}

/// A task as the schedule's trace lists it.
fn task_record(ran: &Result<Execution, RunError>, duration_ms: u64) -> ScheduleTask {
    match ran {
        Ok(execution) => ScheduleTask {
            status: execution.status.as_str().to_owned(),
            trace_id: Some(execution.trace_id),
            node: execution.node.clone(),
            attempts: execution.attempts.clone(),
            duration_ms,
            error: execution.message.clone().filter(|_| execution.status != Status::Success),
        },
        Err(error) => ScheduleTask {
            // Refused: no node could take it, or the server was full; nothing of it ran. Failed:
            // it may have begun (its trace says how far it went).
            status: match error {
                RunError::Placement { .. } | RunError::Busy { .. } => "refused",
                RunError::Sandbox { source, .. } if source.is_busy() || source.is_unavailable() => "refused",
                _ => "failed",
            }
            .to_owned(),
            trace_id: error.trace_id(),
            node: None,
            attempts: Vec::new(),
            duration_ms,
            error: Some(error.to_string()),
        },
    }
}
