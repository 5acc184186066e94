//! `POST /schedule`: tasks (each an `/execute` body, with `labels` and `strategy` if wanted)
//! placed over the nodes and run at once within their capacity; one result per task, in order,
//! each an `/execute` reply with its `node` and `attempts`, or the error that kept it from running.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use tracebox_model::{Source, Strategy};

use super::error::{ApiError, ErrorCode};
use super::execute::{ExecuteBody, ExecuteReply};
use super::read_json;
use crate::access::Caller;
use crate::schedule::{self, MAX_TASKS, ScheduleOptions};
use crate::services::Services;

/// The largest schedule read: JSON is parsed whole before each task is checked, at several
/// times its size in memory, so a schedule is kept to a few MiB (send more as several).
const BODY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    tasks: Vec<ExecuteBody>,
    /// The strategy of tasks that name none (default: the server's TRACEBOX_PLACEMENT).
    strategy: Option<String>,
}

/// `POST /schedule`
pub async fn schedule(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let why = "more than a schedule may hold at once (8 MiB); split it into several";
    let body: ScheduleBody = read_json(&request, payload, BODY_BYTES, why).await?;
    let count = body.tasks.len();
    if !(1..=MAX_TASKS).contains(&count) {
        return Err(ApiError::new(
            ErrorCode::InvalidSchedule,
            format!("`tasks` holds {count}; a schedule holds 1 to {MAX_TASKS} (send more as several schedules)"),
        ));
    }
    let strategy = match body.strategy.as_deref() {
        Some(name) => name
            .parse::<Strategy>()
            .map_err(|e| ApiError::new(ErrorCode::InvalidPlacement, format!("`strategy`: {e}")))?,
        None => services.config.placement,
    };
    let mut tasks = Vec::with_capacity(count);
    for (i, task) in body.tasks.into_iter().enumerate() {
        let checked = task.into_request(&services, Source::Http, &caller).await;
        tasks.push(checked.map_err(|error| error.prefixed(&format!("task {}: ", i + 1)))?);
    }
    // As many at once as the nodes take and the caller's key allows; those slots are held for
    // as long as the schedule runs.
    let concurrency = caller.runs_allowed(services.config.runs_at_once().min(count));
    let _runs = caller.run_permits(concurrency)?;
    let options = ScheduleOptions {
        strategy,
        concurrency,
        owner: caller.owner().map(str::to_owned),
        boot_id: services.boot_id().to_owned(),
    };
    let runner = services.runner.clone();
    let store = services.store.clone();
    // Detached: a client that goes away stops neither the runs nor the trace.
    let report = services
        .runner
        .runtime()
        .spawn(async move { schedule::run_schedule(&runner, &store, tasks, options).await })
        .await
        .map_err(|error| ApiError::new(ErrorCode::Internal, format!("the schedule did not finish: {error}")))??;
    let results: Vec<Value> = report
        .results
        .into_iter()
        .map(|ran| match ran {
            Ok(execution) => serde_json::to_value(ExecuteReply::from(execution)).unwrap_or_default(),
            Err(error) => {
                let api = ApiError::from(error);
                json!({ "trace_id": api.trace_id(), "error": { "code": api.code().as_str(), "message": api.message() } })
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "trace_id": report.trace_id, "strategy": strategy, "results": results })))
}
