//! `GET /traces`, `GET /trace/{id}`, its output streams and the JSON Lines export: JSON for
//! programs, pages for people. The detail page's view lives in `trace_view`.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use tracebox_model::sandbox::SandboxInput;
use tracebox_model::{Language, TraceId, TraceKind, TraceStatus};

use super::error::{ApiError, ErrorCode};
use super::units::{human_duration, short_time};
use super::{export, page, trace_view, wants_json};

use crate::access::Caller;
use crate::services::Services;
use crate::trace::{ChildWindow, TraceDetail, TraceFilter, TraceSummary};

/// Traces per page unless `limit` says otherwise, and the most `limit` may ask for.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// The languages a trace may have, for the list's filter.
const LANGUAGES: &[&str] = &["python", "node"];

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
    /// Only the items of this batch (its trace id).
    #[serde(skip_serializing_if = "blank")]
    batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "blank")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "blank")]
    format: Option<String>,
    /// Only this tenant's traces (admin keys; a user key sees only its own whatever it asks).
    #[serde(skip_serializing_if = "blank")]
    tenant: Option<String>,
}

fn blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|v| v.trim().is_empty())
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ListQuery {
    /// The store's filter for this query, confined to what `caller` may see.
    fn to_filter(&self, caller: &Caller) -> Result<TraceFilter, ApiError> {
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
        fn one_of<T: std::str::FromStr>(field: &str, value: Option<&str>, all: &[&str]) -> Result<Option<T>, String> {
            value
                .map(|v| v.parse().map_err(|_| format!("`{field}`: {v:?} is not one of {}", all.join(", "))))
                .transpose()
        }
        let time = |field: &str, value: Option<&str>| {
            value
                .map(|text| {
                    parse_time(text).map(|t| (t.unix_timestamp_nanos() / 1_000) as i64).ok_or_else(|| {
                        invalid(format!(
                            "`{field}`: {text:?} is not a time; use RFC 3339, e.g. 2026-11-22T10:00:00Z (a time without an offset is UTC)"
                        ))
                    })
                })
                .transpose()
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(format!("`limit`: {limit} is outside 1..={MAX_PAGE}")));
        }
        Ok(TraceFilter {
            kind: one_of("kind", given(&self.kind), &TraceKind::ALL.map(TraceKind::as_str)).map_err(invalid)?,
            status: one_of("status", given(&self.status), &TraceStatus::ALL.map(TraceStatus::as_str))
                .map_err(invalid)?,
            language: given(&self.language)
                .map(|name| name.parse::<Language>().map(|l| l.as_str().to_owned()))
                .transpose()
                .map_err(|e| invalid(format!("`language`: {e}")))?,
            text: given(&self.q).map(str::to_owned),
            since_us: time("since", given(&self.since))?,
            until_us: time("until", given(&self.until))?,
            parent: given(&self.batch)
                .map(str::parse::<TraceId>)
                .transpose()
                .map_err(|e| invalid(format!("`batch`: {e}; pass the trace id of a batch")))?,
            before: given(&self.cursor)
                .map(str::parse::<TraceId>)
                .transpose()
                .map_err(|e| invalid(format!("`cursor`: {e}; pass the `next_cursor` of the previous page")))?,
            tenant: caller.list_tenant(given(&self.tenant))?,
            limit,
        })
    }
}

/// A time as RFC 3339, or as a browser's `datetime-local` field sends it
/// (`2026-11-22T10:00`, seconds optional), which has no offset and is read as UTC.
fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let local = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute][optional [:[second]]]");
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .or_else(|| time::PrimitiveDateTime::parse(text, &local).ok().map(time::PrimitiveDateTime::assume_utc))
}

/// A filter time as a `datetime-local` field shows it (UTC, to the second).
fn form_time(text: &str) -> String {
    let shown = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    parse_time(text)
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&shown).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[derive(Template)]
#[template(path = "traces.html")]
struct ListPage<'a> {
    traces: &'a [TraceSummary],
    query: &'a ListQuery,
    statuses: &'a [&'static str],
    kinds: &'a [&'static str],
    languages: &'static [&'static str],
    next_url: Option<String>,
    /// Back to the newest page of the same filter, when this page is an older one.
    first_url: Option<String>,
    /// The export of everything the current filter matches.
    export_url: String,
    /// Is any filter set (so the page offers to clear them)?
    filtered: bool,
    /// The page offers to sign out.
    signed_in: bool,
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

    fn text(&self, value: &Option<String>) -> String {
        given(value).unwrap_or_default().to_owned()
    }

    fn time_value(&self, value: &Option<String>) -> String {
        given(value).map(form_time).unwrap_or_default()
    }

    fn short_time(&self, rfc3339: &str) -> String {
        short_time(rfc3339)
    }

    fn duration(&self, ms: &f64) -> String {
        human_duration(*ms)
    }
}

impl ListQuery {
    /// The filter alone, without paging or format: what the export and "clear" links build on.
    fn filter_only(&self) -> ListQuery {
        ListQuery { limit: None, cursor: None, format: None, ..self.clone() }
    }

    fn is_filtered(&self) -> bool {
        [&self.kind, &self.status, &self.language, &self.q, &self.since, &self.until, &self.batch, &self.tenant]
            .iter()
            .any(|v| !blank(v))
    }

    /// This query as a query string (blank fields left out).
    fn encode(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

/// `GET /traces`
pub async fn list(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.to_filter(&caller)?;
    let found = services.store.list(filter).await?;
    if wants_json(&request, given(&query.format)) {
        return Ok(HttpResponse::Ok().json(found));
    }
    let next_url = found.next_cursor.map(|cursor| {
        let next = ListQuery { cursor: Some(cursor.to_string()), format: None, ..query.clone().into_inner() };
        format!("/traces?{}", next.encode())
    });
    let first_url = (!blank(&query.cursor)).then(|| format!("/traces?{}", query.filter_only().encode()));
    let export = ListQuery { format: Some("jsonl".to_owned()), ..query.filter_only() };
    let (statuses, kinds) = (TraceStatus::ALL.map(TraceStatus::as_str), TraceKind::ALL.map(TraceKind::as_str));
    page(&ListPage {
        traces: &found.traces,
        query: &query,
        statuses: &statuses,
        kinds: &kinds,
        languages: LANGUAGES,
        next_url,
        first_url,
        export_url: format!("/traces/export?{}", export.encode()),
        filtered: query.is_filtered(),
        signed_in: caller.grant().is_some(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    format: Option<String>,
    /// The first child given (0-based); children come a window at a time.
    children_from: Option<u64>,
    /// How many children the JSON gives, at most `ChildWindow::PAGE` (its default).
    children_limit: Option<u64>,
    /// A sandbox's page: the first step listed (0-based).
    steps_from: Option<u64>,
}

/// `GET /trace/{id}`
pub async fn show(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    if wants_json(&request, query.format.as_deref()) {
        let from = query.children_from.unwrap_or(0);
        let limit = query.children_limit.unwrap_or(ChildWindow::PAGE);
        if limit > ChildWindow::PAGE {
            let message = format!("`children_limit`: {limit} is over {}; page with `children_from`", ChildWindow::PAGE);
            return Err(ApiError::new(ErrorCode::InvalidQuery, message));
        }
        let trace = find(&services, &caller, &id, ChildWindow { from, limit }).await?;
        return Ok(HttpResponse::Ok().json(&trace));
    }
    // The page reads the children it shows after it knows the kind: a sandbox's are its steps.
    let mut trace = find(&services, &caller, &id, ChildWindow::NONE).await?;
    let related = related(&services, &mut trace, &query).await?;
    page(&trace_view::DetailPage::of(&trace, related, caller.grant().is_some()))
}

/// What the page of `trace` shows beside it: a sandbox's steps and whether it is paused; a
/// step's place in its sandbox (a command a tool call ran is its call's, not a step of its
/// own); a window of the trace's children.
async fn related(
    services: &Services,
    trace: &mut TraceDetail,
    query: &ShowQuery,
) -> Result<trace_view::Related, ApiError> {
    let store = &services.store;
    let summary = &trace.summary;
    let mut related = trace_view::Related::default();
    match summary.kind {
        TraceKind::Sandbox => {
            let window = ChildWindow { from: query.steps_from.unwrap_or(0), limit: trace_view::STEPS_PAGE };
            related.steps = Some(store.steps(summary.id, window).await?);
            let input = serde_json::from_value::<SandboxInput>(trace.input.clone()).ok();
            if let (TraceStatus::Running, Some(input)) = (summary.status, input) {
                related.sandbox_state = store.sandbox(&input.sandbox_id).await?.map(|record| record.status);
            }
        }
        kind => {
            let step = matches!(kind, TraceKind::Command | TraceKind::Cell | TraceKind::SandboxOp | TraceKind::Tool);
            if let (true, Some(parent)) = (step, summary.parent_id) {
                related.position = store.step_position(parent, summary.id).await?;
            }
            // A tool call's children are the command it ran; a batch's, its items.
            if trace.children_total > 0 {
                related.children_from = query.children_from.unwrap_or(0);
                trace.children = store.children(summary.id, ChildWindow::from(related.children_from)).await?;
            }
        }
    }
    Ok(related)
}

/// The trace `id` names with `children` of its children, or 404 (for a malformed id as well:
/// to a reader both are "no such trace"; and for another tenant's trace, which must not be told
/// apart from one that does not exist).
async fn find(services: &Services, caller: &Caller, id: &str, children: ChildWindow) -> Result<TraceDetail, ApiError> {
    let parsed = visible_trace(services, caller, id).await?;
    services
        .store
        .get_with(parsed, children)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchTrace, format!("no trace {parsed}; list them with GET /traces")))
}

/// The id of trace `id` when it exists and `caller` may see it; 404 otherwise.
pub(super) async fn visible_trace(services: &Services, caller: &Caller, id: &str) -> Result<TraceId, ApiError> {
    let parsed: TraceId = id.parse().map_err(|_| {
        ApiError::new(ErrorCode::NoSuchTrace, format!("{id:?} is not a trace id; trace ids are UUIDs from /traces"))
    })?;
    match services.store.tenant_of(parsed).await? {
        Some(owner) if caller.sees(owner.as_deref()) => Ok(parsed),
        _ => Err(ApiError::new(ErrorCode::NoSuchTrace, format!("no trace {parsed}; list them with GET /traces"))),
    }
}

/// The output streams a trace keeps, as `/trace/{id}/output/{stream}` names them (a tool
/// call's are `output` and `diff`).
const STREAMS: &[&str] = &["stdout", "stderr", "output", "diff"];

/// `GET /trace/{id}/output/{stream}`: one stream as a file, so long output can be kept or
/// opened in an editor rather than scrolled through in a page.
pub async fn output(
    services: web::Data<Services>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, stream) = path.into_inner();
    if !STREAMS.contains(&stream.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NoSuchRoute,
            format!("no output stream {stream:?}; a trace has {}", STREAMS.join(" and ")),
        ));
    }
    let trace = find(&services, &caller, &id, ChildWindow::NONE).await?;
    let text = trace.output.get(&stream).and_then(Value::as_str).unwrap_or_default().to_owned();
    let filename = format!("{}-{stream}.txt", trace.summary.id);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .body(text))
}

/// Traces read from the store per query while exporting: enough to keep SQLite busy, few
/// enough that an export of any size holds little in memory.
const EXPORT_PAGE: usize = 100;

/// The formats `/traces/export` writes.
const EXPORT_FORMATS: &[&str] = &["jsonl"];

/// `GET /traces/export?format=jsonl`: every trace the filter matches, newest first, one full
/// trace (summary, input, output, events) per line. Streamed page by page through the store's
/// cursor, so the export of a large store starts at once and never sits in memory whole.
pub async fn export(
    services: web::Data<Services>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
    let format = given(&query.format).unwrap_or("jsonl");
    if !EXPORT_FORMATS.contains(&format) {
        return Err(invalid(format!(
            "`format`: {format:?} is not an export format; use {}",
            EXPORT_FORMATS.join(", ")
        )));
    }
    if query.limit.is_some() || !blank(&query.cursor) {
        return Err(invalid(
            "`limit` and `cursor` page the list; an export holds every trace the filter matches".to_owned(),
        ));
    }
    let filter = TraceFilter { limit: EXPORT_PAGE, ..query.to_filter(&caller)? };
    let stream = export::lines(services.into_inner(), filter);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("traces.jsonl".to_owned())],
        })
        .streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_rfc3339_or_what_a_datetime_field_sends() {
        let utc = |text: &str| parse_time(text).map(|t| t.unix_timestamp());
        assert_eq!(utc("2026-11-22T10:00:00Z"), Some(1_795_341_600));
        assert_eq!(utc("2026-11-22T11:00:00+01:00"), Some(1_795_341_600));
        assert_eq!(utc("2026-11-22T10:00"), Some(1_795_341_600));
        assert_eq!(utc("2026-11-22T10:00:30"), Some(1_795_341_630));
        assert_eq!(utc("yesterday"), None);
        assert_eq!(form_time("2026-11-22T11:00:00+01:00"), "2026-11-22T10:00:00");
    }

    #[test]
    fn the_export_link_keeps_the_filter_and_drops_paging() {
        let query = ListQuery {
            status: Some("error".into()),
            q: Some("a b".into()),
            cursor: Some("x".into()),
            limit: Some(5),
            kind: Some(" ".into()),
            ..ListQuery::default()
        };
        assert_eq!(query.filter_only().encode(), "status=error&q=a+b");
        assert!(query.is_filtered() && !ListQuery::default().is_filtered());
    }
}
