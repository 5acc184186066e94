//! `GET /traces` and `GET /trace/{id}`: JSON for programs, a plain page for people.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ErrorCode};
use super::{page, wants_json};
use crate::execution::Language;
use crate::policy::{PolicyHit, Redaction};
use crate::services::Services;
use crate::trace::{TraceDetail, TraceFilter, TraceId, TraceSummary};

/// Traces per page unless `limit` says otherwise, and the most `limit` may ask for.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// Every trace status, for filters and their validation.
const STATUSES: &[&str] =
    &["running", "success", "error", "timeout", "oom", "blocked", "output_limit", "internal_error"];

/// Every kind of trace recorded so far.
const KINDS: &[&str] = &["execution"];

/// The list's query string, as clients send it. Empty values mean "any" (what a form sends).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "blank")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    status: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    language: Option<String>,
    /// Text to find in code or output.
    #[serde(skip_serializing_if = "blank")]
    q: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    since: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "blank")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    format: Option<String>,
}

fn blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|v| v.trim().is_empty())
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ListQuery {
    fn to_filter(&self) -> Result<TraceFilter, ApiError> {
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
        let one_of = |field: &str, value: Option<&str>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v) => {
                Err(invalid(format!("`{field}`: {v:?} is not one of {}", allowed.join(", "))))
            }
            other => Ok(other.map(str::to_owned)),
        };
        let time = |field: &str, value: Option<&str>| {
            value
                .map(|text| {
                    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .map(|t| (t.unix_timestamp_nanos() / 1_000) as i64)
                        .map_err(|e| invalid(format!("`{field}`: {e}; use RFC 3339, e.g. 2026-11-22T10:00:00Z")))
                })
                .transpose()
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(format!("`limit`: {limit} is outside 1..={MAX_PAGE}")));
        }
        Ok(TraceFilter {
            kind: one_of("kind", given(&self.kind), KINDS)?,
            status: one_of("status", given(&self.status), STATUSES)?,
            language: given(&self.language)
                .map(|name| name.parse::<Language>().map(|l| l.as_str().to_owned()))
                .transpose()
                .map_err(|e| invalid(format!("`language`: {e}")))?,
            text: given(&self.q).map(str::to_owned),
            since_us: time("since", given(&self.since))?,
            until_us: time("until", given(&self.until))?,
            before: given(&self.cursor)
                .map(str::parse::<TraceId>)
                .transpose()
                .map_err(|e| invalid(format!("`cursor`: {e}; pass the `next_cursor` of the previous page")))?,
            limit,
        })
    }
}

#[derive(Template)]
#[template(path = "traces.html")]
struct ListPage<'a> {
    traces: &'a [TraceSummary],
    query: &'a ListQuery,
    statuses: &'static [&'static str],
    kinds: &'static [&'static str],
    next_url: Option<String>,
}

impl ListPage<'_> {
    fn selected(&self, field: &str, value: &str) -> bool {
        let current = match field {
            "status" => &self.query.status,
            "kind" => &self.query.kind,
            "language" => &self.query.language,
            _ => return false,
        };
        given(current) == Some(value)
    }
}

/// `GET /traces`
pub async fn list(
    services: web::Data<Services>,
    request: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.to_filter()?;
    let found = services.store.list(filter).await?;
    if wants_json(&request, given(&query.format)) {
        return Ok(HttpResponse::Ok().json(found));
    }
    let next_url = found.next_cursor.map(|cursor| {
        let next = ListQuery { cursor: Some(cursor.to_string()), format: None, ..query.clone().into_inner() };
        format!("/traces?{}", serde_urlencoded::to_string(&next).unwrap_or_default())
    });
    page(&ListPage { traces: &found.traces, query: &query, statuses: STATUSES, kinds: KINDS, next_url })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    format: Option<String>,
}

#[derive(Template)]
#[template(path = "trace.html")]
struct DetailPage<'a> {
    trace: &'a TraceDetail,
    code: &'a str,
    stdin: &'a str,
    stdout: &'a str,
    stderr: &'a str,
    message: &'a str,
    hits: Vec<PolicyHit>,
    redactions: Vec<Redaction>,
    settings: Vec<(String, String)>,
    flags: Vec<&'static str>,
}

/// `GET /trace/{id}`
pub async fn show(
    services: web::Data<Services>,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: TraceId = id.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::NoSuchTrace,
            format!("{:?} is not a trace id; trace ids are UUIDs from /traces", id.as_str()),
        )
    })?;
    let trace =
        services.store.get(id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NoSuchTrace, format!("no trace {id}; list them with GET /traces"))
        })?;
    if wants_json(&request, query.format.as_deref()) {
        return Ok(HttpResponse::Ok().json(&trace));
    }
    page(&detail_page(&trace))
}

fn detail_page(trace: &TraceDetail) -> DetailPage<'_> {
    let input = &trace.input;
    let output = &trace.output;
    let list = |value: Option<&Value>| value.cloned().unwrap_or(Value::Null);
    let hits: Vec<PolicyHit> = serde_json::from_value(list(output.get("policy_hits")))
        .or_else(|_| serde_json::from_value(list(input.get("policy_hits"))))
        .unwrap_or_default();
    let redactions: Vec<Redaction> = serde_json::from_value(list(output.get("redactions"))).unwrap_or_default();
    let mut settings: Vec<(String, String)> = Vec::new();
    if let Some(limits) = input.get("limits").and_then(Value::as_object) {
        settings.extend(limits.iter().map(|(k, v)| (format!("limit {k}"), v.to_string())));
    }
    if let Some(names) = input.get("env_names").and_then(Value::as_array) {
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            settings.push(("environment (values not kept)".to_owned(), names.join(", ")));
        }
    }
    let flags = ["timed_out", "oom_killed", "truncated", "invalid_utf8"]
        .into_iter()
        .filter(|flag| output.get(*flag).and_then(Value::as_bool) == Some(true))
        .collect();
    DetailPage {
        trace,
        code: str_at(input, "code"),
        stdin: str_at(input, "stdin"),
        stdout: str_at(output, "stdout"),
        stderr: str_at(output, "stderr"),
        message: str_at(output, "message"),
        hits,
        redactions,
        settings,
        flags,
    }
}

fn str_at<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}
