//! Every HTTP error answer, in one place: a stable snake_case code with its status, and a
//! message that names the problem and the fix. The body always has the shape API.md promises.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use tracebox_model::{Execution, TraceId};

use super::Stall;
use super::guard::Refusal;
use crate::access::AccessError;
use crate::claude::{AskError, ClaudeError, QuestionError, StreamError};
use crate::files::FileError;
use crate::nodes::NodesError;
use crate::runner::RunError;
use crate::sandbox::SandboxError;
use crate::sandboxes::SandboxesError;
use crate::submission::RequestError;
use crate::trace::StoreError;

/// Every error code tracebox answers with. The code is the contract; the message may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    MissingCode,
    UnknownLanguage,
    InvalidLimit,
    InvalidEnv,
    InvalidQuery,
    BlockedByPolicy,
    NoSuchTrace,
    NoSuchRoute,
    NoSuchFile,
    MethodNotAllowed,
    CodeTooLarge,
    StdinTooLarge,
    EnvTooLarge,
    BodyTooLarge,
    UnsupportedEncoding,
    SandboxUnavailable,
    Busy,
    Internal,
    /// A browser request from a page of another origin, to anything but a static asset or a
    /// link to a page (see `guard.rs`).
    CrossOrigin,
    /// A `Host` the server does not answer to (TRACEBOX_ALLOWED_HOSTS): DNS rebinding, or a name
    /// the operator has not listed.
    MisdirectedRequest,
    /// An HTTP/1.1 request without a `Host`, with several, or with one that is not host[:port].
    InvalidHost,
    /// A WebSocket message of an unknown `type`, or not a JSON object.
    InvalidMessage,
    /// A WebSocket message over TRACEBOX_WS_MAX_MESSAGE_BYTES.
    MessageTooLarge,
    /// A WebSocket message naming a run that is not going on this socket.
    NoSuchRun,
    /// A WebSocket `execute` reusing the id of a run still going.
    DuplicateRunId,
    /// A WebSocket already has TRACEBOX_WS_MAX_RUNS runs going.
    TooManyRuns,
    /// `stdin` for a run whose stdin is closed.
    StdinClosed,
    /// `GET /ws` without a WebSocket handshake.
    UpgradeRequired,
    /// A file name that breaks a rule of `FileName` (a path, a control character, a reserved name…).
    InvalidFileName,
    /// An uploaded file over TRACEBOX_UPLOAD_MAX_FILE_BYTES.
    FileTooLarge,
    /// A `Range` that starts past the end of a sandbox's file.
    RangeNotSatisfiable,
    /// The files of one upload over TRACEBOX_UPLOAD_MAX_REQUEST_BYTES.
    UploadTooLarge,
    /// An upload that would take the files in uploads/ past TRACEBOX_UPLOAD_MAX_TOTAL_BYTES.
    UploadQuotaExceeded,
    /// `POST /upload` that is not multipart, has no file, or a field other than `file`.
    InvalidUpload,
    /// A Claude call with neither `prompt` nor `messages`.
    MissingPrompt,
    /// A Claude call's field that does not fit (both prompt and messages, a bad turn, max_tokens…).
    InvalidPrompt,
    /// No ANTHROPIC_API_KEY on this server.
    ClaudeNotConfigured,
    /// Anthropic refused the request as the caller made it (an unknown model, too long…).
    ClaudeRejected,
    /// Anthropic refused this server's key.
    ClaudeAuthFailed,
    /// Anthropic rate-limited the call, past the retries.
    ClaudeRateLimited,
    /// Anthropic was overloaded, failing or unreachable, past the retries.
    ClaudeUnavailable,
    /// Claude's reply broke off or could not be read.
    ClaudeBadReply,
    /// `POST /batch` with a prompt set that is not one.
    InvalidPromptSet,
    /// `isolation` or `tenant` the server does not allow.
    InvalidIsolation,
    /// A `handler` that is not a function's name, or an `event` without one.
    InvalidHandler,
    /// An `event` over TRACEBOX_MAX_STDIN_BYTES.
    EventTooLarge,
    /// A request body that paused past TRACEBOX_BODY_READ_TIMEOUT_SECS, or came slower than
    /// TRACEBOX_BODY_MIN_BYTES_PER_SEC.
    RequestTimeout,
    /// No sandbox of that id (or it was deleted).
    NoSuchSandbox,
    /// A sandbox's field out of bounds or malformed (the message names it).
    InvalidSandbox,
    /// A sandbox not in a state for this (paused: resume it).
    SandboxConflict,
    /// TRACEBOX_SANDBOX_MAX sandboxes exist already.
    TooManySandboxes,
    /// A step runs in the sandbox and TRACEBOX_SANDBOX_MAX_QUEUED_STEPS wait.
    SandboxBusy,
    /// A path outside /workspace, or one that does not fit the operation.
    BadPath,
    /// Snapshots past TRACEBOX_SNAPSHOT_MAX_BYTES or TRACEBOX_SNAPSHOT_MAX_TOTAL_BYTES.
    SnapshotQuota,
    /// `/sandboxes/{id}/tools/{name}` naming no tool.
    NoSuchTool,
    /// A sandbox's `repo` that is not one tracebox clones (a URL of another transport, a value
    /// git could read as an option).
    InvalidRepo,
    /// The repository could not be set up: the clone failed or timed out, the commit is not in
    /// it, it is too large.
    RepoFailed,
    /// A sandbox's `setup` command that failed; the sandbox is not kept.
    SetupFailed,
    /// No API key (or token) where one is needed, or one that is unknown, revoked or expired.
    Unauthorized,
    /// A token used beyond what it was made for (another sandbox, a write with a read-only one).
    Forbidden,
    /// A key over its rate of requests.
    RateLimited,
    /// A tenant holding as many sandboxes as its key allows.
    SandboxLimit,
    /// `labels` that no configured node carries.
    NoNodeMatches,
    /// The nodes that fit are all down or draining, or the sandbox's node is down.
    NodeDown,
    /// `/nodes/{name}` naming no node.
    NoSuchNode,
    /// A `labels` or `strategy` field that is malformed.
    InvalidPlacement,
    /// A schedule with no tasks, or more than a schedule holds.
    InvalidSchedule,
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson | MissingCode | UnknownLanguage | InvalidLimit | InvalidEnv | InvalidQuery | InvalidMessage
            | DuplicateRunId | StdinClosed | InvalidFileName | InvalidUpload | MissingPrompt | InvalidPrompt
            | ClaudeRejected | InvalidPromptSet | InvalidIsolation | InvalidHost | InvalidSandbox | BadPath
            | InvalidRepo | InvalidHandler | InvalidPlacement | InvalidSchedule => StatusCode::BAD_REQUEST,
            NoNodeMatches => StatusCode::UNPROCESSABLE_ENTITY,
            NodeDown => StatusCode::SERVICE_UNAVAILABLE,
            NoSuchNode => StatusCode::NOT_FOUND,
            SandboxConflict | TooManySandboxes | SandboxBusy => StatusCode::CONFLICT,
            NoSuchSandbox | NoSuchTool => StatusCode::NOT_FOUND,
            RepoFailed | SetupFailed => StatusCode::UNPROCESSABLE_ENTITY,
            SnapshotQuota => StatusCode::PAYLOAD_TOO_LARGE,
            ClaudeAuthFailed | ClaudeBadReply => StatusCode::BAD_GATEWAY,
            ClaudeRateLimited | RateLimited | SandboxLimit => StatusCode::TOO_MANY_REQUESTS,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            ClaudeNotConfigured | ClaudeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            BlockedByPolicy | CrossOrigin => StatusCode::FORBIDDEN,
            MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            NoSuchRun => StatusCode::NOT_FOUND,
            MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyRuns => StatusCode::TOO_MANY_REQUESTS,
            UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            NoSuchTrace | NoSuchRoute | NoSuchFile => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            CodeTooLarge | StdinTooLarge | EnvTooLarge | BodyTooLarge | FileTooLarge | UploadTooLarge
            | UploadQuotaExceeded | EventTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SandboxUnavailable | Busy => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            MissingCode => "missing_code",
            UnknownLanguage => "unknown_language",
            InvalidLimit => "invalid_limit",
            InvalidEnv => "invalid_env",
            InvalidQuery => "invalid_query",
            BlockedByPolicy => "blocked_by_policy",
            NoSuchTrace => "no_such_trace",
            NoSuchRoute => "no_such_route",
            NoSuchFile => "no_such_file",
            MethodNotAllowed => "method_not_allowed",
            CodeTooLarge => "code_too_large",
            StdinTooLarge => "stdin_too_large",
            EnvTooLarge => "env_too_large",
            BodyTooLarge => "body_too_large",
            UnsupportedEncoding => "unsupported_encoding",
            SandboxUnavailable => "sandbox_unavailable",
            Busy => "busy",
            Internal => "internal_error",
            CrossOrigin => "cross_origin",
            MisdirectedRequest => "misdirected_request",
            InvalidHost => "invalid_host",
            InvalidMessage => "invalid_message",
            MessageTooLarge => "message_too_large",
            NoSuchRun => "no_such_run",
            DuplicateRunId => "duplicate_run_id",
            TooManyRuns => "too_many_runs",
            StdinClosed => "stdin_closed",
            UpgradeRequired => "upgrade_required",
            InvalidFileName => "invalid_file_name",
            FileTooLarge => "file_too_large",
            RangeNotSatisfiable => "range_not_satisfiable",
            UploadTooLarge => "upload_too_large",
            UploadQuotaExceeded => "upload_quota_exceeded",
            InvalidUpload => "invalid_upload",
            MissingPrompt => "missing_prompt",
            InvalidPrompt => "invalid_prompt",
            ClaudeNotConfigured => "claude_not_configured",
            ClaudeRejected => "claude_rejected",
            ClaudeAuthFailed => "claude_auth_failed",
            ClaudeRateLimited => "claude_rate_limited",
            ClaudeUnavailable => "claude_unavailable",
            ClaudeBadReply => "claude_bad_reply",
            InvalidPromptSet => "invalid_prompt_set",
            InvalidIsolation => "invalid_isolation",
            InvalidHandler => "invalid_handler",
            EventTooLarge => "event_too_large",
            RequestTimeout => "request_timeout",
            NoSuchSandbox => "no_such_sandbox",
            InvalidSandbox => "invalid_sandbox",
            SandboxConflict => "sandbox_conflict",
            TooManySandboxes => "too_many_sandboxes",
            SandboxBusy => "sandbox_busy",
            BadPath => "bad_path",
            SnapshotQuota => "snapshot_quota",
            NoSuchTool => "no_such_tool",
            InvalidRepo => "invalid_repo",
            RepoFailed => "repo_failed",
            SetupFailed => "setup_failed",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            RateLimited => "rate_limited",
            SandboxLimit => "sandbox_limit",
            NoNodeMatches => "no_node_matches",
            NodeDown => "node_down",
            NoSuchNode => "no_such_node",
            InvalidPlacement => "invalid_placement",
            InvalidSchedule => "invalid_schedule",
        }
    }
}

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    trace_id: Option<TraceId>,
    /// Extra headers (`Retry-After`, `Allow`).
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// More top-level fields of the body (the matched rules of a blocked run).
    extra: serde_json::Map<String, Value>,
}

impl ApiError {
    /// An error with `code` and a message that says what to do about it.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), trace_id: None, headers: Vec::new(), extra: serde_json::Map::new() }
    }

    /// What kind of error this is.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What went wrong and how to fix it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The trace that records the failure, when there is one.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.trace_id
    }

    /// The same error, its message led by `context` (which of several things it is about).
    pub fn prefixed(mut self, context: &str) -> ApiError {
        self.message.insert_str(0, context);
        self
    }

    /// The same error, recorded by trace `id`.
    pub fn with_trace(mut self, id: TraceId) -> ApiError {
        self.trace_id = Some(id);
        self
    }

    fn with_header(mut self, name: header::HeaderName, value: impl TryInto<HeaderValue>) -> ApiError {
        if let Ok(value) = value.try_into() {
            self.headers.push((name, value));
        }
        self
    }

    /// 405, naming the method that route takes.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &'static str) -> ApiError {
        ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} takes {allowed}, not {method}"))
            .with_header(header::ALLOW, allowed)
    }

    /// 403 for code the policy's screen refused; the body carries the trace and the matched rules,
    /// and the message (the run's own) says that the screen is not the wall, the container is.
    pub fn blocked(execution: &Execution) -> ApiError {
        let rules = execution.blocking_rules();
        let mut error = ApiError::new(ErrorCode::BlockedByPolicy, execution.message.clone().unwrap_or_default());
        error.trace_id = Some(execution.trace_id);
        error.extra.insert("status".into(), json!(execution.status));
        error.extra.insert("rules".into(), json!(rules));
        error.extra.insert("policy_hits".into(), json!(execution.policy_hits));
        error
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "error": { "code": self.code.as_str(), "message": self.message },
            "trace_id": self.trace_id,
        });
        if let Some(object) = body.as_object_mut() {
            object.extend(self.extra.clone());
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// An error type, so a streamed body (the export) can end with one.
impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    /// The one place errors are logged: failures of tracebox loudly, refusals quietly.
    fn error_response(&self) -> HttpResponse {
        let (code, message, trace_id) = (self.code.as_str(), &self.message, self.trace_id.map(|id| id.to_string()));
        match self.code {
            ErrorCode::Internal => tracing::error!(code, %message, ?trace_id, "request failed"),
            ErrorCode::SandboxUnavailable
            | ErrorCode::ClaudeAuthFailed
            | ErrorCode::ClaudeUnavailable
            | ErrorCode::ClaudeBadReply
            | ErrorCode::ClaudeNotConfigured => tracing::warn!(code, %message, ?trace_id, "request failed"),
            // A page trying to drive the server, or a name of it the operator forgot to list.
            ErrorCode::CrossOrigin | ErrorCode::MisdirectedRequest => tracing::warn!(code, %message, "request refused"),
            _ => tracing::debug!(code, %message, "request refused"),
        }
        let mut response = HttpResponse::build(self.status_code());
        if self.code == ErrorCode::RequestTimeout {
            // The rest of a stalled body is never read: the connection goes with the answer
            // (`Connection: close`, as RFC 9110 asks of a 408), and so does what held it open.
            response.force_close();
        }
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(self.body())
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        let message = error.to_string();
        let retry_after = |seconds: u64| seconds.max(1).to_string();
        match error {
            AccessError::Missing | AccessError::BadKey | AccessError::BadToken(_) => {
                ApiError::new(ErrorCode::Unauthorized, message)
                    .with_header(header::WWW_AUTHENTICATE, r#"Bearer realm="tracebox""#)
            }
            AccessError::Forbidden(_) => ApiError::new(ErrorCode::Forbidden, message),
            AccessError::Invalid(_) => ApiError::new(ErrorCode::InvalidLimit, message),
            AccessError::BadTenant(_) => ApiError::new(ErrorCode::InvalidQuery, message),
            AccessError::RateLimited { retry_after: wait, .. } => ApiError::new(ErrorCode::RateLimited, message)
                .with_header(header::RETRY_AFTER, retry_after(wait.as_secs_f64().ceil() as u64)),
            AccessError::TooManyRuns { .. } => {
                ApiError::new(ErrorCode::TooManyRuns, message).with_header(header::RETRY_AFTER, retry_after(1))
            }
            AccessError::TooManySandboxes { .. } => ApiError::new(ErrorCode::SandboxLimit, message),
            AccessError::Store(error) => ApiError::from(error),
            AccessError::Secret { .. } => ApiError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> ApiError {
        let code = match &error {
            RunError::Sandbox { source, .. } if source.is_unavailable() => ErrorCode::SandboxUnavailable,
            RunError::Sandbox { source, .. } if source.is_busy() => ErrorCode::Busy,
            RunError::Sandbox { source: SandboxError::SessionRemoved, .. } => ErrorCode::SandboxConflict,
            RunError::Busy { .. } => ErrorCode::Busy,
            RunError::Placement { source, .. } => NodesError::code(source),
            _ => ErrorCode::Internal,
        };
        let mut api = ApiError::new(code, error.to_string());
        api.trace_id = error.trace_id();
        if code == ErrorCode::Busy || code == ErrorCode::NodeDown {
            api = api.with_header(header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        api
    }
}

/// What a busy server asks clients to wait before retrying.
const RETRY_AFTER_SECS: u64 = 1;

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        let code = match &error {
            RequestError::CodeTooLarge { .. } => ErrorCode::CodeTooLarge,
            RequestError::StdinTooLarge { .. } => ErrorCode::StdinTooLarge,
            RequestError::EnvTooLarge { .. } => ErrorCode::EnvTooLarge,
            RequestError::Language(_) => ErrorCode::UnknownLanguage,
            RequestError::Limit(_) => ErrorCode::InvalidLimit,
            RequestError::Env(_) => ErrorCode::InvalidEnv,
            RequestError::Isolation(_) => ErrorCode::InvalidIsolation,
            RequestError::Handler(_) => ErrorCode::InvalidHandler,
            RequestError::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            RequestError::Placement(_) => ErrorCode::InvalidPlacement,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<SandboxesError> for ApiError {
    fn from(error: SandboxesError) -> ApiError {
        if let SandboxesError::RangeNotSatisfiable { size } = error {
            return ApiError::new(ErrorCode::RangeNotSatisfiable, error.to_string())
                .with_header(header::CONTENT_RANGE, format!("bytes */{size}"));
        }
        let code = match error {
            SandboxesError::Run(error) => return error.into(),
            SandboxesError::Files(error) => return error.into(),
            SandboxesError::NotFound(_) => ErrorCode::NoSuchSandbox,
            SandboxesError::Invalid(_) => ErrorCode::InvalidSandbox,
            SandboxesError::Conflict(_) => ErrorCode::SandboxConflict,
            SandboxesError::TooMany { .. } => ErrorCode::TooManySandboxes,
            SandboxesError::Busy { .. } => ErrorCode::SandboxBusy,
            SandboxesError::BadPath { .. } => ErrorCode::BadPath,
            SandboxesError::NoSuchFile { .. } => ErrorCode::NoSuchFile,
            SandboxesError::SnapshotQuota { .. } => ErrorCode::SnapshotQuota,
            SandboxesError::TooLarge(_) => ErrorCode::FileTooLarge,
            SandboxesError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            SandboxesError::Repo(ref source) if source.is_request() => ErrorCode::InvalidRepo,
            SandboxesError::Repo(ref source) if source.is_repository() => ErrorCode::RepoFailed,
            SandboxesError::SetupFailed { trace_id, .. } => {
                return ApiError::new(ErrorCode::SetupFailed, error.to_string()).with_trace(trace_id);
            }
            SandboxesError::Node(source) => return source.into(),
            SandboxesError::Sandbox(ref source) if source.is_unavailable() => ErrorCode::SandboxUnavailable,
            SandboxesError::Sandbox(SandboxError::SessionRemoved) => ErrorCode::SandboxConflict,
            SandboxesError::Sandbox(_)
            | SandboxesError::Store(_)
            | SandboxesError::Snapshot(_)
            | SandboxesError::Repo(_)
            | SandboxesError::Unfinished(_) => ErrorCode::Internal,
        };
        ApiError::new(code, error.to_string())
    }
}

impl NodesError {
    /// The code of a placement's failure.
    fn code(&self) -> ErrorCode {
        match self {
            NodesError::NoNodeMatches { .. } => ErrorCode::NoNodeMatches,
            NodesError::NoNodeUp { .. } | NodesError::NodeDown { .. } | NodesError::AllFailed { .. } => {
                ErrorCode::NodeDown
            }
            NodesError::NoSuchNode(_) => ErrorCode::NoSuchNode,
            NodesError::Full { .. } | NodesError::Busy(_) => ErrorCode::Busy,
            NodesError::Sandbox(source) if source.is_unavailable() => ErrorCode::SandboxUnavailable,
            NodesError::Sandbox(source) if source.is_busy() => ErrorCode::Busy,
            NodesError::Sandbox(_) => ErrorCode::Internal,
        }
    }
}

impl From<NodesError> for ApiError {
    fn from(error: NodesError) -> ApiError {
        let code = error.code();
        let api = ApiError::new(code, error.to_string());
        if code == ErrorCode::Busy || code == ErrorCode::NodeDown {
            return api.with_header(header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        api
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::new(ErrorCode::Internal, error.to_string())
    }
}

impl From<FileError> for ApiError {
    fn from(error: FileError) -> ApiError {
        let code = match &error {
            FileError::Name(_) | FileError::Inputs(_) | FileError::ReservedName(_) => ErrorCode::InvalidFileName,
            FileError::NoSuchFile(_) | FileError::NoSuchArtifact { .. } => ErrorCode::NoSuchFile,
            FileError::FileTooLarge { .. } => ErrorCode::FileTooLarge,
            FileError::UploadTooLarge { .. } => ErrorCode::UploadTooLarge,
            FileError::QuotaExceeded { .. } | FileError::TenantQuotaExceeded { .. } => ErrorCode::UploadQuotaExceeded,
            FileError::NoFreeName(_) | FileError::Io { .. } | FileError::Store(_) => ErrorCode::Internal,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<Stall> for ApiError {
    fn from(stall: Stall) -> ApiError {
        ApiError::new(ErrorCode::RequestTimeout, stall.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let code = match &refusal {
            Refusal::NoHost | Refusal::SeveralHosts | Refusal::BadHost(_) => ErrorCode::InvalidHost,
            Refusal::NotOurHost(_) => ErrorCode::MisdirectedRequest,
            Refusal::CrossOrigin { .. } => ErrorCode::CrossOrigin,
        };
        ApiError::new(code, refusal.to_string())
    }
}

impl From<QuestionError> for ApiError {
    fn from(error: QuestionError) -> ApiError {
        let code = match &error {
            QuestionError::Missing => ErrorCode::MissingPrompt,
            QuestionError::Invalid(_) => ErrorCode::InvalidPrompt,
            QuestionError::Language(_) => ErrorCode::UnknownLanguage,
            QuestionError::Limit(_) => ErrorCode::InvalidLimit,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<AskError> for ApiError {
    fn from(error: AskError) -> ApiError {
        let trace_id = error.trace_id();
        let AskError::Claude { error, .. } = error else {
            let mut api = ApiError::new(ErrorCode::Internal, error.to_string());
            api.trace_id = trace_id;
            return api;
        };
        let (code, retry_after, fix) = claude_code(&error);
        let mut api = ApiError::new(code, format!("{error}{fix}"));
        api.trace_id = trace_id;
        if let Some(secs) = retry_after {
            api = api.with_header(header::RETRY_AFTER, secs);
        }
        api
    }
}

/// When tracebox has spent its own retries and Anthropic named no wait: long enough that a
/// client's retry does not land in the same trouble.
const CLAUDE_RETRY_AFTER_SECS: u64 = 10;

/// The code of a failed Claude call, the `Retry-After` for a client, and what to do.
fn claude_code(error: &ClaudeError) -> (ErrorCode, Option<u64>, &'static str) {
    let wait = |asked: &Option<std::time::Duration>| {
        Some(asked.map_or(CLAUDE_RETRY_AFTER_SECS, |w| w.as_secs_f64().ceil().max(1.0) as u64))
    };
    match error {
        ClaudeError::NoApiKey | ClaudeError::Setup(_) => (ErrorCode::ClaudeNotConfigured, None, ""),
        ClaudeError::Api { status: 401 | 403, .. } => {
            (ErrorCode::ClaudeAuthFailed, None, "; check ANTHROPIC_API_KEY on the tracebox server")
        }
        // A spending cap answers 429 with no wait to honour: retrying will not help.
        ClaudeError::Api { status: 429, retry_after: None, message, .. }
            if message.to_lowercase().contains("spend") =>
        {
            (ErrorCode::ClaudeRateLimited, None, "; this is a spending limit of the account, not a rate: raise it")
        }
        ClaudeError::Api { status: 429, retry_after, .. } => (ErrorCode::ClaudeRateLimited, wait(retry_after), ""),
        ClaudeError::Api { status, retry_after, .. } if *status >= 500 || matches!(status, 408 | 409) => {
            (ErrorCode::ClaudeUnavailable, wait(retry_after), "")
        }
        ClaudeError::Api { status: 402, .. } => {
            (ErrorCode::ClaudeAuthFailed, None, "; the account behind ANTHROPIC_API_KEY needs billing attention")
        }
        ClaudeError::Api { .. } => (ErrorCode::ClaudeRejected, None, ""),
        ClaudeError::Unreachable { .. } => (ErrorCode::ClaudeUnavailable, wait(&None), ""),
        ClaudeError::Stream { source: StreamError::Api { kind, .. }, .. } if kind == "overloaded_error" => {
            (ErrorCode::ClaudeUnavailable, wait(&None), "")
        }
        ClaudeError::Stream { .. } | ClaudeError::Malformed { .. } => (ErrorCode::ClaudeBadReply, None, ""),
    }
}

/// Query strings that do not parse answer in the same shape.
pub fn query_error(error: actix_web::error::QueryPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::InvalidQuery, format!("invalid query string: {error}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn answer(error: ApiError) -> (HttpResponse, Value) {
        let response = error.error_response();
        let (response, body) = response.into_parts();
        let bytes = to_bytes(body).await.unwrap();
        (response.set_body(()).map_into_boxed_body(), serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn each_claude_failure_has_its_status_retry_after_and_fix() {
        use std::time::Duration;
        let api = |status: u16, message: &str, retry_after: Option<Duration>| ClaudeError::Api {
            status,
            kind: "x".into(),
            message: message.into(),
            request_id: None,
            retry_after,
        };
        let stream = |kind: &str| ClaudeError::Stream {
            source: StreamError::Api { kind: kind.into(), message: "m".into() },
            request_id: None,
        };
        let cases = [
            (ClaudeError::NoApiKey, 503, None),
            (ClaudeError::Setup("bad key".into()), 503, None),
            (api(401, "invalid x-api-key", None), 502, None),
            (api(429, "slow down", Some(Duration::from_millis(1500))), 429, Some(2)),
            (api(429, "slow down", None), 429, Some(CLAUDE_RETRY_AFTER_SECS)),
            (api(429, "You have reached your spend limit", None), 429, None),
            (api(529, "Overloaded", Some(Duration::from_secs(3))), 503, Some(3)),
            (api(400, "max_tokens: too large", None), 400, None),
            (api(404, "model: not found", None), 400, None),
            (
                ClaudeError::Unreachable { url: "u".into(), detail: "refused".into() },
                503,
                Some(CLAUDE_RETRY_AFTER_SECS),
            ),
            (stream("overloaded_error"), 503, Some(CLAUDE_RETRY_AFTER_SECS)),
            (stream("invalid_request_error"), 502, None),
        ];
        for (error, status, retry_after) in cases {
            let shown = error.to_string();
            let (code, wait, _) = claude_code(&error);
            assert_eq!((code.status().as_u16(), wait), (status, retry_after), "{shown}");
        }
        let (_, _, fix) = claude_code(&api(401, "invalid x-api-key", None));
        assert!(fix.contains("ANTHROPIC_API_KEY"));
    }

    #[actix_web::test]
    async fn every_error_has_the_contract_shape() {
        let (response, body) = answer(ApiError::new(ErrorCode::MissingCode, "`code` is required")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": {"code": "missing_code", "message": "`code` is required"}, "trace_id": null}));
    }

    #[actix_web::test]
    async fn a_busy_server_says_when_to_retry() {
        let error = RunError::Busy { trace_id: TraceId::new(), message: "all slots busy".into() };
        let (response, body) = answer(ApiError::from(error)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(body["error"]["code"], "busy");
        assert!(body["trace_id"].is_string());
    }

    #[actix_web::test]
    async fn a_wrong_method_names_the_right_one() {
        let (response, body) = answer(ApiError::method_not_allowed("GET", "/execute", "POST")).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "POST");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }

    #[test]
    fn the_guards_refusals_map_to_their_statuses() {
        let cases = [
            (Refusal::NoHost, 400, "invalid_host"),
            (Refusal::SeveralHosts, 400, "invalid_host"),
            (Refusal::BadHost("a b".into()), 400, "invalid_host"),
            (Refusal::NotOurHost("evil.example:5000".into()), 421, "misdirected_request"),
            (
                Refusal::CrossOrigin { from: "x".into(), method: "POST".into(), path: "/execute".into() },
                403,
                "cross_origin",
            ),
        ];
        for (refusal, status, code) in cases {
            let error = ApiError::from(refusal);
            assert_eq!((error.status_code().as_u16(), error.code.as_str()), (status, code), "{error}");
        }
    }

    #[test]
    fn request_errors_map_to_their_statuses() {
        let too_large = ApiError::from(RequestError::CodeTooLarge { size: 2, limit: 1 });
        assert_eq!(too_large.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        let file = ApiError::from(FileError::FileTooLarge { name: "a".into(), limit: 1 });
        assert_eq!((file.status_code(), file.code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large"));
        assert!(file.message.contains("TRACEBOX_UPLOAD_MAX_FILE_BYTES"), "{file}");
        let quota = ApiError::from(FileError::QuotaExceeded { limit: 10, taken: 8 });
        assert_eq!(
            (quota.status_code(), quota.code.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "upload_quota_exceeded")
        );
        assert!(
            quota.message.contains("TRACEBOX_UPLOAD_MAX_TOTAL_BYTES") && quota.message.contains("10 bytes"),
            "{quota}"
        );
        let name = ApiError::from(FileError::Name(crate::files::NameError::Empty));
        assert_eq!((name.status_code(), name.code.as_str()), (StatusCode::BAD_REQUEST, "invalid_file_name"));
        let env = ApiError::from(RequestError::EnvTooLarge { size: 1 });
        assert_eq!((env.status_code(), env.code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "env_too_large"));
    }
}
