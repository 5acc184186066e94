//! Running a checked prompt set: its items at a bounded concurrency through the same pipelines
//! as any request (code → the runner; prompt → Claude, its code run), each item's trace a child
//! of the batch's own, each result judged against its `expect` as it ends.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::json;

use tracebox_model::record::{BatchInput, BatchItem, BatchOutput, Outcome};
use tracebox_model::{EventLog, Execution, Source, Status, TraceId, TraceInput, TraceOutput};

use super::item::{BatchReport, ItemResult};
use super::set::{CheckedItem, Job};
use super::summary::summarize;
use crate::services::Services;
use crate::trace::{FinishedTrace, NewTrace, StoreError};

/// Most items run at once.
pub const MAX_CONCURRENCY: usize = 64;
/// stdout kept per item in the results (the trace keeps it whole).
const STDOUT_KEPT_BYTES: usize = 4096;

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// What the batch trace is called (the prompt set's file name).
    pub name: String,
    pub concurrency: usize,
    pub source: Source,
    /// Whose the batch and its items are (the caller's tenant when keys are on).
    pub owner: Option<String>,
}

/// Run `items` as one batch; `on_item` hears each result as it comes (for progress). The batch
/// trace is started first (`on_start` hears its id) and finished last, with the summary.
pub async fn run_batch(
    services: &Services,
    items: Vec<CheckedItem>,
    options: &BatchOptions,
    on_start: impl FnOnce(TraceId),
    mut on_item: impl FnMut(&ItemResult),
) -> Result<BatchReport, StoreError> {
    let batch_id = TraceId::new();
    let mut log = EventLog::start();
    let concurrency = options.concurrency.clamp(1, MAX_CONCURRENCY);
    services.store.begin(NewTrace {
        id: batch_id,
        parent_id: None,
        source: options.source,
        language: None,
        boot_id: services.boot_id().to_owned(),
        started_at_us: log.started_at_us(),
        input: TraceInput::Batch(BatchInput { name: options.name.clone(), items: items.len(), concurrency }),
        tenant: options.owner.clone(),
    });
    on_start(batch_id);
    let started = Instant::now();
    let mut running = futures_util::stream::iter(items)
        .map(|item| run_item(services, batch_id, options.owner.as_deref(), item))
        .buffer_unordered(concurrency);
    let mut results = Vec::new();
    while let Some(result) = running.next().await {
        on_item(&result);
        results.push(result);
    }
    let summary = summarize(&results, started.elapsed().as_secs_f64() * 1000.0);
    log.record("batch.finished", json!({ "passed": summary.passed, "items": summary.items }));
    let status = if summary.passed == summary.items { Status::Success } else { Status::Error };
    let trace = FinishedTrace {
        id: batch_id,
        status,
        ended_at_us: log.now_us(),
        exit_code: None,
        output: TraceOutput::Batch(BatchOutput {
            summary: summary.clone(),
            items: results.iter().map(batch_item).collect(),
        }),
        events: log.into_events(),
    };
    services.store.finish(trace).await?;
    Ok(BatchReport { batch_id, summary, items: results })
}

/// An item as the batch's trace lists it.
fn batch_item(result: &ItemResult) -> BatchItem {
    BatchItem {
        id: result.id.clone(),
        at: result.at.clone(),
        outcome: result.outcome,
        status: result.status.clone(),
        trace_id: result.trace_id,
        duration_ms: result.duration_ms,
        failures: result.failures.clone(),
    }
}

/// Run one item and judge it.
async fn run_item(services: &Services, batch_id: TraceId, owner: Option<&str>, item: CheckedItem) -> ItemResult {
    let started = Instant::now();
    let CheckedItem { id, at, mut job, expect, files } = item;
    job.under(batch_id, owner);
    let kind = job.kind().to_owned();
    let mut result = ItemResult {
        id,
        at,
        kind,
        outcome: Outcome::Error,
        passed: false,
        status: String::new(),
        exit_code: None,
        failures: Vec::new(),
        trace_id: None,
        executions: Vec::new(),
        duration_ms: 0.0,
        stdout: String::new(),
        usage: None,
        cost_usd: None,
    };
    let inputs = match services.files.inputs(&files, owner).await {
        Ok(inputs) => inputs,
        Err(error) => {
            result.status = "error".into();
            result.failures.push(error.to_string());
            result.duration_ms = ms(started);
            return result;
        }
    };
    let ran: Result<Vec<Execution>, String> = match job {
        Job::Code(mut request) => {
            request.files = inputs;
            match services.runner.execute(*request).await {
                Ok(execution) => {
                    result.trace_id = Some(execution.trace_id);
                    Ok(vec![execution])
                }
                Err(error) => {
                    result.trace_id = error.trace_id();
                    Err(error.to_string())
                }
            }
        }
        Job::Prompt(mut ask) => {
            ask.files = inputs;
            let call = services.claude.start(*ask, None);
            result.trace_id = Some(call.trace_id);
            match call.outcome().await {
                Ok(answer) => {
                    result.usage = Some(answer.reply.usage);
                    result.cost_usd = answer.cost_usd;
                    result.executions = answer.executions.iter().map(|e| e.trace_id).collect();
                    if answer.executions.is_empty() {
                        result.status = "no_code".into();
                        Err("Claude's reply held no code block to run".to_owned())
                    } else {
                        Ok(answer.executions)
                    }
                }
                Err(error) => {
                    result.status = "claude_error".into();
                    Err(error.to_string())
                }
            }
        }
    };
    result.duration_ms = ms(started);
    match ran {
        Ok(executions) => judge(&mut result, &executions, &expect),
        Err(why) => {
            if result.status.is_empty() {
                result.status = Status::InternalError.as_str().into();
            }
            result.failures.push(why);
        }
    }
    result
}

/// Judge the runs of an item: the last one's status and exit code, every one's stdout.
fn judge(result: &mut ItemResult, executions: &[Execution], expect: &super::set::Expectation) {
    let Some(last) = executions.last() else { return };
    let stdout: String = executions.iter().map(|e| e.stdout.as_str()).collect();
    result.status = last.status.as_str().to_owned();
    result.exit_code = last.exit_code;
    result.failures = expect.failures(&result.status, last.exit_code, &stdout);
    result.failures.extend(expect.result_failures(last.handler.as_ref()));
    result.passed = result.failures.is_empty();
    result.outcome = match (result.passed, last.status) {
        (true, _) => Outcome::Passed,
        (false, Status::Blocked) => Outcome::Blocked,
        (false, Status::InternalError) => Outcome::Error,
        (false, _) => Outcome::Failed,
    };
    result.stdout = tracebox_model::text::head(&stdout, STDOUT_KEPT_BYTES).to_owned();
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}
