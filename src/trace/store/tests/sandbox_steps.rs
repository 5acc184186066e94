//! A sandbox's steps: a page of them in order, each cut to excerpts by SQLite.

use std::collections::BTreeMap;

use tracebox_model::record::{CellError, CellOutcome, ErrorReport};
use tracebox_model::sandbox::{CellInput, CommandInput, OnTimeout, OpInput, OpOutput, SandboxInput, SandboxOp};
use tracebox_model::tool::{ReplayInput, ReplayOutput, ToolInput, ToolName, ToolOutput};
use tracebox_model::{Language, TraceKind};

use super::super::steps::{STEP_OUTPUT_CHARS, STEP_SOURCE_CHARS};
use super::*;
use crate::trace::{ChildWindow, Excerpt};

const SANDBOX: &str = "sbx_test";

fn limits() -> RunLimits {
    RunLimits { timeout: Duration::from_secs(1), memory_bytes: 0, cpus: 0.0, pids: 0, output_bytes: 1 << 20 }
}

fn sandbox(started_at_us: i64) -> NewTrace {
    let input = SandboxInput {
        sandbox_id: SANDBOX.into(),
        language: Language::Python,
        memory_mb: 512,
        cpus: 1.0,
        disk_mb: 1024,
        env_names: Vec::new(),
        metadata: BTreeMap::new(),
        files: Vec::new(),
        timeout_secs: 300.0,
        on_timeout: OnTimeout::Pause,
        repo: None,
        setup: Vec::new(),
    };
    NewTrace { started_at_us, input: TraceInput::Sandbox(input), ..new_trace("") }
}

/// Begin a step of `parent` at `at_us`.
fn step(store: &TraceStore, parent: TraceId, at_us: i64, input: TraceInput) -> TraceId {
    let trace = NewTrace { parent_id: Some(parent), started_at_us: at_us, input, ..new_trace("") };
    let id = trace.id;
    store.begin(trace);
    id
}

fn command(cmd: &str) -> TraceInput {
    TraceInput::Command(CommandInput {
        sandbox_id: SANDBOX.into(),
        cmd: cmd.into(),
        cwd: None,
        env_names: Vec::new(),
        stdin: String::new(),
        limits: limits(),
        policy_hits: Vec::new(),
        omitted_bytes: 0,
    })
}

fn cell(code: &str) -> TraceInput {
    let input = CellInput {
        sandbox_id: SANDBOX.into(),
        language: Language::Python,
        code: code.into(),
        limits: limits(),
        policy_hits: Vec::new(),
        omitted_bytes: 0,
    };
    TraceInput::Cell(input)
}

fn op(op: SandboxOp, path: Option<&str>) -> TraceInput {
    TraceInput::SandboxOp(OpInput { sandbox_id: SANDBOX.into(), op, path: path.map(str::to_owned), snapshot: None })
}

fn ran(id: TraceId, stdout: &str, stderr: &str, cell: Option<CellOutcome>) -> Box<Execution> {
    Box::new(Execution { stdout: stdout.into(), stderr: stderr.into(), cell, ..Execution::empty(id, Status::Success) })
}

fn whole(text: &str) -> Option<Excerpt> {
    Some(Excerpt { text: text.into(), bytes: text.len() as u64 })
}

#[tokio::test]
async fn a_page_of_steps_comes_in_order_cut_to_excerpts_by_sqlite_with_the_count_of_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let t0 = now_us() - 60_000_000;
    let sandbox = sandbox(t0);
    let sandbox_id = sandbox.id;
    store.begin(sandbox);

    // Output of three-byte characters, longer than a step shows: cut at a character, never
    // inside one, and its whole size known.
    let long = "€".repeat(STEP_OUTPUT_CHARS + 10);
    let long_cmd = format!("echo {}", "x".repeat(STEP_SOURCE_CHARS));
    let traceback =
        format!("Traceback (most recent call last):\n{}\nZeroDivisionError: division by zero", "  frame\n".repeat(400));
    let ids = [
        step(&store, sandbox_id, t0 + 1_000_000, command(&long_cmd)),
        step(&store, sandbox_id, t0 + 2_000_000, command("echo hi")),
        step(&store, sandbox_id, t0 + 3_000_000, cell("1 + 1")),
        step(&store, sandbox_id, t0 + 4_000_000, cell("1 / 0")),
        step(&store, sandbox_id, t0 + 5_000_000, op(SandboxOp::Write, Some("notes/a.txt"))),
        step(&store, sandbox_id, t0 + 6_000_000, op(SandboxOp::Snapshot, None)),
        step(&store, sandbox_id, t0 + 7_000_000, command("sleep 100")),
    ];
    // Ended out of order, as steps never are, to show the order is the order they began.
    let end = |i: usize, status: Status, output: TraceOutput| {
        let ended = FinishedTrace {
            id: ids[i],
            status,
            ended_at_us: t0 + (i as i64 + 1) * 1_000_000 + 250_000,
            exit_code: matches!(output, TraceOutput::Command(_)).then_some(0),
            output,
            events: Vec::new(),
        };
        store.finish(ended)
    };
    let error =
        CellError { name: "ZeroDivisionError".into(), value: "division by zero".into(), traceback: traceback.clone() };
    end(
        5,
        Status::Success,
        TraceOutput::SandboxOp(OpOutput { snapshot_id: Some("snap_1".into()), bytes: Some(2048), error: None }),
    )
    .await
    .unwrap();
    end(0, Status::Success, TraceOutput::Command(ran(ids[0], &long, "warn\n", None))).await.unwrap();
    end(1, Status::Success, TraceOutput::Command(ran(ids[1], "hi\n", "", None))).await.unwrap();
    let two = CellOutcome { result: Some("2".into()), ..CellOutcome::default() };
    end(2, Status::Success, TraceOutput::Cell(ran(ids[2], "", "", Some(two)))).await.unwrap();
    let raised = CellOutcome { error: Some(error), ..CellOutcome::default() };
    end(3, Status::Error, TraceOutput::Cell(ran(ids[3], "", "", Some(raised)))).await.unwrap();
    let refused = ErrorReport { code: None, message: "no room: the disk is full".into() };
    end(4, Status::Error, TraceOutput::SandboxOp(OpOutput { error: Some(refused), ..OpOutput::default() }))
        .await
        .unwrap();

    let all = store.steps(sandbox_id, ChildWindow { from: 0, limit: 200 }).await.unwrap();
    assert_eq!((all.total, all.from), (7, 0));
    assert_eq!(all.steps.iter().map(|s| s.id).collect::<Vec<_>>(), ids, "in the order they began");
    let offsets: Vec<i64> = all.steps.iter().map(|s| s.offset_us).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6, 7].map(|s| s * 1_000_000), "from the sandbox's start");

    let [cut, hi, result, raised, write, snapshot, running] = &all.steps[..] else { panic!("seven steps") };
    assert_eq!(cut.kind, TraceKind::Command);
    let source = cut.source.as_ref().unwrap();
    assert_eq!((source.text.chars().count(), source.bytes), (STEP_SOURCE_CHARS, long_cmd.len() as u64));
    assert!(source.is_cut());
    let stdout = cut.stdout.as_ref().unwrap();
    assert_eq!(stdout.text, "€".repeat(STEP_OUTPUT_CHARS), "cut at a character");
    assert_eq!(stdout.bytes, long.len() as u64);
    assert!(stdout.is_cut());
    assert_eq!(cut.stderr, whole("warn\n"));
    assert!(!cut.stderr.as_ref().unwrap().is_cut());
    assert_eq!(cut.duration_us, Some(250_000));

    assert_eq!((hi.source.clone(), hi.stdout.clone(), hi.stderr.clone()), (whole("echo hi"), whole("hi\n"), whole("")));
    assert_eq!(
        (result.kind, result.source.clone(), result.result.clone()),
        (TraceKind::Cell, whole("1 + 1"), whole("2"))
    );
    assert_eq!(result.error_name, None);

    assert_eq!(raised.status, TraceStatus::Ended(Status::Error));
    assert_eq!(
        (raised.error_name.clone(), raised.error_value.clone()),
        (whole("ZeroDivisionError"), whole("division by zero"))
    );
    let tb = raised.traceback.as_ref().unwrap();
    assert!(tb.is_cut() && tb.text.ends_with("ZeroDivisionError: division by zero"), "the end of a traceback is kept");
    assert_eq!(tb.text.chars().count(), STEP_OUTPUT_CHARS);

    assert_eq!(
        (write.kind, write.op, write.path.clone()),
        (TraceKind::SandboxOp, Some(SandboxOp::Write), whole("notes/a.txt"))
    );
    assert_eq!(write.message, whole("no room: the disk is full"), "an operation's error");
    assert_eq!(
        (snapshot.op, snapshot.snapshot_id.as_deref(), snapshot.bytes),
        (Some(SandboxOp::Snapshot), Some("snap_1"), Some(2048))
    );
    assert_eq!(snapshot.source, None);

    assert_eq!((running.status, running.duration_us, running.stdout.clone()), (TraceStatus::Running, None, None));

    // A page from the second: three, and the count of all; past the end: none.
    let page = store.steps(sandbox_id, ChildWindow { from: 1, limit: 3 }).await.unwrap();
    assert_eq!(page.steps.iter().map(|s| s.id).collect::<Vec<_>>(), ids[1..4]);
    assert_eq!((page.from, page.total), (1, 7));
    let past = store.steps(sandbox_id, ChildWindow { from: 7, limit: 3 }).await.unwrap();
    assert_eq!((past.steps.len(), past.total), (0, 7));
    let none = store.steps(ids[1], ChildWindow::FIRST).await.unwrap();
    assert_eq!((none.steps.len(), none.total), (0, 0), "a step has no steps");

    // The generic children read the same window, and a step knows its place.
    let detail = store.get_with(sandbox_id, ChildWindow { from: 2, limit: 2 }).await.unwrap().unwrap();
    assert_eq!(detail.children.iter().map(|c| c.id).collect::<Vec<_>>(), ids[2..4]);
    assert_eq!(detail.children_total, 7);
    assert_eq!(detail.children[0].preview, "1 + 1");
    let first = store.get(sandbox_id).await.unwrap().unwrap();
    assert_eq!(first.children[1].preview, "echo hi", "a command's preview is its command");
    assert_eq!(store.step_position(sandbox_id, ids[4]).await.unwrap(), Some(4));
    assert_eq!(store.step_position(ids[1], ids[4]).await.unwrap(), None, "a step is no sandbox");
}

/// The plan SQLite makes for `sql` (its detail lines).
fn plan(db: &Connection, sql: &str, values: impl rusqlite::Params) -> Vec<String> {
    let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    statement.query_map(values, |row| row.get::<_, String>(3)).unwrap().map(Result::unwrap).collect()
}

#[tokio::test]
async fn a_page_of_children_is_a_walk_of_the_index_that_sorts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let db = Connection::open(store.path()).unwrap();
    let values = params!["01a200cd-214b-7000-b7fa-f1a1a83b125f", 200, 100_000];
    for sql in [steps::STEPS.as_str(), queries::CHILD_IDS] {
        let plan = plan(&db, sql, values);
        assert!(plan.iter().any(|line| line.contains("USING COVERING INDEX traces_by_parent")), "{plan:#?}");
        assert!(!plan.iter().any(|line| line.contains("TEMP B-TREE")), "{plan:#?}");
    }
}

fn tool(tool: ToolName, params: Value) -> TraceInput {
    TraceInput::Tool(ToolInput { sandbox_id: SANDBOX.into(), tool, params, replay: None })
}

#[tokio::test]
async fn a_tool_call_is_a_step_its_tool_and_params_cut_by_sqlite_its_output_and_diff_what_came_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let t0 = now_us() - 60_000_000;
    let sandbox = sandbox(t0);
    let sandbox_id = sandbox.id;
    store.begin(sandbox);

    // A file's content longer than a step shows, in characters of two bytes: cut at one, and
    // what was cut counted in bytes.
    let content = "é".repeat(STEP_SOURCE_CHARS + 5);
    let write_params = json!({"path": "src/a.py", "content": content});
    let ids = [
        step(&store, sandbox_id, t0 + 1_000_000, tool(ToolName::Shell, json!({"command": "make test"}))),
        step(&store, sandbox_id, t0 + 2_000_000, tool(ToolName::FileWrite, write_params)),
        step(&store, sandbox_id, t0 + 3_000_000, tool(ToolName::Git, json!({"args": ["push"]}))),
        step(&store, sandbox_id, t0 + 4_000_000, tool(ToolName::Search, json!({"pattern": "fn main"}))),
        step(&store, sandbox_id, t0 + 5_000_000, replay(3)),
    ];
    // The shell call's own command is its child, not a step of the sandbox.
    let command = step(&store, ids[0], t0 + 1_100_000, command("make test"));
    let end = |i: usize, status: Status, exit_code: Option<i64>, output: TraceOutput| {
        let ended = FinishedTrace {
            id: ids[i],
            status,
            ended_at_us: t0 + (i as i64 + 1) * 1_000_000 + 500_000,
            exit_code,
            output,
            events: Vec::new(),
        };
        store.finish(ended)
    };
    let long_output = "o".repeat(STEP_OUTPUT_CHARS + 1);
    let ran = ToolOutput { output: long_output.clone(), exit_code: Some(2), success: false, ..ToolOutput::default() };
    end(0, Status::Error, Some(2), TraceOutput::Tool(ran)).await.unwrap();
    let diff = "--- a/src/a.py\n+++ b/src/a.py\n@@ -0,0 +1 @@\n+é\n";
    let wrote = ToolOutput {
        output: "wrote 8 bytes".into(),
        exit_code: Some(0),
        success: true,
        diff: Some(diff.into()),
        ..ToolOutput::default()
    };
    end(1, Status::Success, Some(0), TraceOutput::Tool(wrote)).await.unwrap();
    let refused = ToolOutput { error: Some("git push is not allowed".into()), ..ToolOutput::default() };
    end(2, Status::Error, None, TraceOutput::Tool(refused)).await.unwrap();
    let replayed = ReplayOutput { divergence_step: 1, diverged: vec![1], success: true };
    end(4, Status::Success, None, TraceOutput::Replay(replayed)).await.unwrap();

    let page = store.steps(sandbox_id, ChildWindow::FIRST).await.unwrap();
    assert_eq!(page.steps.iter().map(|s| s.id).collect::<Vec<_>>(), ids, "the tool calls, not their commands");
    assert_eq!(page.total, 5);
    let [shell, write, git, search, replay] = &page.steps[..] else { panic!("five steps") };

    assert_eq!(shell.kind, TraceKind::Tool);
    let call = shell.call.as_ref().unwrap();
    assert_eq!((call.tool, &call.params, call.omitted_bytes), (ToolName::Shell, &json!({"command": "make test"}), 0));
    assert_eq!(shell.source, None, "a call's command is in its params");
    assert_eq!(shell.exit_code, Some(2));
    let output = shell.output.as_ref().unwrap();
    assert_eq!((output.text.len(), output.bytes), (STEP_OUTPUT_CHARS, long_output.len() as u64));
    assert_eq!((shell.stdout.clone(), shell.diff.clone()), (None, None));

    let call = write.call.as_ref().unwrap();
    assert_eq!(call.params["path"], "src/a.py");
    assert_eq!(call.params["content"], "é".repeat(STEP_SOURCE_CHARS), "cut at a character");
    assert_eq!(call.omitted_bytes, 10, "five characters of two bytes cut");
    assert_eq!((write.output.clone(), write.diff.clone()), (whole("wrote 8 bytes"), whole(diff)));

    assert_eq!(git.message, whole("git push is not allowed"), "a tool call's error is its message");
    assert_eq!(git.call.as_ref().unwrap().params, json!({"args": ["push"]}));
    assert_eq!((search.status, search.duration_us, search.output.clone()), (TraceStatus::Running, None, None));

    assert_eq!((replay.kind, replay.call.clone()), (TraceKind::Replay, None));
    assert_eq!((replay.replayed_steps, replay.divergence_step), (Some(3), Some(1)));

    assert_eq!(store.step_position(sandbox_id, ids[2]).await.unwrap(), Some(2));
    assert_eq!(store.step_position(ids[0], command).await.unwrap(), None, "a call's command is no step of its own");
    assert_eq!(store.get(ids[0]).await.unwrap().unwrap().children_total, 1, "but its call's child");
}

fn replay(steps: usize) -> TraceInput {
    TraceInput::Replay(ReplayInput { sandbox_id: SANDBOX.into(), steps, reset: true, metadata: BTreeMap::new() })
}
