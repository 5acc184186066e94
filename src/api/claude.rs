//! `POST /claude`: a question for Claude in, the reply (and the runs of its code) out, through
//! the one Claude pipeline. With `"stream": true` the answer is server-sent events: the text as
//! it arrives, each run as it ends, then the whole reply.

use std::convert::Infallible;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::execute::ExecuteReply;
use super::read_json;
use crate::claude::{Answer, AskError, AskEvent, Block, Question, Usage};
use crate::execution::Source;
use crate::services::Services;
use crate::trace::TraceId;

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
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let why = "more than a Claude call takes here (8 MiB); send a shorter conversation";
    let mut question: Question = read_json(&request, payload, BODY_BYTES, why).await?;
    let files = question.files.take().unwrap_or_default();
    let mut ask = question.check(services.runner.config(), Source::Http, None)?;
    ask.files = services.files.inputs(&files).await?;
    if !ask.request.stream {
        let (_, call) = services.claude.start(ask, None);
        let answer = call.await.map_err(AskError::from)??;
        return Ok(HttpResponse::Ok().json(ClaudeReply::from(answer)));
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let (trace_id, call) = services.claude.start(ask, Some(events_tx));
    let (frames_tx, frames) = mpsc::unbounded_channel::<Bytes>();
    actix_web::rt::spawn(stream_answer(trace_id, events, call, frames_tx));
    let body = futures_util::stream::unfold(frames, |mut frames| async move {
        frames.recv().await.map(|frame| (Ok::<_, Infallible>(frame), frames))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Turn a call's events into server-sent events: `started`, `text`…, `execution`…, then `done`
/// with the whole reply, or `error` in the API's error shape.
async fn stream_answer(
    trace_id: TraceId,
    mut events: mpsc::UnboundedReceiver<AskEvent>,
    call: tokio::task::JoinHandle<Result<Answer, AskError>>,
    frames: mpsc::UnboundedSender<Bytes>,
) {
    // A client gone away stops nothing: the call goes on and is recorded.
    let send = |name: &str, data: &Value| {
        let _ = frames.send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")));
    };
    send("started", &json!({ "trace_id": trace_id }));
    while let Some(event) = events.recv().await {
        match event {
            AskEvent::Text(text) => send("text", &json!({ "text": text })),
            AskEvent::Execution(execution) => {
                send("execution", &serde_json::to_value(ExecuteReply::from(*execution)).unwrap_or_default())
            }
        }
    }
    match call.await.map_err(AskError::from).and_then(|answer| answer).map_err(ApiError::from) {
        Ok(answer) => send("done", &serde_json::to_value(ClaudeReply::from(answer)).unwrap_or_default()),
        Err(error) => send(
            "error",
            &json!({
                "error": { "code": error.code().as_str(), "message": error.message() },
                "trace_id": error.trace_id().or(Some(trace_id)),
            }),
        ),
    }
}
