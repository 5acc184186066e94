//! The read queries: the trace list (filters, full-text search, keyset paging), one trace with
//! its events and a window of its children, and a trace's children of one kind. A sandbox's
//! steps cut to excerpts are `steps.rs`'s.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use tracebox_model::{TraceId, TraceKind, format_us};

use super::StoreError;
use crate::trace::{ChildRecord, ChildWindow, EventView, TraceDetail, TraceFilter, TracePage, TraceSummary};

/// The columns of a [`TraceSummary`], in the order [`summary`] reads them.
/// The preview is the code or command, a Claude call's prompt, a batch's or a transfer's name,
/// the names of a transfer's files, a tool call's command or path, or what an operation did.
const SUMMARY_COLUMNS: &str = "id, parent_id, kind, status, source, language, started_at_us, ended_at_us, exit_code,
     substr(coalesce(json_extract(input, '$.code'), json_extract(input, '$.cmd'), json_extract(input, '$.prompt'),
       json_extract(input, '$.name'),
       (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(output, '$.files')),
       json_extract(input, '$.tool') || ' ' || coalesce(json_extract(input, '$.params.command'),
         json_extract(input, '$.params.path'), json_extract(input, '$.params.pattern'),
         (SELECT group_concat(value, ' ') FROM json_each(input, '$.params.args')), ''),
       json_extract(input, '$.op') || coalesce(' ' || json_extract(input, '$.path'), '')), 1, 400),
     tenant";

/// The trigram index finds substrings of at least this many characters; shorter searches scan.
const TRIGRAM: usize = 3;

fn summary(row: &Row) -> rusqlite::Result<TraceSummary> {
    let started: i64 = row.get(6)?;
    let ended: Option<i64> = row.get(7)?;
    let code: Option<String> = row.get(9)?;
    Ok(TraceSummary {
        id: parse_id(&row.get::<_, String>(0)?)?,
        parent_id: row.get::<_, Option<String>>(1)?.as_deref().map(parse_id).transpose()?,
        kind: parse_name(2, &row.get::<_, String>(2)?)?,
        status: parse_name(3, &row.get::<_, String>(3)?)?,
        source: row.get(4)?,
        language: row.get(5)?,
        started_at: format_us(started),
        ended_at: ended.map(format_us),
        duration_ms: ended.map(|end| (end - started) as f64 / 1000.0),
        exit_code: row.get(8)?,
        preview: preview(code.as_deref().unwrap_or_default()),
        tenant: row.get(10)?,
    })
}

pub(super) fn parse_id(text: &str) -> rusqlite::Result<TraceId> {
    parse_name(0, text)
}

/// A column's text as what it names (an id, a kind, a status).
pub(super) fn parse_name<T: std::str::FromStr>(column: usize, text: &str) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e)))
}

/// The first non-blank line, cut to 100 characters.
fn preview(code: &str) -> String {
    let line = code.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// A search first looks among this many of the newest traces (below the cursor), and widens
/// the range eightfold each time it found too few: a common word is answered from the newest
/// traces alone, a rare one after a few widenings.
pub(super) const FIRST_WINDOW: i64 = 1024;

/// A range of traces a search is confined to: the ids from `floor` up (to the cursor), and the
/// search numbers those traces have (their search rows are stored under them).
#[derive(Debug, Clone, PartialEq)]
struct Window {
    /// None: down to the oldest trace.
    floor: Option<String>,
    numbers: (i64, i64),
}

/// The WHERE clause of a filter, with its values; a search looks only at `window`'s traces.
fn conditions(filter: &TraceFilter, window: Option<&Window>) -> (String, Vec<SqlValue>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut add = |sql: &str, bound: Vec<SqlValue>| {
        let mut sql = sql.to_owned();
        for value in bound {
            values.push(value);
            sql = sql.replacen("??", &format!("?{}", values.len()), 1);
        }
        clauses.push(sql);
    };
    if let Some(kind) = &filter.kind {
        add("kind = ??", vec![SqlValue::Text(kind.as_str().to_owned())]);
    }
    if let Some(status) = &filter.status {
        add("status = ??", vec![SqlValue::Text(status.as_str().to_owned())]);
    }
    if let Some(language) = &filter.language {
        add("language = ??", vec![SqlValue::Text(language.clone())]);
    }
    if let Some(since) = filter.since_us {
        add("started_at_us >= ??", vec![SqlValue::Integer(since)]);
    }
    if let Some(until) = filter.until_us {
        add("started_at_us < ??", vec![SqlValue::Integer(until)]);
    }
    if let Some(parent) = filter.parent {
        add("parent_id = ??", vec![SqlValue::Text(parent.to_string())]);
    }
    if let Some(before) = filter.before {
        add("id < ??", vec![SqlValue::Text(before.to_string())]);
    }
    if let Some(tenant) = &filter.tenant {
        add("tenant = ??", vec![SqlValue::Text(tenant.clone())]);
    }
    if let Some(text) = &filter.text {
        let (matching, mut bound) = matching(text);
        match window {
            Some(window) => {
                if let Some(floor) = &window.floor {
                    add("id >= ??", vec![SqlValue::Text(floor.clone())]);
                }
                bound.extend([SqlValue::Integer(window.numbers.0), SqlValue::Integer(window.numbers.1)]);
                add(
                    &format!(
                        "search_no IN (SELECT rowid FROM trace_search WHERE {matching} AND rowid BETWEEN ?? AND ??)"
                    ),
                    bound,
                );
            }
            None => add(&format!("search_no IN (SELECT rowid FROM trace_search WHERE {matching})"), bound),
        }
    }
    let clause = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    (clause, values)
}

pub(super) fn list(db: &Connection, filter: &TraceFilter, first_window: i64) -> Result<TracePage, StoreError> {
    let mut traces = match filter.text {
        None => select(db, filter, None)?,
        Some(_) => search(db, filter, first_window)?,
    };
    let next_cursor = if traces.len() > filter.limit {
        traces.truncate(filter.limit);
        traces.last().map(|trace| trace.id)
    } else {
        None
    };
    Ok(TracePage { traces, next_cursor })
}

/// One page of the filter and one row more (which tells whether there is a next page).
fn select(db: &Connection, filter: &TraceFilter, window: Option<&Window>) -> Result<Vec<TraceSummary>, StoreError> {
    let (clause, mut values) = conditions(filter, window);
    values.push(SqlValue::Integer(filter.limit as i64 + 1));
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM traces {clause} ORDER BY id DESC LIMIT ?{}", values.len());
    Ok(db.prepare_cached(&sql)?.query_map(params_from_iter(values), summary)?.collect::<Result<Vec<_>, _>>()?)
}

/// A search, newest traces first: within the newest `first_window` traces below the cursor, then
/// in ranges eight times wider, until a page is full or the oldest trace was searched. Exact:
/// every trace outside a range is older than every trace in it.
fn search(db: &Connection, filter: &TraceFilter, first_window: i64) -> Result<Vec<TraceSummary>, StoreError> {
    let mut size = first_window.max(1);
    let mut widened = false;
    loop {
        if widened && few_matches(db, filter)? {
            // A rare text: collecting all its matches is cheaper than widening the range.
            return select(db, filter, None);
        }
        widened = true;
        let Some((window, whole)) = window(db, filter.before, size)? else {
            return Ok(Vec::new());
        };
        let found = select(db, filter, Some(&window))?;
        if whole || found.len() > filter.limit {
            return Ok(found);
        }
        size = size.saturating_mul(8);
    }
}

/// The condition on `trace_search` rows that contain `text`, with `??` for its values.
fn matching(text: &str) -> (&'static str, Vec<SqlValue>) {
    if text.chars().count() >= TRIGRAM {
        // A phrase query: the text as typed, quotes doubled.
        let phrase = format!("\"{}\"", text.replace('"', "\"\""));
        ("trace_search MATCH ??", vec![SqlValue::Text(phrase)])
    } else {
        let like = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        (
            "(code LIKE ?? ESCAPE '\\' OR output LIKE ?? ESCAPE '\\')",
            vec![SqlValue::Text(like.clone()), SqlValue::Text(like)],
        )
    }
}

/// Whether the search text is in at most `FEW` traces (of any age); stops counting past it.
fn few_matches(db: &Connection, filter: &TraceFilter) -> Result<bool, StoreError> {
    const FEW: i64 = 2048;
    let Some(text) = &filter.text else {
        return Ok(true);
    };
    let (matching, mut values) = matching(text);
    let mut sql = format!("SELECT count(*) FROM (SELECT 1 FROM trace_search WHERE {matching} LIMIT ??)");
    values.push(SqlValue::Integer(FEW + 1));
    for n in 1..=values.len() {
        sql = sql.replacen("??", &format!("?{n}"), 1);
    }
    let count: i64 = db.prepare_cached(&sql)?.query_row(params_from_iter(values), |row| row.get(0))?;
    Ok(count <= FEW)
}

/// The `size` newest traces below `before`: their range, and whether it reaches the oldest
/// trace. None when there are none.
fn window(db: &Connection, before: Option<TraceId>, size: i64) -> Result<Option<(Window, bool)>, StoreError> {
    let below = if before.is_some() { "WHERE id < ?2" } else { "WHERE ?2 IS NULL" };
    let sql = format!(
        "SELECT count(*), min(id), min(search_no), max(search_no)
         FROM (SELECT id, search_no FROM traces {below} ORDER BY id DESC LIMIT ?1)"
    );
    let (count, floor, low, high): (i64, Option<String>, Option<i64>, Option<i64>) =
        db.prepare_cached(&sql)?.query_row(params![size, before.map(|id| id.to_string())], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let (Some(floor), Some(low), Some(high)) = (floor, low, high) else {
        return Ok(None);
    };
    let whole = count < size;
    Ok(Some((Window { floor: (!whole).then_some(floor), numbers: (low, high) }, whole)))
}

pub(super) fn count(db: &Connection) -> Result<u64, StoreError> {
    let count: i64 = db.query_row("SELECT count(*) FROM traces", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or_default())
}

pub(super) fn get(db: &Connection, id: TraceId, window: ChildWindow) -> Result<Option<TraceDetail>, StoreError> {
    // One snapshot of the database for the trace, its children and their count.
    let db = db.unchecked_transaction()?;
    let id_text = id.to_string();
    let row = db
        .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS}, input, output FROM traces WHERE id = ?1"))?
        .query_row(params![id_text], |row| Ok((summary(row)?, row.get::<_, i64>(6)?, row.get(11)?, row.get(12)?)))
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
    let children = children(&db, id, window)?;
    let children_total = count_children(&db, id)?;
    Ok(Some(TraceDetail {
        summary: head,
        input: serde_json::from_str(&input).unwrap_or(Value::Null),
        output: serde_json::from_str(&output).unwrap_or(Value::Null),
        events,
        children,
        children_total,
    }))
}

/// The ids of `window` of the children of `?1`: a walk of the `traces_by_parent` index, which
/// holds them in order. `?2` is the limit, `?3` the offset.
pub(super) const CHILD_IDS: &str = "SELECT id FROM traces WHERE parent_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3";

/// `window` of the children of `parent`, in the order they started (their ids are UUIDv7).
pub(super) fn children(db: &Connection, parent: TraceId, window: ChildWindow) -> Result<Vec<TraceSummary>, StoreError> {
    if window.limit == 0 {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM traces WHERE id IN ({CHILD_IDS}) ORDER BY id");
    let (limit, offset) = window_values(window);
    let mut statement = db.prepare_cached(&sql)?;
    let rows = statement.query_map(params![parent.to_string(), limit, offset], summary)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A window's limit and offset as SQLite integers (a window past them is empty).
pub(super) fn window_values(window: ChildWindow) -> (i64, i64) {
    (i64::try_from(window.limit).unwrap_or(i64::MAX), i64::try_from(window.from).unwrap_or(i64::MAX))
}

/// How many children `parent` has.
pub(super) fn count_children(db: &Connection, parent: TraceId) -> Result<u64, StoreError> {
    let count: i64 = db
        .prepare_cached("SELECT count(*) FROM traces WHERE parent_id = ?1")?
        .query_row(params![parent.to_string()], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The children of `parent` of `kind`, oldest first, with their input and output.
pub(super) fn children_of_kind(
    db: &Connection,
    parent: TraceId,
    kind: TraceKind,
) -> Result<Vec<ChildRecord>, StoreError> {
    let mut query = db.prepare_cached(
        "SELECT id, status, started_at_us, ended_at_us, input, output FROM traces
         WHERE parent_id = ?1 AND kind = ?2 ORDER BY id",
    )?;
    let rows = query.query_map(params![parent.to_string(), kind.as_str()], |row| {
        let started: i64 = row.get(2)?;
        let ended: Option<i64> = row.get(3)?;
        let input: String = row.get(4)?;
        let output: String = row.get(5)?;
        Ok(ChildRecord {
            id: parse_id(&row.get::<_, String>(0)?)?,
            status: parse_name(1, &row.get::<_, String>(1)?)?,
            duration_ms: ended.map(|end| (end - started) as f64 / 1000.0),
            input: serde_json::from_str(&input).unwrap_or(Value::Null),
            output: serde_json::from_str(&output).unwrap_or(Value::Null),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whose trace `id` is: None when there is no such trace, `Some(None)` for one of an open server.
pub(super) fn tenant_of(db: &Connection, id: TraceId) -> Result<Option<Option<String>>, StoreError> {
    Ok(db
        .prepare_cached("SELECT tenant FROM traces WHERE id = ?1")?
        .query_row(params![id.to_string()], |row| row.get::<_, Option<String>>(0))
        .optional()?)
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
        let (clause, values) = conditions(&filter, None);
        assert!(clause.contains("MATCH ?1"), "{clause}");
        assert_eq!(values, [SqlValue::Text("\"say \"\"hi\"\" now\"".into())]);
    }

    #[test]
    fn short_search_text_is_a_like_with_wildcards_escaped() {
        let filter = TraceFilter { text: Some("5%".into()), ..TraceFilter::default() };
        let (clause, values) = conditions(&filter, None);
        assert!(clause.contains("code LIKE ?1") && clause.contains("output LIKE ?2"), "{clause}");
        assert_eq!(values, [SqlValue::Text("%5\\%%".into()), SqlValue::Text("%5\\%%".into())]);
    }
}
