//! The SQLite trace store: the only file that speaks SQL.
//!
//! Writes go to one writer thread that commits whatever is queued in one transaction, so the
//! request path never waits on the disk for long; a finished trace is acknowledged only once
//! committed, so a crash loses no finished trace. Reads use their own connection (WAL mode
//! lets them run beside the writer).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{
    EventView, FinishedTrace, NewTrace, TraceDetail, TraceFilter, TraceId, TracePage, TraceSummary,
    format_us, now_us,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_traces.sql")];

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// The trace store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the trace directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "trace database {path} has schema version {found}, newer than this tracebox knows ({known}); run a newer tracebox"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("the trace writer thread has stopped")]
    WriterGone,
    #[error("committing traces failed: {0}")]
    Commit(String),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

enum Write {
    Begin(NewTrace),
    Finish(FinishedTrace, oneshot::Sender<Result<(), String>>),
}

/// A cloneable handle to the trace database.
#[derive(Clone)]
pub struct TraceStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    instance_id: String,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

impl TraceStore {
    /// Open (creating when absent) `dir/traces.db`, bring its schema up to date, and start the
    /// writer thread.
    pub fn open(dir: &Path) -> Result<TraceStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("traces.db");
        let mut writer = connect(&path)?;
        migrate(&mut writer, &path)?;
        let instance_id = instance_id(&writer)?;
        let reader = connect(&path)?;

        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || write_loop(writer, receiver))
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(TraceStore {
            inner: Arc::new(Inner {
                path,
                instance_id,
                writes: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(thread)),
                reader: Mutex::new(reader),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A random id of this data directory, made on first open: containers carry it so a
    /// server only ever sweeps the containers of its own data directory.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Record a trace as running. Returns at once; the writer commits it shortly.
    pub fn begin(&self, trace: NewTrace) {
        self.send(Write::Begin(trace));
    }

    /// Record how a trace ended, returning once it is committed.
    pub async fn finish(&self, trace: FinishedTrace) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        if !self.send(Write::Finish(trace, done)) {
            return Err(StoreError::WriterGone);
        }
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Commit(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    fn send(&self, write: Write) -> bool {
        let writes = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writes
            .as_ref()
            .is_some_and(|sender| sender.send(write).is_ok())
    }

    /// Note a server start, and mark traces that an earlier boot left running as failed: that
    /// server stopped before they finished. Returns how many were marked.
    pub async fn record_boot(&self, boot_id: &str) -> Result<usize, StoreError> {
        let boot_id = boot_id.to_owned();
        self.blocking(move |db| {
            db.execute(
                "INSERT INTO boots (boot_id, started_at_us, pid, version) VALUES (?1, ?2, ?3, ?4)",
                params![boot_id, now_us(), std::process::id(), env!("CARGO_PKG_VERSION")],
            )?;
            let marked = db.execute(
                "UPDATE traces SET status = 'internal_error', ended_at_us = ?1,
                   output = json_set(output, '$.message', 'the server stopped before this run finished')
                 WHERE status = 'running'",
                params![now_us()],
            )?;
            Ok(marked)
        })
        .await
    }

    /// One page of traces, newest first.
    pub async fn list(&self, filter: TraceFilter) -> Result<TracePage, StoreError> {
        self.blocking(move |db| list(db, &filter)).await
    }

    /// One trace with its events and children.
    pub async fn get(&self, id: TraceId) -> Result<Option<TraceDetail>, StoreError> {
        self.blocking(move |db| get(db, id)).await
    }

    /// How many traces the store holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let count = |db: &Connection| {
            Ok(db.query_row("SELECT count(*) FROM traces", [], |row| {
                row.get::<_, i64>(0)
            })?)
        };
        Ok(self.blocking(count).await?.try_into().unwrap_or_default())
    }

    /// Stop the writer after it committed everything queued.
    pub fn close(&self) {
        drop(
            self.inner
                .writes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let thread = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the trace writer thread panicked");
        }
    }

    /// Run `query` on the second connection, off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let db = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
            query(&db)
        })
        .await?
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(db)
}

fn migrate(db: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let applied: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = db.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = index + 1, "trace database migrated");
    }
    Ok(())
}

fn instance_id(db: &Connection) -> Result<String, StoreError> {
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
        params![uuid::Uuid::new_v4().simple().to_string()],
    )?;
    Ok(db.query_row(
        "SELECT value FROM meta WHERE key = 'instance_id'",
        [],
        |row| row.get(0),
    )?)
}

/// The writer thread: commit queued writes in batches until every sender is gone.
fn write_loop(mut db: Connection, writes: mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let result = commit(&mut db, &batch).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, writes = batch.len(), "trace writes failed");
        }
        for write in batch {
            if let Write::Finish(_, done) = write {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn commit(db: &mut Connection, batch: &[Write]) -> Result<(), rusqlite::Error> {
    let tx = db.transaction()?;
    for write in batch {
        match write {
            Write::Begin(trace) => {
                tx.prepare_cached(
                    "INSERT INTO traces (id, parent_id, kind, status, source, language, started_at_us, input)
                     VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    trace.id.to_string(),
                    trace.parent_id.map(|id| id.to_string()),
                    trace.kind,
                    trace.source,
                    trace.language,
                    trace.started_at_us,
                    trace.input.to_string(),
                ])?;
            }
            Write::Finish(trace, _) => {
                let id = trace.id.to_string();
                tx.prepare_cached(
                    "UPDATE traces SET status = ?2, ended_at_us = ?3, exit_code = ?4, output = ?5 WHERE id = ?1",
                )?
                .execute(params![id, trace.status, trace.ended_at_us, trace.exit_code, trace.output.to_string()])?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO trace_events (trace_id, seq, at_us, name, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (seq, event) in trace.events.iter().enumerate() {
                    let detail = (!event.detail.is_null()).then(|| event.detail.to_string());
                    insert.execute(params![id, seq as i64, event.at_us, event.name, detail])?;
                }
            }
        }
    }
    tx.commit()
}

const SUMMARY_COLUMNS: &str =
    "id, parent_id, kind, status, source, language, started_at_us, ended_at_us, exit_code,
     substr(json_extract(input, '$.code'), 1, 400)";

fn summary(row: &Row) -> rusqlite::Result<TraceSummary> {
    let id_text: String = row.get(0)?;
    let parent_text: Option<String> = row.get(1)?;
    let started: i64 = row.get(6)?;
    let ended: Option<i64> = row.get(7)?;
    let code: Option<String> = row.get(9)?;
    Ok(TraceSummary {
        id: parse_id(&id_text)?,
        parent_id: parent_text.as_deref().map(parse_id).transpose()?,
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
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The first non-blank line, cut to 100 characters.
fn preview(code: &str) -> String {
    let line = code
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

fn list(db: &Connection, filter: &TraceFilter) -> Result<TracePage, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    let mut condition = |sql: &str, value: SqlValue| {
        values.push(value);
        conditions.push(format!("{sql} ?{}", values.len()));
    };
    if let Some(kind) = &filter.kind {
        condition("kind =", SqlValue::Text(kind.clone()));
    }
    if let Some(status) = &filter.status {
        condition("status =", SqlValue::Text(status.clone()));
    }
    if let Some(language) = &filter.language {
        condition("language =", SqlValue::Text(language.clone()));
    }
    if let Some(since) = filter.since_us {
        condition("started_at_us >=", SqlValue::Integer(since));
    }
    if let Some(until) = filter.until_us {
        condition("started_at_us <", SqlValue::Integer(until));
    }
    if let Some(before) = filter.before {
        condition("id <", SqlValue::Text(before.to_string()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // One row more than asked tells whether there is a next page.
    values.push(SqlValue::Integer(filter.limit as i64 + 1));
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM traces {where_clause} ORDER BY id DESC LIMIT ?{}",
        values.len()
    );
    let mut traces = db
        .prepare_cached(&sql)?
        .query_map(params_from_iter(values), summary)?
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if traces.len() > filter.limit {
        traces.truncate(filter.limit);
        traces.last().map(|trace| trace.id)
    } else {
        None
    };
    Ok(TracePage {
        traces,
        next_cursor,
    })
}

fn get(db: &Connection, id: TraceId) -> Result<Option<TraceDetail>, StoreError> {
    let id_text = id.to_string();
    let row = db
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, input, output FROM traces WHERE id = ?1"
        ))?
        .query_row(params![id_text], |row| {
            Ok((
                summary(row)?,
                row.get::<_, String>(10)?,
                row.get::<_, String>(11)?,
            ))
        })
        .optional()?;
    let Some((head, input, output)) = row else {
        return Ok(None);
    };
    let started_at_us: i64 = db.query_row(
        "SELECT started_at_us FROM traces WHERE id = ?1",
        params![id_text],
        |row| row.get(0),
    )?;
    let events = db
        .prepare_cached(
            "SELECT at_us, name, detail FROM trace_events WHERE trace_id = ?1 ORDER BY seq",
        )?
        .query_map(params![id_text], |row| {
            let at_us: i64 = row.get(0)?;
            let detail: Option<String> = row.get(2)?;
            Ok(EventView {
                offset_ms: (at_us - started_at_us) as f64 / 1000.0,
                name: row.get(1)?,
                detail: detail
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(Value::Null),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let children = db
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM traces WHERE parent_id = ?1 ORDER BY id"
        ))?
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
    use crate::trace::TraceEvent;
    use serde_json::json;

    fn new_trace(code: &str) -> NewTrace {
        NewTrace {
            id: TraceId::new(),
            parent_id: None,
            kind: "execution",
            source: "cli",
            language: Some("python"),
            started_at_us: now_us(),
            input: json!({"code": code}),
        }
    }

    fn finished(id: TraceId, status: &'static str) -> FinishedTrace {
        FinishedTrace {
            id,
            status,
            ended_at_us: now_us() + 1_500,
            exit_code: Some(0),
            output: json!({"stdout": "hi\n"}),
            events: vec![
                TraceEvent {
                    at_us: now_us(),
                    name: "started".into(),
                    detail: Value::Null,
                },
                TraceEvent {
                    at_us: now_us(),
                    name: "exited".into(),
                    detail: json!({"exit_code": 0}),
                },
            ],
        }
    }

    #[tokio::test]
    async fn a_finished_trace_reads_back_with_its_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path()).unwrap();
        let trace = new_trace("\n  print('hi')\nprint(2)");
        let id = trace.id;
        store.begin(trace);
        store.finish(finished(id, "success")).await.unwrap();

        let detail = store.get(id).await.unwrap().expect("the trace exists");
        assert_eq!(detail.summary.status, "success");
        assert_eq!(detail.summary.preview, "print('hi')");
        assert_eq!(detail.output["stdout"], "hi\n");
        let names: Vec<_> = detail.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["started", "exited"]);
        assert_eq!(detail.events[1].detail["exit_code"], 0);
        assert!(detail.summary.duration_ms.unwrap() > 0.0);
    }

    #[tokio::test]
    async fn traces_survive_reopening_and_the_instance_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path()).unwrap();
        let instance = store.instance_id().to_owned();
        let trace = new_trace("print(1)");
        let id = trace.id;
        store.begin(trace);
        store.finish(finished(id, "error")).await.unwrap();
        store.close();

        let reopened = TraceStore::open(dir.path()).unwrap();
        assert_eq!(reopened.instance_id(), instance);
        assert_eq!(
            reopened.get(id).await.unwrap().unwrap().summary.status,
            "error"
        );
    }

    #[tokio::test]
    async fn a_new_boot_marks_traces_left_running_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path()).unwrap();
        let trace = new_trace("while True: pass");
        let id = trace.id;
        store.begin(trace);
        // A finished trace makes sure the begin above is committed.
        let other = new_trace("print(1)");
        let other_id = other.id;
        store.begin(other);
        store.finish(finished(other_id, "success")).await.unwrap();

        assert_eq!(store.record_boot("boot-2").await.unwrap(), 1);
        let detail = store.get(id).await.unwrap().unwrap();
        assert_eq!(detail.summary.status, "internal_error");
        assert!(
            detail.output["message"]
                .as_str()
                .unwrap()
                .contains("server stopped")
        );
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_newest_first_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let trace = new_trace(&format!("print({i})"));
            ids.push(trace.id);
            store.begin(trace);
            store
                .finish(finished(
                    ids[i],
                    if i % 2 == 0 { "success" } else { "error" },
                ))
                .await
                .unwrap();
        }
        let first = store
            .list(TraceFilter {
                limit: 2,
                ..TraceFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            first.traces.iter().map(|t| t.id).collect::<Vec<_>>(),
            [ids[4], ids[3]]
        );
        let second = store
            .list(TraceFilter {
                limit: 2,
                before: first.next_cursor,
                ..TraceFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            second.traces.iter().map(|t| t.id).collect::<Vec<_>>(),
            [ids[2], ids[1]]
        );
        let last = store
            .list(TraceFilter {
                limit: 2,
                before: second.next_cursor,
                ..TraceFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(last.traces.len(), 1);
        assert_eq!(last.next_cursor, None);

        let errors = store
            .list(TraceFilter {
                limit: 10,
                status: Some("error".into()),
                ..TraceFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            errors.traces.iter().map(|t| t.id).collect::<Vec<_>>(),
            [ids[3], ids[1]]
        );
        assert_eq!(store.count().await.unwrap(), 5);
    }

    #[test]
    fn a_database_from_a_newer_tracebox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("traces.db")).unwrap();
        db.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let error = TraceStore::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("schema version 99"), "{error}");
    }

    #[test]
    fn previews_show_the_first_line_shortened() {
        assert_eq!(preview("\n\n  x = 1\ny = 2"), "x = 1");
        let long = "a".repeat(150);
        assert_eq!(preview(&long).chars().count(), 101);
    }
}
