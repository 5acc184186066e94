//! `GET /traces`, `GET /trace/{id}`, its output streams and the JSON Lines export: JSON for
//! programs, pages for people. The detail page's view lives in `trace_view`.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use tracebox_model::{Language, TraceId, TraceKind, TraceStatus};

use super::error::{ApiError, ErrorCode};
use super::units::{human_duration, short_time};
use super::{export, page, trace_view, wants_json};

use crate::services::Services;
use crate::trace::{TraceDetail, TraceFilter, TraceSummary};

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
        [&self.kind, &self.status, &self.language, &self.q, &self.since, &self.until, &self.batch]
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
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    format: Option<String>,
}

/// `GET /trace/{id}`
pub async fn show(
    services: web::Data<Services>,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let trace = find(&services, &id).await?;
    if wants_json(&request, query.format.as_deref()) {
        return Ok(HttpResponse::Ok().json(&trace));
    }
    page(&trace_view::DetailPage::of(&trace))
}

/// The trace `id` names, or 404 (for a malformed id as well: to a reader both are "no such trace").
async fn find(services: &Services, id: &str) -> Result<TraceDetail, ApiError> {
    let parsed: TraceId = id.parse().map_err(|_| {
        ApiError::new(ErrorCode::NoSuchTrace, format!("{id:?} is not a trace id; trace ids are UUIDs from /traces"))
    })?;
    services
        .store
        .get(parsed)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchTrace, format!("no trace {parsed}; list them with GET /traces")))
}

/// The output streams a trace keeps, as `/trace/{id}/output/{stream}` names them (a tool
/// call's are `output` and `diff`).
const STREAMS: &[&str] = &["stdout", "stderr", "output", "diff"];

/// `GET /trace/{id}/output/{stream}`: one stream as a file, so long output can be kept or
/// opened in an editor rather than scrolled through in a page.
pub async fn output(
    services: web::Data<Services>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, stream) = path.into_inner();
    if !STREAMS.contains(&stream.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NoSuchRoute,
            format!("no output stream {stream:?}; a trace has {}", STREAMS.join(" and ")),
        ));
    }
    let trace = find(&services, &id).await?;
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
pub async fn export(services: web::Data<Services>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
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
    let filter = TraceFilter { limit: EXPORT_PAGE, ..query.to_filter()? };
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
