//! `POST /claude`: a question for Claude in, the reply (and the runs of its code) out, through
//! the one Claude pipeline. With `"stream": true` the answer is server-sent events: the text as
//! it arrives, each run as it ends, then the whole reply.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use tracebox_model::{Source, TraceId, Usage};

use super::error::ApiError;
use super::execute::ExecuteReply;
use super::{keep_alive, read_json};
use crate::access::Caller;
use crate::claude::{Answer, AskError, AskEvent, Block, Call, Question};
use crate::services::Services;

/// The largest body read: a long conversation, well under the API's own 32 MB.
const BODY_BYTES: usize = 8 * 1024 * 1024;

/// The reply, as API.md defines it (`trace_id`, the text, `model`, `stop_reason`, `usage`,
/// `executions`), plus the blocks, the cost estimate, Anthropic's request id and the timings.
#[derive(Debug, Serialize)]
pub(super) struct ClaudeReply {
    trace_id: TraceId,
    text: String,
    content: Vec<Block>,
    model: String,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Usage,
    cost_usd: Option<f64>,
    request_id: Option<String>,
    retries: usize,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    executions: Vec<ExecuteReply>,
    skipped_blocks: Vec<String>,
}

impl From<Answer> for ClaudeReply {
    fn from(answer: Answer) -> ClaudeReply {
        let Answer { trace_id, reply, exchange, cost_usd, executions, skipped_blocks } = answer;
        ClaudeReply {
            trace_id,
            text: reply.text(),
            content: reply.content,
            model: reply.model,
            stop_reason: reply.stop_reason,
            stop_sequence: reply.stop_sequence,
            usage: reply.usage,
            cost_usd,
            retries: exchange.retries(),
            request_id: exchange.request_id,
            latency_ms: exchange.ms,
            ttft_ms: exchange.ttft_ms,
            executions: executions.into_iter().map(ExecuteReply::from).collect(),
            skipped_blocks,
        }
    }
}

/// `POST /claude`
pub async fn claude(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let why = "more than a Claude call takes here (8 MiB); send a shorter conversation";
    let mut question: Question = read_json(&request, payload, BODY_BYTES, why).await?;
    let files = question.files.take().unwrap_or_default();
    let mut ask = question.check(services.runner.request_limits(), services.claude.settings(), Source::Http, None)?;
    ask.files = services.files.inputs(&files, caller.owner()).await?;
    ask.owner = caller.owner().map(str::to_owned);
    let run = caller.run_permit()?;
    if !ask.request.stream {
        let reply = reply_of(services.claude.start(ask, None).outcome().await)?;
        return Ok(HttpResponse::Ok().json(reply));
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let call = services.claude.start(ask, Some(events_tx));
    let (frames_tx, frames) = mpsc::unbounded_channel::<Bytes>();
    actix_web::rt::spawn(async move {
        stream_answer(events, call, frames_tx).await;
        drop(run);
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(keep_alive(frames, Bytes::from_static(b": ping\n\n"))))
}

/// How a call ended, as every door answers it: the reply, or the error.
pub(super) fn reply_of(outcome: Result<Answer, AskError>) -> Result<ClaudeReply, ApiError> {
    outcome.map(ClaudeReply::from).map_err(ApiError::from)
}

/// Turn a call's events into server-sent events: `started`, `text`…, `execution`…, then `done`
/// with the whole reply, or `error` in the API's error shape.
async fn stream_answer(
    mut events: mpsc::UnboundedReceiver<AskEvent>,
    call: Call,
    frames: mpsc::UnboundedSender<Bytes>,
) {
    // A client gone away stops nothing: the call goes on and is recorded.
    let send = |name: &str, data: &Value| {
        let _ = frames.send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")));
    };
    let trace_id = call.trace_id;
    send("started", &json!({ "trace_id": trace_id }));
    while let Some(event) = events.recv().await {
        match event {
            AskEvent::Text(text) => send("text", &json!({ "text": text })),
            AskEvent::Execution(execution) => send("execution", &json!(ExecuteReply::from(*execution))),
        }
    }
    match reply_of(call.outcome().await) {
        Ok(reply) => send("done", &json!(reply)),
        Err(error) => send(
            "error",
            &json!({
                "error": { "code": error.code().as_str(), "message": error.message() },
                "trace_id": error.trace_id().or(Some(trace_id)),
            }),
        ),
    }
}
