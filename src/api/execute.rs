//! `POST /execute`: a JSON program in, its result out, through the one pipeline.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{AppState, read_json};
use crate::config::Config;
use crate::execution::{Execution, ExecutionRequest, Language, Source, Status};
use crate::policy::{PolicyHit, Redaction};
use crate::trace::TraceId;

/// Most environment variables a request may set.
const MAX_ENV_VARS: usize = 100;

/// The request body, as clients send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    code: Option<String>,
    language: Option<String>,
    stdin: Option<String>,
    timeout: Option<f64>,
    memory_mb: Option<u64>,
    env: Option<BTreeMap<String, String>>,
}

/// The reply, as API.md defines it (plus `invalid_utf8`, `policy_hits` and `message`).
#[derive(Debug, Serialize)]
pub struct ExecuteReply {
    trace_id: TraceId,
    status: Status,
    exit_code: Option<i64>,
    stdout: String,
    stderr: String,
    duration_ms: u64,
    timed_out: bool,
    oom_killed: bool,
    truncated: bool,
    invalid_utf8: bool,
    redactions: Vec<Redaction>,
    policy_hits: Vec<PolicyHit>,
    message: Option<String>,
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
        } = execution;
        ExecuteReply {
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
        }
    }
}

impl ExecuteBody {
    /// Check every field against the server's limits, naming the field that is wrong.
    pub fn into_request(
        self,
        config: &Config,
        source: Source,
    ) -> Result<ExecutionRequest, ApiError> {
        let ExecuteBody {
            code,
            language,
            stdin,
            timeout,
            memory_mb,
            env,
        } = self;
        let code = code.ok_or_else(|| {
            ApiError::bad_request(
                "missing_code",
                "`code` is required: send the program as a JSON string, e.g. {\"code\": \"print(1)\"}",
            )
        })?;
        if code.len() > config.max_code_bytes {
            return Err(ApiError::too_large(
                "code_too_large",
                format!(
                    "`code` is {} bytes; the limit is {} bytes (TRACEBOX_MAX_CODE_BYTES)",
                    code.len(),
                    config.max_code_bytes
                ),
            ));
        }
        let stdin = stdin.unwrap_or_default();
        if stdin.len() > config.max_stdin_bytes {
            return Err(ApiError::too_large(
                "stdin_too_large",
                format!(
                    "`stdin` is {} bytes; the limit is {} bytes (TRACEBOX_MAX_STDIN_BYTES)",
                    stdin.len(),
                    config.max_stdin_bytes
                ),
            ));
        }
        let language = match language {
            None => Language::Python,
            Some(name) => name.parse().map_err(|e| {
                ApiError::bad_request("unknown_language", format!("`language`: {e}"))
            })?,
        };
        let limits = config
            .run_limits(timeout, memory_mb)
            .map_err(|e| ApiError::bad_request("invalid_limit", e.to_string()))?;
        let env = env.unwrap_or_default();
        check_env(&env)?;
        Ok(ExecutionRequest {
            language,
            code,
            stdin,
            env,
            limits,
            source,
        })
    }
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let invalid = |message: String| {
        Err(ApiError::bad_request(
            "invalid_env",
            format!("`env`: {message}"),
        ))
    };
    if env.len() > MAX_ENV_VARS {
        return invalid(format!(
            "{} variables; at most {MAX_ENV_VARS} are allowed",
            env.len()
        ));
    }
    for (name, value) in env {
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return invalid(format!(
                "{name:?} is not a variable name; use letters, digits and '_', not starting with a digit"
            ));
        }
        if value.contains('\0') {
            return invalid(format!("the value of {name} contains a NUL byte"));
        }
    }
    Ok(())
}

/// `POST /execute`
pub async fn execute(
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let config = state.runner.config();
    let body: ExecuteBody = read_json(payload, request_limit(config)).await?;
    let request = body.into_request(config, Source::Http)?;
    let execution = state.runner.execute(request).await?;
    if execution.status == Status::Blocked {
        return Err(ApiError::blocked(&execution));
    }
    Ok(HttpResponse::Ok().json(ExecuteReply::from(execution)))
}

/// The largest body worth reading: the largest code and stdin, escaped, plus room for the rest.
fn request_limit(config: &Config) -> usize {
    (config.max_code_bytes + config.max_stdin_bytes).saturating_mul(2) + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ExecuteBody {
        serde_json::from_str(json).unwrap()
    }

    fn refusal(json: &str) -> String {
        body(json)
            .into_request(&Config::from_env(), Source::Http)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn only_code_is_required_and_python_is_the_default() {
        let request = body(r#"{"code": "print(1)"}"#)
            .into_request(&Config::from_env(), Source::Http)
            .unwrap();
        assert_eq!(request.language, Language::Python);
        assert_eq!(
            request.limits.timeout.as_secs_f64(),
            Config::from_env().default_timeout_secs
        );
    }

    #[test]
    fn each_refusal_names_its_field() {
        assert!(refusal(r#"{}"#).contains("missing_code"));
        assert!(refusal(r#"{"code": "", "language": "ruby"}"#).contains("`language`"));
        assert!(refusal(r#"{"code": "", "timeout": 0}"#).contains("`timeout`"));
        assert!(refusal(r#"{"code": "", "memory_mb": 999999}"#).contains("`memory_mb`"));
        assert!(refusal(r#"{"code": "", "env": {"1X": "a"}}"#).contains("`env`"));
        assert!(refusal(r#"{"code": "", "env": {"A": "a\u0000"}}"#).contains("NUL"));
    }

    #[test]
    fn code_and_stdin_at_their_limits_pass_and_one_byte_more_does_not() {
        let config = Config::from_env();
        let at = |field: &str, len: usize| {
            let mut fields = serde_json::json!({"code": ""});
            fields[field] = serde_json::Value::String("x".repeat(len));
            serde_json::from_value::<ExecuteBody>(fields)
                .unwrap()
                .into_request(&config, Source::Http)
        };
        assert!(at("code", config.max_code_bytes).is_ok());
        assert!(
            at("code", config.max_code_bytes + 1)
                .unwrap_err()
                .to_string()
                .contains("TRACEBOX_MAX_CODE_BYTES")
        );
        assert!(at("stdin", config.max_stdin_bytes).is_ok());
        assert!(
            at("stdin", config.max_stdin_bytes + 1)
                .unwrap_err()
                .to_string()
                .contains("TRACEBOX_MAX_STDIN_BYTES")
        );
    }
}
