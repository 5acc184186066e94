//! The writer thread: everything queued is committed in one transaction, each write in its own
//! savepoint so that one failing write cannot take the others down with it.

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use tracebox_model::{Language, TraceId, TraceInput};

use super::retention::{self, Removed};
use crate::trace::{FinishedTrace, NewTrace};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// Where the writer sends the outcome of a write that someone waits for.
pub(super) type Reply<T> = oneshot::Sender<Result<T, String>>;

/// One write for the writer thread.
pub(super) enum Write {
    Begin(NewTrace),
    /// Replace what a running trace recorded as it began (a run refused before it ran keeps
    /// only the start of its code).
    Input(TraceId, TraceInput),
    Finish(FinishedTrace, Reply<()>),
    /// Remove these traces (whole trees, children first) with what hangs off them.
    Remove(Vec<TraceId>, Reply<Removed>),
}

/// What a write did, for whoever waits for it.
enum Applied {
    Done,
    Removed(Removed),
}

/// Commit queued writes in batches until every sender is gone.
pub(super) fn write_loop(mut db: Connection, writes: mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let results = commit(&mut db, &batch);
        for (write, result) in batch.into_iter().zip(results) {
            answer(write, result);
        }
    }
}

/// Tell whoever waits how `write` went; log the failures nobody waits for.
fn answer(write: Write, result: Result<Applied, String>) {
    match write {
        Write::Finish(_, done) => {
            let _ = done.send(result.map(|_| ()));
        }
        Write::Remove(_, done) => {
            let _ = done.send(result.map(|applied| match applied {
                Applied::Removed(removed) => removed,
                Applied::Done => Removed::default(),
            }));
        }
        Write::Begin(trace) => {
            if let Err(error) = result {
                tracing::error!(trace_id = %trace.id, %error, "recording a trace's start failed");
            }
        }
        Write::Input(id, _) => {
            if let Err(error) = result {
                tracing::error!(trace_id = %id, %error, "replacing a trace's input failed");
            }
        }
    }
}

/// Apply a batch in one transaction; the result of each write, in order.
fn commit(db: &mut Connection, batch: &[Write]) -> Vec<Result<Applied, String>> {
    let mut tx = match db.transaction() {
        Ok(tx) => tx,
        Err(error) => return batch.iter().map(|_| Err(error.to_string())).collect(),
    };
    let mut results: Vec<Result<Applied, String>> = batch
        .iter()
        .map(|write| {
            let mut savepoint = tx.savepoint().map_err(|e| e.to_string())?;
            match apply(&savepoint, write) {
                Ok(applied) => savepoint.commit().map(|()| applied).map_err(|e| e.to_string()),
                Err(error) => {
                    let _ = savepoint.rollback();
                    Err(error.to_string())
                }
            }
        })
        .collect();
    if let Err(error) = tx.commit() {
        results.iter_mut().for_each(|result| *result = Err(error.to_string()));
    }
    results
}

fn apply(tx: &Connection, write: &Write) -> rusqlite::Result<Applied> {
    match write {
        Write::Begin(trace) => begin(tx, trace).map(|()| Applied::Done),
        Write::Input(id, input) => replace_input(tx, *id, input).map(|()| Applied::Done),
        Write::Finish(trace, _) => finish(tx, trace).map(|()| Applied::Done),
        Write::Remove(ids, _) => retention::remove(tx, ids).map(Applied::Removed),
    }
}

fn begin(tx: &Connection, trace: &NewTrace) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO traces (id, parent_id, kind, status, source, language, boot_id, started_at_us, input, search_no, tenant)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8,
                 (SELECT coalesce(max(search_no), 0) + 1 FROM traces),
                 coalesce(?9, (SELECT tenant FROM traces WHERE id = ?2)))",
    )?
    .execute(params![
        trace.id.to_string(),
        trace.parent_id.map(|id| id.to_string()),
        trace.input.kind().as_str(),
        trace.source.as_str(),
        trace.language.map(Language::as_str),
        trace.boot_id,
        trace.started_at_us,
        trace.input.to_json().to_string(),
        trace.tenant,
    ])?;
    Ok(())
}

fn replace_input(tx: &Connection, id: TraceId, input: &TraceInput) -> rusqlite::Result<()> {
    let updated = tx
        .prepare_cached("UPDATE traces SET input = ?2 WHERE id = ?1 AND status = 'running'")?
        .execute(params![id.to_string(), input.to_json().to_string()])?;
    if updated != 1 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    Ok(())
}

/// End a running trace. A trace ends once: finishing one that never began, or that ended
/// already (a panic after the run recorded its end), changes nothing and fails.
fn finish(tx: &Connection, trace: &FinishedTrace) -> rusqlite::Result<()> {
    let id = trace.id.to_string();
    let updated = tx
        .prepare_cached(
            "UPDATE traces SET status = ?2, ended_at_us = ?3, exit_code = ?4, output = ?5
             WHERE id = ?1 AND status = 'running'",
        )?
        .execute(params![
            id,
            trace.status.as_str(),
            trace.ended_at_us,
            trace.exit_code,
            trace.output.to_json().to_string()
        ])?;
    if updated != 1 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    let mut insert =
        tx.prepare_cached("INSERT INTO trace_events (trace_id, seq, at_us, name, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (seq, event) in trace.events.iter().enumerate() {
        let detail = (!event.detail.is_null()).then(|| event.detail.to_string());
        insert.execute(params![id, seq as i64, event.at_us, event.name, detail])?;
    }
    // What the search box finds: the code (a Claude call's prompt), and both streams of output
    // (its reply), under the trace's search number (searches walk the newest traces first by it).
    tx.prepare_cached(
        "INSERT OR REPLACE INTO trace_search (rowid, trace_id, code, output)
         SELECT search_no, id, coalesce(json_extract(input, '$.code'), json_extract(input, '$.prompt'), ''),
                coalesce(json_extract(output, '$.stdout'), '') || char(10) || coalesce(json_extract(output, '$.stderr'), '')
                  || char(10) || coalesce(json_extract(output, '$.text'), '')
         FROM traces WHERE id = ?1",
    )?
    .execute(params![id])?;
    Ok(())
}
