//! `POST /batch`: a prompt set in, its run streamed out as JSON Lines — `started` (the batch's
//! trace id), one `item` per finished item, then `done` with the summary, and a `ping` line
//! whenever it was quiet for a while — through the same batch runner `tracebox batch` uses
//! in-process.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use tracebox_model::Source;

use super::error::{ApiError, ErrorCode};
use super::{keep_alive, read_json};
use crate::access::Caller;
use crate::batch::{self, BatchOptions, Defaults, MAX_CONCURRENCY};
use crate::services::Services;

/// The largest prompt set read.
const BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// The items, as a prompt set's lines would hold them…
    items: Option<Vec<Value>>,
    /// …or the prompt set's text itself (JSON Lines), so that refusals and results name its lines.
    promptset: Option<String>,
    /// What to call the batch (the prompt set's file name).
    name: Option<String>,
    concurrency: Option<usize>,
    /// The model of prompt items that name none.
    model: Option<String>,
    /// The timeout of items that set none.
    timeout: Option<f64>,
}

/// `POST /batch`
pub async fn batch(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let why = "more than a prompt set sent at once may hold (32 MiB); split it";
    let body: BatchBody = read_json(&request, payload, BODY_BYTES, why).await?;
    let concurrency = body.concurrency.unwrap_or(1);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ApiError::new(
            ErrorCode::InvalidPromptSet,
            format!("`concurrency` must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    let refused = |error: batch::SetError| ApiError::new(ErrorCode::InvalidPromptSet, error.to_string());
    let text = match (body.items, body.promptset) {
        (Some(items), None) => Value::Array(items).to_string(),
        (None, Some(text)) => text,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidPromptSet,
                "send `items` (a list of prompt-set items) or `promptset` (the JSON Lines text), one of them",
            ));
        }
    };
    let defaults = Defaults { model: body.model, timeout: body.timeout };
    let (allowed, calls) = (services.runner.request_limits(), services.claude.settings());
    let items = batch::check(batch::parse(&text).map_err(refused)?, allowed, calls, &defaults, Source::Batch)
        .map_err(refused)?;
    if batch::asks_claude(&items) && !services.claude.configured() {
        return Err(ApiError::new(
            ErrorCode::ClaudeNotConfigured,
            "the prompt set has prompt items and this server has no ANTHROPIC_API_KEY; set it, or send code items only",
        ));
    }
    // A batch runs as many items at once as it holds of its key's runs: its concurrency is cut
    // to the key's limit, and that many are taken for as long as it goes.
    let concurrency = caller.runs_allowed(concurrency);
    let run = caller.run_permits(concurrency.min(items.len()).max(1))?;
    let options = BatchOptions {
        name: body.name.unwrap_or_else(|| "POST /batch".to_owned()),
        concurrency,
        source: Source::Batch,
        owner: caller.owner().map(str::to_owned),
    };
    let (lines_tx, lines) = mpsc::unbounded_channel::<Bytes>();
    let line = move |value: Value| {
        // A client gone away stops nothing: the batch goes on and is recorded.
        let _ = lines_tx.send(Bytes::from(format!("{value}\n")));
    };
    let runner = services.clone();
    services.runner.runtime().spawn(async move {
        let started = line.clone();
        let each = line.clone();
        let report = batch::run_batch(
            &runner,
            items,
            &options,
            |batch_id| started(json!({"type": "started", "batch_id": batch_id})),
            |item| each(json!({"type": "item", "item": item})),
        )
        .await;
        drop(run);
        match report {
            Ok(report) => line(json!({"type": "done", "batch_id": report.batch_id, "summary": report.summary})),
            Err(error) => {
                line(json!({"type": "error", "error": {"code": "internal_error", "message": error.to_string()}}))
            }
        }
    });
    let ping = Bytes::from_static(b"{\"type\":\"ping\"}\n");
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(keep_alive(lines, ping)))
}
