//! The read queries: the trace list (filters, full-text search, keyset paging) and one trace
//! with its events and children.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use super::StoreError;
use crate::trace::{EventView, TraceDetail, TraceFilter, TraceId, TracePage, TraceSummary, format_us};

/// The columns of a [`TraceSummary`], in the order [`summary`] reads them.
const SUMMARY_COLUMNS: &str = "id, parent_id, kind, status, source, language, started_at_us, ended_at_us, exit_code,
     substr(json_extract(input, '$.code'), 1, 400)";

/// The trigram index finds substrings of at least this many characters; shorter searches scan.
const TRIGRAM: usize = 3;

fn summary(row: &Row) -> rusqlite::Result<TraceSummary> {
    let started: i64 = row.get(6)?;
    let ended: Option<i64> = row.get(7)?;
    let code: Option<String> = row.get(9)?;
    Ok(TraceSummary {
        id: parse_id(&row.get::<_, String>(0)?)?,
        parent_id: row.get::<_, Option<String>>(1)?.as_deref().map(parse_id).transpose()?,
        kind: row.get(2)?,
        status: row.get(3)?,
        source: row.get(4)?,
        language: row.get(5)?,
        started_at: format_us(started),
        ended_at: ended.map(format_us),
        duration_ms: ended.map(|end| (end - started) as f64 / 1000.0),
        exit_code: row.get(8)?,
        preview: preview(code.as_deref().unwrap_or_default()),
    })
}

fn parse_id(text: &str) -> rusqlite::Result<TraceId> {
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// The first non-blank line, cut to 100 characters.
fn preview(code: &str) -> String {
    let line = code.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The WHERE clause of a filter, with its values.
fn conditions(filter: &TraceFilter) -> (String, Vec<SqlValue>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut add = |sql: &str, value: SqlValue| {
        values.push(value);
        clauses.push(sql.replace('?', &format!("?{}", values.len())));
    };
    if let Some(kind) = &filter.kind {
        add("kind = ?", SqlValue::Text(kind.clone()));
    }
    if let Some(status) = &filter.status {
        add("status = ?", SqlValue::Text(status.clone()));
    }
    if let Some(language) = &filter.language {
        add("language = ?", SqlValue::Text(language.clone()));
    }
    if let Some(since) = filter.since_us {
        add("started_at_us >= ?", SqlValue::Integer(since));
    }
    if let Some(until) = filter.until_us {
        add("started_at_us < ?", SqlValue::Integer(until));
    }
    if let Some(before) = filter.before {
        add("id < ?", SqlValue::Text(before.to_string()));
    }
    if let Some(text) = &filter.text {
        if text.chars().count() >= TRIGRAM {
            // A phrase query: the text as typed, quotes doubled.
            let phrase = format!("\"{}\"", text.replace('"', "\"\""));
            add("id IN (SELECT trace_id FROM trace_search WHERE trace_search MATCH ?)", SqlValue::Text(phrase));
        } else {
            let like = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            add(
                "id IN (SELECT trace_id FROM trace_search WHERE code LIKE ? ESCAPE '\\' OR output LIKE ? ESCAPE '\\')",
                SqlValue::Text(like),
            );
        }
    }
    let clause = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    (clause, values)
}

pub(super) fn list(db: &Connection, filter: &TraceFilter) -> Result<TracePage, StoreError> {
    let (clause, mut values) = conditions(filter);
    // One row more than asked tells whether there is a next page.
    values.push(SqlValue::Integer(filter.limit as i64 + 1));
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM traces {clause} ORDER BY id DESC LIMIT ?{}", values.len());
    let mut traces =
        db.prepare_cached(&sql)?.query_map(params_from_iter(values), summary)?.collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if traces.len() > filter.limit {
        traces.truncate(filter.limit);
        traces.last().map(|trace| trace.id)
    } else {
        None
    };
    Ok(TracePage { traces, next_cursor })
}

pub(super) fn count(db: &Connection) -> Result<u64, StoreError> {
    let count: i64 = db.query_row("SELECT count(*) FROM traces", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or_default())
}

pub(super) fn get(db: &Connection, id: TraceId) -> Result<Option<TraceDetail>, StoreError> {
    let id_text = id.to_string();
    let row = db
        .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS}, input, output FROM traces WHERE id = ?1"))?
        .query_row(params![id_text], |row| Ok((summary(row)?, row.get::<_, i64>(6)?, row.get(10)?, row.get(11)?)))
        .optional()?;
    let Some((head, started_at_us, input, output)) = row else {
        return Ok(None);
    };
    let input: String = input;
    let output: String = output;
    let events = db
        .prepare_cached("SELECT at_us, name, detail FROM trace_events WHERE trace_id = ?1 ORDER BY seq")?
        .query_map(params![id_text], |row| {
            let at_us: i64 = row.get(0)?;
            let detail: Option<String> = row.get(2)?;
            Ok(EventView {
                offset_ms: (at_us - started_at_us) as f64 / 1000.0,
                name: row.get(1)?,
                detail: detail.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let children = db
        .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS} FROM traces WHERE parent_id = ?1 ORDER BY id"))?
        .query_map(params![id_text], summary)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(TraceDetail {
        summary: head,
        input: serde_json::from_str(&input).unwrap_or(Value::Null),
        output: serde_json::from_str(&output).unwrap_or(Value::Null),
        events,
        children,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_show_the_first_line_shortened() {
        assert_eq!(preview("\n\n  x = 1\ny = 2"), "x = 1");
        let long = "a".repeat(150);
        assert_eq!(preview(&long).chars().count(), 101);
    }

    #[test]
    fn search_text_becomes_one_quoted_phrase() {
        let filter = TraceFilter { text: Some("say \"hi\" now".into()), ..TraceFilter::default() };
        let (clause, values) = conditions(&filter);
        assert!(clause.contains("MATCH ?1"), "{clause}");
        assert_eq!(values, [SqlValue::Text("\"say \"\"hi\"\" now\"".into())]);
    }

    #[test]
    fn short_search_text_is_a_like_with_wildcards_escaped() {
        let filter = TraceFilter { text: Some("5%".into()), ..TraceFilter::default() };
        let (clause, values) = conditions(&filter);
        assert!(clause.contains("code LIKE ?1") && clause.contains("output LIKE ?1"), "{clause}");
        assert_eq!(values, [SqlValue::Text("%5\\%%".into())]);
    }
}
