//! Every HTTP error answer, in one place: a stable snake_case code, the status, and a message
//! that names the problem and the fix. The body always has the shape API.md promises.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use crate::execution::Execution;
use crate::runner::RunError;
use crate::trace::{StoreError, TraceId};

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    trace_id: Option<TraceId>,
    retry_after_secs: Option<u64>,
    /// More top-level fields of the body (the matched rules of a blocked run).
    extra: Option<serde_json::Map<String, Value>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            trace_id: None,
            retry_after_secs: None,
            extra: None,
        }
    }

    /// 400: the request is wrong; `code` says how, the message says what to send instead.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413: something is over its configured limit; the message names the limit.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 403 for code the policy refused; the body carries the trace and the matched rules.
    pub fn blocked(execution: &Execution) -> ApiError {
        let rules: Vec<&str> = execution
            .policy_hits
            .iter()
            .filter(|hit| hit.action == crate::policy::Action::Block)
            .map(|hit| hit.rule.as_str())
            .collect();
        let mut extra = serde_json::Map::new();
        extra.insert("status".into(), json!(execution.status));
        extra.insert("rules".into(), json!(rules));
        extra.insert("policy_hits".into(), json!(execution.policy_hits));
        ApiError {
            trace_id: Some(execution.trace_id),
            extra: Some(extra),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "blocked_by_policy",
                execution.message.clone().unwrap_or_default(),
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "error": { "code": self.code, "message": self.message },
            "trace_id": self.trace_id,
        });
        if let (Some(extra), Some(object)) = (&self.extra, body.as_object_mut()) {
            object.extend(extra.clone());
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        response.json(self.body())
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> ApiError {
        let trace_id = error.trace_id();
        let mut api = match &error {
            RunError::Sandbox { source, .. } if source.is_unavailable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_unavailable",
                error.to_string(),
            ),
            RunError::Busy { .. } => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string())
            },
            _ => ApiError::internal(error.to_string()),
        };
        api.trace_id = trace_id;
        api
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::internal(error.to_string())
    }
}

/// Query strings that do not parse answer in the same shape.
pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request("invalid_query", format!("invalid query string: {error}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(error: ApiError) -> (StatusCode, Value) {
        let response = error.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn every_error_has_the_contract_shape() {
        let (status, body) =
            body_of(ApiError::bad_request("missing_code", "`code` is required")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {"code": "missing_code", "message": "`code` is required"}, "trace_id": null})
        );
    }

    #[actix_web::test]
    async fn a_busy_server_says_when_to_retry() {
        let error = RunError::Busy {
            trace_id: TraceId::new(),
            slots: 2,
            waited_secs: 3.0,
        };
        let response = ApiError::from(error).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
