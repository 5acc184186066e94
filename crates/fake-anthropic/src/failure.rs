//! Error answers in the API's shape (ANTHROPIC.md §5): the status, its `error.type`, the body
//! `{"type":"error","error":{…},"request_id":"req_…"}` and the retry headers.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::json;

use super::directive::Directives;

/// The API's `error.type`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorType {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    Timeout,
    Conflict,
    RequestTooLarge,
    RateLimit,
    Api,
    Overloaded,
}

impl ErrorType {
    /// The type the API gives a status: the table of §5, other 4xx `invalid_request_error`,
    /// other 5xx `api_error`. 408 has no documented type; `timeout_error` is the likeliest.
    pub fn of_status(status: u16) -> ErrorType {
        match status {
            401 => ErrorType::Authentication,
            402 => ErrorType::Billing,
            403 => ErrorType::Permission,
            404 => ErrorType::NotFound,
            408 | 504 => ErrorType::Timeout,
            409 => ErrorType::Conflict,
            413 => ErrorType::RequestTooLarge,
            429 => ErrorType::RateLimit,
            529 => ErrorType::Overloaded,
            500..=599 => ErrorType::Api,
            _ => ErrorType::InvalidRequest,
        }
    }

    /// The status the fake answers this type with when nothing says otherwise.
    fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequest => 400,
            ErrorType::Authentication => 401,
            ErrorType::Billing => 402,
            ErrorType::Permission => 403,
            ErrorType::NotFound => 404,
            ErrorType::Timeout => 504,
            ErrorType::Conflict => 409,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimit => 429,
            ErrorType::Api => 500,
            ErrorType::Overloaded => 529,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Billing => "billing_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::Timeout => "timeout_error",
            ErrorType::Conflict => "conflict_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api => "api_error",
            ErrorType::Overloaded => "overloaded_error",
        }
    }

    /// A message like the real one, for a faked failure.
    fn faked_message(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "Invalid request (faked by [fake:status])",
            ErrorType::Authentication => "invalid x-api-key",
            ErrorType::Billing => "Your credit balance is too low to access the Anthropic API.",
            ErrorType::Permission => "Your API key does not have permission to use the specified resource.",
            ErrorType::NotFound => "Not found",
            ErrorType::Timeout => "Request timed out",
            ErrorType::Conflict => "Conflict",
            ErrorType::RequestTooLarge => "Request exceeds the maximum allowed number of bytes.",
            ErrorType::RateLimit => "Number of request tokens has exceeded your per-minute rate limit.",
            ErrorType::Api => "Internal server error",
            ErrorType::Overloaded => "Overloaded",
        }
    }
}

/// An error answer, ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    status: u16,
    kind: ErrorType,
    message: String,
    /// `retry-after`, in seconds as written.
    retry_after: Option<String>,
    retry_after_ms: Option<String>,
    should_retry: Option<bool>,
}

impl Failure {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Failure {
        Failure {
            status: kind.status(),
            kind,
            message: message.into(),
            retry_after: None,
            retry_after_ms: None,
            should_retry: None,
        }
    }

    /// The failure `[fake:status:NNN]` or `[fake:flaky:NNN:K]` asks for. 429 and 529 carry
    /// `retry-after` (1 s unless `retry_after` says otherwise, none after `no_retry_after`);
    /// other statuses carry it only when `retry_after` asks.
    pub fn faked(status: u16, directives: &Directives) -> Failure {
        let kind = ErrorType::of_status(status);
        let usual = matches!(status, 429 | 529).then(|| "1".to_owned());
        let retry_after = if directives.no_retry_after { None } else { directives.retry_after.clone().or(usual) };
        Failure {
            status,
            kind,
            message: kind.faked_message().to_owned(),
            retry_after,
            retry_after_ms: directives.retry_after_ms.clone(),
            should_retry: directives.should_retry,
        }
    }

    /// The response, whose body repeats the `request-id` header.
    pub fn respond(&self, request_id: &str) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = &self.retry_after {
            response.insert_header(("retry-after", seconds.as_str()));
        }
        if let Some(ms) = &self.retry_after_ms {
            response.insert_header(("retry-after-ms", ms.as_str()));
        }
        if let Some(retry) = self.should_retry {
            response.insert_header(("x-should-retry", if retry { "true" } else { "false" }));
        }
        response.json(json!({
            "type": "error",
            "error": {"type": self.kind.name(), "message": self.message},
            "request_id": request_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_documented_status_has_its_error_type() {
        let table = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (408, "timeout_error"),
            (409, "conflict_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ];
        for (status, name) in table {
            assert_eq!(ErrorType::of_status(status).name(), name, "{status}");
        }
    }

    #[test]
    fn only_429_and_529_carry_retry_after_unless_asked() {
        let none = Directives::default();
        assert_eq!(Failure::faked(529, &none).retry_after.as_deref(), Some("1"));
        assert_eq!(Failure::faked(429, &none).retry_after.as_deref(), Some("1"));
        assert_eq!(Failure::faked(500, &none).retry_after, None);
        let asked = Directives { retry_after: Some("0.2".to_owned()), ..Directives::default() };
        assert_eq!(Failure::faked(500, &asked).retry_after.as_deref(), Some("0.2"));
        let omitted = Directives { no_retry_after: true, ..Directives::default() };
        assert_eq!(Failure::faked(429, &omitted).retry_after, None);
    }
}
