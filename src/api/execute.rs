//! `POST /execute`: a JSON program in, its result out, through the one pipeline.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use tracebox_model::record::CellOutcome;
use tracebox_model::{
    Artifact, Execution, ExecutionRequest, HandlerOutcome, Isolation, NodeAttempt, Omitted, PolicyHit, Redaction,
    Source, Status, TraceId,
};

use super::error::{ApiError, ErrorCode};
use super::read_json;
use crate::access::Caller;
use crate::config::Config;
use crate::sandboxes::{CodeRequest, CommandRequest};
use crate::services::Services;
use crate::submission::Submission;

/// The request body, as clients send it; a WebSocket `execute` carries the same fields. Unknown
/// fields are refused, so a misspelt limit is an error rather than silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecuteBody {
    code: Option<String>,
    language: Option<String>,
    stdin: Option<String>,
    timeout: Option<f64>,
    memory_mb: Option<u64>,
    env: Option<BTreeMap<String, String>>,
    /// Uploaded files to mount read-only under `/workspace/`.
    files: Option<Vec<String>>,
    /// `fresh` or `recycle` (where the server allows it).
    isolation: Option<Isolation>,
    /// Whose recycled containers the run may use.
    tenant: Option<String>,
    /// Handler mode: the function to call with `event` (`null` when absent).
    handler: Option<String>,
    event: Option<Value>,
    /// Labels the node that runs it must carry, and how that node is picked.
    labels: Option<BTreeMap<String, String>>,
    strategy: Option<String>,
}

/// The reply, as API.md defines it (plus `invalid_utf8`, `policy_hits`, `message` and
/// `artifacts_omitted`).
#[derive(Debug, Serialize)]
pub(super) struct ExecuteReply {
    trace_id: TraceId,
    status: Status,
    exit_code: Option<i64>,
    /// Left out of a WebSocket's `exit` frame: the output came in frames of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr: Option<String>,
    duration_ms: u64,
    timed_out: bool,
    oom_killed: bool,
    truncated: bool,
    invalid_utf8: bool,
    redactions: Vec<Redaction>,
    policy_hits: Vec<PolicyHit>,
    message: Option<String>,
    artifacts: Vec<Artifact>,
    artifacts_omitted: Vec<Omitted>,
    /// A sandbox's code cell: `result`, `error`, `interrupted`, `restarted` (absent otherwise).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    cell: Option<CellOutcome>,
    /// Handler mode: `result` (the JSON the handler returned) or `error` (absent otherwise).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    handler: Option<HandlerOutcome>,
    /// The node that ran it (absent for a sandbox's step).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// Nodes that failed it before its program started, when there were any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<NodeAttempt>,
}

impl From<Execution> for ExecuteReply {
    fn from(execution: Execution) -> Self {
        let Execution {
            trace_id,
            status,
            exit_code,
            stdout,
            stderr,
            duration_ms,
            timed_out,
            oom_killed,
            truncated,
            invalid_utf8,
            redactions,
            policy_hits,
            message,
            artifacts,
            artifacts_omitted,
            cell,
            handler,
            node,
            attempts,
        } = execution;
        ExecuteReply {
            trace_id,
            status,
            exit_code,
            stdout: Some(stdout),
            stderr: Some(stderr),
            duration_ms,
            timed_out,
            oom_killed,
            truncated,
            invalid_utf8,
            redactions,
            policy_hits,
            message,
            artifacts,
            artifacts_omitted,
            cell,
            handler,
            node,
            attempts,
        }
    }
}

impl ExecuteReply {
    /// The reply without its output, for a client that had the output as it came.
    pub(super) fn without_output(self) -> ExecuteReply {
        ExecuteReply { stdout: None, stderr: None, ..self }
    }
}

impl TryFrom<ExecuteBody> for Submission {
    type Error = ApiError;

    fn try_from(body: ExecuteBody) -> Result<Submission, ApiError> {
        let ExecuteBody {
            code,
            language,
            stdin,
            timeout,
            memory_mb,
            env,
            files: _,
            isolation,
            tenant,
            handler,
            event,
            labels,
            strategy,
        } = body;
        let code = code.ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingCode,
                "`code` is required: send the program as a JSON string, e.g. {\"code\": \"print(1)\"}",
            )
        })?;
        Ok(Submission {
            code,
            language,
            stdin: stdin.unwrap_or_default(),
            env: env.unwrap_or_default(),
            timeout_secs: timeout,
            memory_mb,
            isolation,
            tenant,
            owner: None,
            handler,
            event,
            labels: labels.unwrap_or_default(),
            strategy,
        })
    }
}

/// An `execute` message's body turned into a sandbox's step.
pub(super) enum Step {
    Command(CommandRequest),
    Cell(CodeRequest),
}

impl ExecuteBody {
    /// The step this body asks of a sandbox: `cmd` as a command (with this body's `stdin`,
    /// `env`, `timeout`), else its `code` as a cell. Fields a sandbox's step has no use for are
    /// refused, naming them.
    pub(super) fn into_step(self, cmd: Option<String>) -> Result<Step, ApiError> {
        let ExecuteBody {
            code,
            language,
            stdin,
            timeout,
            memory_mb,
            env,
            files,
            isolation,
            tenant,
            handler,
            event,
            labels,
            strategy,
        } = self;
        let unused = [
            ("memory_mb", memory_mb.is_some()),
            ("files", files.is_some()),
            ("isolation", isolation.is_some()),
            ("tenant", tenant.is_some()),
            ("labels", labels.is_some()),
            ("strategy", strategy.is_some()),
        ];
        if let Some((field, _)) = unused.iter().find(|(_, given)| *given) {
            return Err(ApiError::new(
                ErrorCode::InvalidMessage,
                format!("`{field}` is not for a sandbox's step: the sandbox has its own (set when it was made)"),
            ));
        }
        if handler.is_some() || event.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidMessage,
                "`handler` and `event` are not for a sandbox's step: a cell's last expression is already its \
                 `result`, so call the function in the cell (e.g. `handler({\"k\": 1}, None)`)",
            ));
        }
        match (cmd, code) {
            (Some(cmd), None) => Ok(Step::Command(CommandRequest {
                cmd,
                cwd: None,
                env: env.unwrap_or_default(),
                timeout,
                stdin: stdin.unwrap_or_default(),
            })),
            (None, Some(code)) => {
                if stdin.is_some() || env.is_some() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidMessage,
                        "a cell takes no `stdin` or `env`; send a `cmd` for a command",
                    ));
                }
                Ok(Step::Cell(CodeRequest { code, language, timeout }))
            }
            _ => Err(ApiError::new(
                ErrorCode::InvalidMessage,
                "a step in a sandbox needs exactly one of `code` (a cell) and `cmd` (a command)",
            )),
        }
    }

    /// The checked request, its input files found in `uploads/`: what both doors hand the pipeline.
    /// The run is `caller`'s: its trace, its recycled containers and its input files are its
    /// tenant's.
    pub(super) async fn into_request(
        mut self,
        services: &Services,
        source: Source,
        caller: &Caller,
    ) -> Result<ExecutionRequest, ApiError> {
        let files = self.files.take().unwrap_or_default();
        let mut submission = Submission::try_from(self)?;
        submission.owner = caller.owner().map(str::to_owned);
        let mut request = submission.check(services.runner.request_limits(), source)?;
        request.files = services.files.inputs(&files, caller.owner()).await?;
        Ok(request)
    }
}

/// `POST /execute`
pub async fn execute(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let why = "more than the largest code, stdin and event allowed (TRACEBOX_MAX_CODE_BYTES, TRACEBOX_MAX_STDIN_BYTES)";
    let body: ExecuteBody = read_json(&request, payload, request_limit(&services.config), why).await?;
    let request = body.into_request(&services, Source::Http, &caller).await?;
    let _run = caller.run_permit()?;
    let execution = services.runner.execute(request).await?;
    if execution.status == Status::Blocked {
        return Err(ApiError::blocked(&execution));
    }
    Ok(HttpResponse::Ok().json(ExecuteReply::from(execution)))
}

/// The largest body worth reading: the largest code, stdin and handler event (each as large as a
/// stdin) in the most verbose legal JSON (`\u0000` is six bytes for one), plus the environment
/// and room for the rest.
fn request_limit(config: &Config) -> usize {
    let inputs = config.max_code_bytes + 2 * config.max_stdin_bytes + crate::submission::MAX_ENV_BYTES;
    inputs.saturating_mul(6) + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: serde_json::Value) -> ExecuteBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_sandbox_step_refuses_handler_mode_saying_what_to_do_instead() {
        for extra in [json!({"handler": "handler"}), json!({"event": {"a": 1}})] {
            let mut fields = json!({"code": "handler({}, None)"});
            fields.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let Err(refused) = body(fields).into_step(None) else { panic!("a step took handler mode") };
            assert!(refused.to_string().contains("call the function in the cell"), "{refused}");
        }
        assert!(body(json!({"code": "1 + 1"})).into_step(None).is_ok());
    }

    #[test]
    fn a_reply_carries_the_result_or_the_error_at_its_top_level() {
        let id = TraceId::new();
        let returned =
            Execution { handler: Some(HandlerOutcome::Result(json!(null))), ..Execution::empty(id, Status::Success) };
        let reply = serde_json::to_value(ExecuteReply::from(returned)).unwrap();
        assert_eq!(reply["result"], json!(null));
        assert!(reply.as_object().unwrap().contains_key("result") && reply.get("error").is_none(), "{reply}");
        let raised =
            Execution { handler: Some(HandlerOutcome::error("E", "m")), ..Execution::empty(id, Status::Error) };
        let reply = serde_json::to_value(ExecuteReply::from(raised)).unwrap();
        assert_eq!(reply["error"], json!({"type": "E", "message": "m", "stack": ""}));
        let plain = serde_json::to_value(ExecuteReply::from(Execution::empty(id, Status::Success))).unwrap();
        assert!(plain.get("result").is_none() && plain.get("error").is_none(), "{plain}");
    }
}
