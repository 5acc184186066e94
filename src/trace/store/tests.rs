//! The store against a real SQLite file in a temporary directory.

use std::time::Duration;

use serde_json::{Value, json};
use tracebox_model::{
    Execution, Language, RunLimits, Source, Status, TraceEvent, TraceInput, TraceOutput, TraceStatus,
};

use tracebox_model::record::ExecutionInput;

use super::*;
use crate::trace::TraceFilter;

fn new_trace(code: &str) -> NewTrace {
    let limits = RunLimits { timeout: Duration::from_secs(1), memory_bytes: 1, cpus: 1.0, pids: 1, output_bytes: 1 };
    NewTrace {
        id: TraceId::new(),
        parent_id: None,
        source: Source::Cli,
        language: Some(Language::Python),
        boot_id: "boot-1".into(),
        started_at_us: now_us(),
        input: TraceInput::Execution(ExecutionInput {
            language: Language::Python,
            code: code.to_owned(),
            stdin: String::new(),
            env_names: Vec::new(),
            files: Vec::new(),
            limits,
            policy_hits: Vec::new(),
            omitted_bytes: 0,
            handler: None,
        }),
        tenant: None,
    }
}

fn finished(id: TraceId, status: Status, stdout: &str) -> FinishedTrace {
    let output = Execution { stdout: stdout.to_owned(), ..Execution::empty(id, status) };
    FinishedTrace {
        id,
        status,
        ended_at_us: now_us() + 1_500,
        exit_code: Some(0),
        output: TraceOutput::Execution(Box::new(output)),
        events: vec![
            TraceEvent { at_us: now_us(), name: "started".into(), detail: Value::Null },
            TraceEvent { at_us: now_us(), name: "exited".into(), detail: json!({"exit_code": 0}) },
        ],
    }
}

async fn record(store: &TraceStore, code: &str, status: Status, stdout: &str) -> TraceId {
    let trace = new_trace(code);
    let id = trace.id;
    store.begin(trace);
    store.finish(finished(id, status, stdout)).await.unwrap();
    id
}

fn page(limit: usize) -> TraceFilter {
    TraceFilter { limit, ..TraceFilter::default() }
}

#[tokio::test]
async fn a_finished_trace_reads_back_with_its_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let id = record(&store, "\n  print('hi')\nprint(2)", Status::Success, "hi\n").await;

    let detail = store.get(id).await.unwrap().expect("the trace exists");
    assert_eq!(detail.summary.status, TraceStatus::Ended(Status::Success));
    assert_eq!(detail.summary.preview, "print('hi')");
    assert_eq!(detail.output["stdout"], "hi\n");
    let names: Vec<_> = detail.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["started", "exited"]);
    assert_eq!(detail.events[1].detail["exit_code"], 0);
    assert!(detail.summary.duration_ms.unwrap() > 0.0);
    assert!(store.get(TraceId::new()).await.unwrap().is_none());
}

#[tokio::test]
async fn traces_survive_reopening_and_the_instance_id_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let instance = store.instance_id().to_owned();
    let id = record(&store, "print(1)", Status::Error, "").await;
    store.close();

    let reopened = TraceStore::open(dir.path()).unwrap();
    assert_eq!(reopened.instance_id(), instance);
    assert_eq!(reopened.get(id).await.unwrap().unwrap().summary.status, TraceStatus::Ended(Status::Error));
}

#[tokio::test]
async fn a_new_boot_fails_the_running_traces_of_dead_boots_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let orphan = new_trace("while True: pass");
    let orphan_id = orphan.id;
    store.begin(orphan);
    let alive = NewTrace { boot_id: "boot-2".into(), ..new_trace("import time; time.sleep(60)") };
    let alive_id = alive.id;
    store.begin(alive);
    // A finished trace makes sure the begins above are committed.
    record(&store, "print(1)", Status::Success, "1\n").await;

    store.record_boot("boot-3").await.unwrap();
    assert_eq!(store.fail_orphaned(&["boot-2".into(), "boot-3".into()]).await.unwrap(), 1);
    let orphan = store.get(orphan_id).await.unwrap().unwrap();
    assert_eq!(orphan.summary.status, TraceStatus::Ended(Status::InternalError));
    assert!(orphan.output["message"].as_str().unwrap().contains("stopped before this run finished"));
    assert_eq!(store.get(alive_id).await.unwrap().unwrap().summary.status, TraceStatus::Running);
}

#[tokio::test]
async fn pages_follow_the_cursor_newest_first_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let status = if i % 2 == 0 { Status::Success } else { Status::Error };
        ids.push(record(&store, &format!("print({i})"), status, "").await);
    }
    let first = store.list(page(2)).await.unwrap();
    assert_eq!(first.traces.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[4], ids[3]]);
    let second = store.list(TraceFilter { before: first.next_cursor, ..page(2) }).await.unwrap();
    assert_eq!(second.traces.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[2], ids[1]]);
    let last = store.list(TraceFilter { before: second.next_cursor, ..page(2) }).await.unwrap();
    assert_eq!(last.traces.len(), 1);
    assert_eq!(last.next_cursor, None);

    let errors = store.list(TraceFilter { status: Some(TraceStatus::Ended(Status::Error)), ..page(10) }).await.unwrap();
    assert_eq!(errors.traces.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[3], ids[1]]);
    assert_eq!(store.count().await.unwrap(), 5);
}

#[tokio::test]
async fn search_finds_text_in_code_or_output_in_any_script() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let in_code = record(&store, "print('zebra crossing')", Status::Success, "").await;
    let in_output = record(&store, "print(x)", Status::Success, "日本語のテキスト\n").await;
    let neither = record(&store, "print(1)", Status::Success, "1\n").await;

    let found = |text: &str| {
        let store = store.clone();
        let filter = TraceFilter { text: Some(text.into()), ..page(10) };
        async move { store.list(filter).await.unwrap().traces.iter().map(|t| t.id).collect::<Vec<_>>() }
    };
    assert_eq!(found("zebra").await, [in_code]);
    assert_eq!(found("本語の").await, [in_output]);
    assert_eq!(found("1").await, [neither], "short text falls back to a scan");
    assert!(found("\" OR 1=1 --").await.is_empty(), "search text is data, never query syntax");
}

#[tokio::test]
async fn a_failing_write_does_not_take_its_batch_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    // Finishing a trace that never began fails; the good trace queued beside it still lands.
    let good = new_trace("print('good')");
    let good_id = good.id;
    store.begin(good);
    let lost = store.finish(finished(TraceId::new(), Status::Success, ""));
    let kept = store.finish(finished(good_id, Status::Success, "good\n"));
    let (lost, kept) = tokio::join!(lost, kept);
    assert!(lost.is_err());
    kept.unwrap();
    assert_eq!(store.get(good_id).await.unwrap().unwrap().output["stdout"], "good\n");
}

#[tokio::test]
async fn a_trace_ends_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let id = record(&store, "print(1)", Status::Success, "1\n").await;
    // A second end (a panic after the run recorded its own) changes nothing.
    assert!(store.finish(finished(id, Status::InternalError, "")).await.is_err());
    let detail = store.get(id).await.unwrap().unwrap();
    assert_eq!(detail.summary.status, TraceStatus::Ended(Status::Success));
    assert_eq!(detail.output["stdout"], "1\n");
}

#[tokio::test]
async fn a_running_trace_s_input_can_be_replaced_and_the_search_finds_only_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let trace = new_trace("print('aardvark')");
    let id = trace.id;
    let TraceInput::Execution(input) = &trace.input else { unreachable!("an execution") };
    let shorter = ExecutionInput { code: "print('aa".into(), omitted_bytes: 8, ..input.clone() };
    store.begin(trace);
    store.replace_input(id, TraceInput::Execution(shorter));
    store.finish(finished(id, Status::InternalError, "")).await.unwrap();
    let detail = store.get(id).await.unwrap().unwrap();
    assert_eq!((detail.input["code"].as_str(), detail.input["omitted_bytes"].as_u64()), (Some("print('aa"), Some(8)));
    let filter = TraceFilter { text: Some("aardvark".into()), ..page(10) };
    assert!(store.list(filter).await.unwrap().traces.is_empty());
}

#[test]
fn a_database_from_a_newer_tracebox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Connection::open(dir.path().join("traces.db")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let error = TraceStore::open(dir.path()).err().expect("refused").to_string();
    assert!(error.contains("schema version 99"), "{error}");
}

/// Every page of a search, followed by the cursor, with the search confined first to the
/// `window` newest traces.
fn search_pages(db: &Connection, filter: TraceFilter, window: i64) -> Vec<Vec<TraceId>> {
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = queries::list(db, &TraceFilter { before, ..filter.clone() }, window).unwrap();
        pages.push(page.traces.iter().map(|t| t.id).collect());
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn a_search_pages_newest_first_by_id_whatever_range_it_starts_in_and_in_whatever_order_traces_began() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    // Ids made in time order but begun in another order, so rowids disagree with ids.
    let ids: Vec<TraceId> = (0..30).map(|_| TraceId::new()).collect();
    let mut finishes = Vec::new();
    for i in (0..30).map(|i| (i * 7) % 30) {
        store.begin(NewTrace { id: ids[i], ..new_trace(&format!("print({i})")) });
        let stdout = if i % 4 == 0 {
            "a kiwi\n"
        } else if i == 1 {
            "lonely\n"
        } else {
            "x\n"
        };
        let status = if i % 8 == 0 { Status::Error } else { Status::Success };
        finishes.push(store.finish(finished(ids[i], status, stdout)));
    }
    for done in futures_util::future::join_all(finishes).await {
        done.unwrap();
    }
    let db = connect(store.path()).unwrap();
    let kiwis: Vec<TraceId> = (0..30).rev().filter(|i| i % 4 == 0).map(|i| ids[i]).collect();
    let filter = |text: &str| TraceFilter { text: Some(text.into()), ..page(3) };

    for window in [1, 2, 5, 1024] {
        let pages = search_pages(&db, filter("kiwi"), window);
        assert!(pages.iter().all(|p| p.len() <= 3), "window {window}: {pages:?}");
        assert_eq!(pages.concat(), kiwis, "window {window}: newest first, each once");
        assert_eq!(search_pages(&db, filter("lonely"), window), [[ids[1]]], "window {window}");
        assert_eq!(search_pages(&db, filter("ki"), window).concat(), kiwis, "window {window}: short text scans");
        let errors = search_pages(
            &db,
            TraceFilter { status: Some(TraceStatus::Ended(Status::Error)), ..filter("kiwi") },
            window,
        );
        assert_eq!(errors.concat(), [ids[24], ids[16], ids[8], ids[0]], "window {window}: with a filter");
        assert_eq!(search_pages(&db, filter("absent"), window), [Vec::<TraceId>::new()], "window {window}");
    }
}

#[test]
fn search_rows_written_before_version_2_are_found_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = Connection::open(dir.path().join("traces.db")).unwrap();
    db.execute_batch(MIGRATIONS[0]).unwrap();
    db.pragma_update(None, "user_version", 1).unwrap();
    let (old, new) = (TraceId::new(), TraceId::new());
    for id in [old, new] {
        db.execute(
            "INSERT INTO traces (id, kind, status, source, started_at_us) VALUES (?1, 'execution', 'success', 'cli', 0)",
            params![id.to_string()],
        )
        .unwrap();
    }
    // Version 1 numbered search rows apart from their traces.
    db.execute(
        "INSERT INTO trace_search (rowid, trace_id, code, output) VALUES (7, ?1, 'print(1)', 'an emu')",
        params![new.to_string()],
    )
    .unwrap();
    db.execute(
        "INSERT INTO trace_search (rowid, trace_id, code, output) VALUES (9, ?1, 'print(2)', 'an emu')",
        params![old.to_string()],
    )
    .unwrap();
    drop(db);

    let store = TraceStore::open(dir.path()).unwrap();
    let db = connect(store.path()).unwrap();
    let found = search_pages(&db, TraceFilter { text: Some("emu".into()), ..page(1) }, 1);
    assert_eq!(found, [[new], [old]]);
}

#[tokio::test]
async fn search_survives_a_vacuum_that_renumbers_rowids() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(record(&store, &format!("print('word{n}')"), Status::Success, &format!("emu {n}\n")).await);
    }
    let db = connect(store.path()).unwrap();
    // Deleting early traces then VACUUM renumbers the rowids of a table with a TEXT primary key.
    for id in &ids[..2] {
        db.execute("DELETE FROM trace_search WHERE trace_id = ?1", params![id.to_string()]).unwrap();
        db.execute("DELETE FROM traces WHERE id = ?1", params![id.to_string()]).unwrap();
    }
    db.execute_batch("VACUUM").unwrap();
    let found = search_pages(&db, TraceFilter { text: Some("word4".into()), ..page(10) }, 1);
    assert_eq!(found, [vec![ids[4]]], "the search row still points at its own trace");
    let all = search_pages(&db, TraceFilter { text: Some("emu".into()), ..page(2) }, 1);
    assert_eq!(all, [vec![ids[5], ids[4]], vec![ids[3], ids[2]]]);
}

#[tokio::test]
async fn file_records_are_kept_by_tenant_and_name_replaced_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let record = |name: &str, size| FileRecord {
        tenant: String::new(),
        name: name.into(),
        size,
        sha256: format!("{size:064x}"),
        uploaded_at_us: now_us(),
        trace_id: None,
    };
    store.put_file(record("b.csv", 2)).await.unwrap();
    store.put_file(record("a.csv", 1)).await.unwrap();
    store.put_file(record("b.csv", 3)).await.unwrap();
    // Another tenant's a.csv is another file.
    store.put_file(FileRecord { tenant: "acme".into(), ..record("a.csv", 9) }).await.unwrap();
    let names: Vec<(String, u64)> = store.files("").await.unwrap().into_iter().map(|r| (r.name, r.size)).collect();
    assert_eq!(names, [("a.csv".to_owned(), 1), ("b.csv".to_owned(), 3)]);
    store.remove_file("", "a.csv").await.unwrap();
    assert_eq!(store.files("").await.unwrap().len(), 1);
    assert_eq!(store.file("acme", "a.csv").await.unwrap().map(|r| r.size), Some(9));
    store.close();
}

#[tokio::test]
async fn a_child_is_its_parents_tenants_and_a_tenants_list_and_search_hold_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let parent = NewTrace { tenant: Some("acme".into()), ..new_trace("print('walrus')") };
    let parent_id = parent.id;
    store.begin(parent);
    let child = NewTrace { parent_id: Some(parent_id), ..new_trace("print('walrus child')") };
    let child_id = child.id;
    store.begin(child);
    let other = NewTrace { tenant: Some("other".into()), ..new_trace("print('walrus too')") };
    let open = new_trace("print('walrus open')");
    let ids = [parent_id, child_id, other.id, open.id];
    store.begin(other);
    store.begin(open);
    // Searches find finished traces.
    for id in ids {
        store.finish(finished(id, Status::Success, "walrus")).await.unwrap();
    }
    assert_eq!(store.tenant_of(child_id).await.unwrap(), Some(Some("acme".to_owned())), "inherited");
    assert_eq!(store.tenant_of(TraceId::new()).await.unwrap(), None, "no such trace");
    for text in [None, Some("walrus".to_owned())] {
        let filter = TraceFilter { tenant: Some("acme".into()), text: text.clone(), ..page(10) };
        let mut found: Vec<TraceId> = store.list(filter).await.unwrap().traces.iter().map(|t| t.id).collect();
        found.sort();
        let mut wanted = vec![parent_id, child_id];
        wanted.sort();
        assert_eq!(found, wanted, "{text:?}");
    }
    assert_eq!(store.list(TraceFilter { text: Some("walrus".into()), ..page(10) }).await.unwrap().traces.len(), 4);
    store.close();
}

const DAY_US: i64 = 86_400_000_000;

/// A finished trace that started `days_ago`, under `parent`, with `word` in its output.
async fn record_aged(store: &TraceStore, days_ago: i64, parent: Option<TraceId>, word: &str) -> TraceId {
    let trace = NewTrace { parent_id: parent, started_at_us: now_us() - days_ago * DAY_US, ..new_trace("print(1)") };
    let id = trace.id;
    store.begin(trace);
    store.finish(finished(id, Status::Success, &format!("{word}\n"))).await.unwrap();
    id
}

/// A trace begun and not ended, started `days_ago`, under `parent`.
async fn running_aged(store: &TraceStore, days_ago: i64, parent: Option<TraceId>) -> TraceId {
    let trace = NewTrace { parent_id: parent, started_at_us: now_us() - days_ago * DAY_US, ..new_trace("input()") };
    let id = trace.id;
    store.begin(trace);
    id
}

/// Rows of `table` about trace `id` (the search table by its trace_id column).
fn rows_of(db: &Connection, table: &str, id: TraceId) -> i64 {
    let column = if table == "traces" { "id" } else { "trace_id" };
    db.query_row(&format!("SELECT count(*) FROM {table} WHERE {column} = ?1"), params![id.to_string()], |row| {
        row.get(0)
    })
    .unwrap()
}

async fn found(store: &TraceStore, text: &str) -> Vec<TraceId> {
    let filter = TraceFilter { text: Some(text.into()), ..page(100) };
    store.list(filter).await.unwrap().traces.iter().map(|t| t.id).collect()
}

/// Retire with the given rules, collecting the ids each batch handed over.
async fn retire(store: &TraceStore, days: Option<u64>, max_count: Option<u64>) -> (Swept, Vec<Vec<TraceId>>) {
    let mut batches = Vec::new();
    let max_age = days.map(|days| Duration::from_secs(days * 86_400));
    let swept = store
        .retire(max_age, max_count, |ids| {
            batches.push(ids);
            async { 0 }
        })
        .await
        .unwrap();
    (swept, batches)
}

#[tokio::test]
async fn traces_past_their_age_go_with_their_events_and_search_rows_and_running_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let old = record_aged(&store, 40, None, "wombat").await;
    let at_edge = record_aged(&store, 29, None, "numbat").await;
    let running = running_aged(&store, 40, None).await;
    let young = record_aged(&store, 0, None, "wombat-free").await;
    let db = connect(store.path()).unwrap();
    assert_eq!((rows_of(&db, "trace_events", old), rows_of(&db, "trace_search", old)), (2, 1));
    assert_eq!(found(&store, "wombat").await, [young, old]);

    let (swept, batches) = retire(&store, Some(30), None).await;
    assert_eq!(batches, [vec![old]]);
    assert_eq!(swept, Swept { traces: 1, events: 2, search_rows: 1, artifact_runs: 0, batches: 1 });
    assert!(store.get(old).await.unwrap().is_none());
    assert_eq!((rows_of(&db, "trace_events", old), rows_of(&db, "trace_search", old)), (0, 0));
    assert_eq!(found(&store, "wombat").await, [young], "only the removed trace had the word alone");
    for kept in [at_edge, running, young] {
        assert!(store.get(kept).await.unwrap().is_some(), "{kept} is younger than 30 days, or running");
    }
    assert_eq!(retire(&store, Some(30), None).await.0, Swept::default(), "a second sweep finds nothing");
    assert_eq!(retire(&store, None, None).await.0, Swept::default(), "no rule: nothing goes");
}

#[tokio::test]
async fn past_the_cap_the_oldest_go_down_to_it_exactly_and_a_running_one_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let running = running_aged(&store, 9, None).await;
    let mut ids = Vec::new();
    for days_ago in (0..6).rev() {
        ids.push(record_aged(&store, days_ago, None, "kiwi").await);
    }
    assert_eq!(store.count().await.unwrap(), 7);

    assert_eq!(retire(&store, None, Some(7)).await.0.traces, 0, "at the cap nothing goes");
    assert_eq!(retire(&store, None, Some(6)).await.0.traces, 1, "one over: the oldest goes");
    assert!(store.get(ids[0]).await.unwrap().is_none());
    let (swept, _) = retire(&store, None, Some(4)).await;
    assert_eq!(swept.traces, 2);
    assert_eq!(store.count().await.unwrap(), 4);
    assert!(store.get(running).await.unwrap().is_some(), "the oldest, but running");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.get(*id).await.unwrap().is_some(), i >= 3, "trace {i}");
    }
    assert_eq!(found(&store, "kiwi").await.len(), 3);
}

#[tokio::test]
async fn a_tree_goes_whole_children_first_and_stays_whole_while_any_of_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    // A batch with a Claude call under it, and the call's run under that.
    let done_batch = record_aged(&store, 50, None, "b").await;
    let call = record_aged(&store, 50, Some(done_batch), "c").await;
    let run = record_aged(&store, 50, Some(call), "r").await;
    let busy_batch = record_aged(&store, 45, None, "b").await;
    let finished_item = record_aged(&store, 45, Some(busy_batch), "i").await;
    let running_item = running_aged(&store, 45, Some(busy_batch)).await;
    // A child started lately under an old root goes with its root.
    let late_child = record_aged(&store, 1, Some(done_batch), "l").await;

    let (swept, batches) = retire(&store, Some(30), None).await;
    assert_eq!(swept.traces, 4);
    let removed = batches.concat();
    let position = |id| removed.iter().position(|r| *r == id).unwrap();
    assert!(position(run) < position(call) && position(call) < position(done_batch), "{removed:?}");
    assert!(position(late_child) < position(done_batch));
    for kept in [busy_batch, finished_item, running_item] {
        assert!(store.get(kept).await.unwrap().is_some(), "{kept}: its tree has a run going");
    }
}

#[tokio::test]
async fn a_large_sweep_is_cut_into_batches_and_a_tree_cut_by_one_is_finished_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let batch = record_aged(&store, 3, None, "root").await;
    let mut finishes = Vec::new();
    for _ in 0..400 {
        let trace = NewTrace { parent_id: Some(batch), started_at_us: now_us() - 3 * DAY_US, ..new_trace("1") };
        let id = trace.id;
        store.begin(trace);
        finishes.push(store.finish(finished(id, Status::Success, "item")));
    }
    for done in futures_util::future::join_all(finishes).await {
        done.unwrap();
    }
    let young = record_aged(&store, 0, None, "young").await;
    // One trace over the cap: the oldest tree goes, all 401 of it, over two batches.
    let (swept, batches) = retire(&store, None, Some(401)).await;
    assert_eq!(swept.traces, 401);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [retention::BATCH_TRACES, 401 - 256]);
    assert_eq!(batches[1].last(), Some(&batch), "the root goes last");
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(store.get(young).await.unwrap().is_some());
}

fn failed_run(id: TraceId) -> impl FnOnce(&str) -> TraceOutput {
    move |message| {
        let execution =
            Execution { message: Some(format!("failed: {message}")), ..Execution::empty(id, Status::InternalError) };
        TraceOutput::Execution(Box::new(execution))
    }
}

#[tokio::test]
async fn work_that_panics_ends_its_trace_as_internal_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let trace = new_trace("print(1)");
    let id = trace.id;
    let work = {
        let store = store.clone();
        async move {
            store.begin(trace);
            tokio::task::yield_now().await;
            let limits: Vec<u64> = Vec::new();
            limits[3]
        }
    };
    // On a task of its own, as runs are: what comes back is the panic, not a JoinError.
    let task = tokio::spawn({
        let store = store.clone();
        async move { crate::trace::ending_on_panic(&store, id, work, failed_run(id)).await }
    });
    let panicked = task.await.unwrap().unwrap_err();
    assert!(panicked.message.contains("index out of bounds"), "{panicked:?}");

    let detail = store.get(id).await.unwrap().expect("the trace");
    assert_eq!(detail.summary.status, TraceStatus::Ended(Status::InternalError), "not left running");
    assert!(detail.summary.ended_at.is_some());
    assert!(detail.output["message"].as_str().unwrap().contains("index out of bounds"), "{}", detail.output);
    assert_eq!(detail.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["panicked"]);
}

#[tokio::test]
async fn work_that_ends_well_or_ended_its_trace_before_panicking_keeps_its_own_ending() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let id = record(&store, "print(1)", Status::Success, "1\n").await;
    let calm = crate::trace::ending_on_panic(&store, id, async { 7 }, failed_run(id)).await;
    assert_eq!(calm, Ok(7));
    let late = crate::trace::ending_on_panic(&store, id, async { panic!("after the end") }, failed_run(id)).await;
    assert_eq!(late.unwrap_err().message, "after the end");
    let detail = store.get(id).await.unwrap().unwrap();
    assert_eq!(detail.summary.status, TraceStatus::Ended(Status::Success));
    assert_eq!(detail.output["stdout"], "1\n");
}

#[tokio::test]
async fn a_trace_that_started_at_the_cutoff_stays_and_one_a_microsecond_earlier_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let cutoff = now_us() - DAY_US;
    let at = |started_at_us| {
        let trace = NewTrace { started_at_us, ..new_trace("print(1)") };
        let id = trace.id;
        store.begin(trace);
        (id, store.finish(finished(id, Status::Success, "")))
    };
    let (before, first) = at(cutoff - 1);
    let (_on_the_cutoff, second) = at(cutoff);
    first.await.unwrap();
    second.await.unwrap();
    let doomed = store.doomed(Retention { started_before_us: Some(cutoff), excess: 0 }).await.unwrap();
    assert_eq!(doomed, Doomed { ids: vec![before], more: false, excess: 0 }, "older than the cutoff, not as old");
}

#[tokio::test]
async fn a_batch_stops_at_its_bytes_before_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    // 1.5 MiB of output each: two fit in a batch's 4 MiB, a third does not.
    let output = "o".repeat(1536 * 1024);
    for _ in 0..3 {
        record_aged(&store, 40, None, &output).await;
    }
    let (swept, batches) = retire(&store, Some(30), None).await;
    assert_eq!(swept.traces, 3);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
}

mod sandbox_steps;
