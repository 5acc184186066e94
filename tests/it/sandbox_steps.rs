//! What runs in a stateful sandbox: commands (`bash -c`, with stdin, env, cwd and a timeout)
//! and code cells for its persistent interpreter (Python and Node). Each step ends alone; the
//! sandbox, its files and its interpreter's variables stay. The policy screens commands and
//! cells, and redaction applies to what they print.

use serde_json::{Value, json};

use crate::common::patience;
use crate::common::sandboxes::{SandboxServer, code, message};

/// The processes of a sandbox, one `pid cmdline` a line, as a command lists them from /proc
/// (the image has no `ps`); the listing command itself is left out.
const PROCESSES: &str = r#"for p in /proc/[0-9]*; do c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null); [ -n "$c" ] && [ "${p#/proc/}" != "$$" ] && echo "${p#/proc/} $c"; done; true"#;

/// Run `cmd` until its stdout satisfies `wanted` (the sandbox settles: a killed process is
/// reaped a moment after its command's reply), failing after the test's patience.
async fn until_stdout(server: &SandboxServer, id: &str, cmd: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let stdout = server.sh(id, cmd).await;
        if wanted(&stdout) {
            return stdout;
        }
        assert!(tokio::time::Instant::now() < deadline, "{cmd} never printed what was wanted; last: {stdout}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn stream<'a>(reply: &'a Value, field: &str) -> &'a str {
    reply[field].as_str().unwrap_or_else(|| panic!("`{field}` in {reply}"))
}

// ------------------------------------------------------------------ commands

#[tokio::test]
async fn a_sandbox_survives_many_commands_that_write_to_stdout_and_stderr_as_they_end() {
    // Each command's end (its pipes closing, SIGCHLD) comes in one wake-up of the supervisor;
    // whatever order it handles them in, the sandbox goes on.
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > marker").await;
    for n in 0..60 {
        let reply = server.command(&id, &format!("echo out {n}; echo err {n} >&2")).await;
        assert_eq!(reply["status"], "success", "command {n}: {reply}");
        assert_eq!(
            (stream(&reply, "stdout"), stream(&reply, "stderr")),
            (&*format!("out {n}\n"), &*format!("err {n}\n")),
            "command {n}: {reply}"
        );
    }
    assert_eq!(server.sh(&id, "cat marker").await, "kept\n");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_command_gets_its_stdin_its_cwd_and_the_sandbox_env_with_its_own_on_top() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"env": {"GREETING": "hello", "SHADOWED": "sandbox"}})).await;
    server.sh(&id, "mkdir -p sub/dir").await;
    let body = json!({
        "cmd": "pwd; cat; echo \"$GREETING $SHADOWED $EXTRA\"",
        "stdin": "line one\nline two\n",
        "cwd": "sub/dir",
        "env": {"EXTRA": "more", "SHADOWED": "command"},
    });
    let (status, reply) = server.command_with(&id, body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(stream(&reply, "stdout"), "/workspace/sub/dir\nline one\nline two\nhello command more\n", "{reply}");
    // A command's env is its own: the next one sees the sandbox's alone.
    assert_eq!(server.sh(&id, "echo \"$SHADOWED ${EXTRA:-unset}\"").await, "sandbox unset\n");
    // An absolute cwd inside /workspace is the same place.
    let (_, reply) = server.command_with(&id, json!({"cmd": "pwd", "cwd": "/workspace/sub"})).await;
    assert_eq!(stream(&reply, "stdout"), "/workspace/sub\n", "{reply}");
    // The kernel has the sandbox's env too, and none of tracebox's settings.
    let result = server
        .result(&id, "import os; (os.environ['GREETING'], sorted(k for k in os.environ if k.startswith('TRACEBOX')))")
        .await;
    assert_eq!(result, "('hello', [])");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_command_that_times_out_is_killed_with_its_children_and_the_sandbox_lives_on() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > marker").await;
    let body = json!({"cmd": "sleep 301 & (sleep 302; echo never) & echo started; sleep 303", "timeout": 1});
    let (status, reply) = server.command_with(&id, body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((&reply["status"], &reply["timed_out"]), (&json!("timeout"), &json!(true)), "{reply}");
    assert_eq!(stream(&reply, "stdout"), "started\n", "output before the timeout is kept: {reply}");
    let left = until_stdout(&server, &id, PROCESSES, |ps| !ps.contains("sleep 30")).await;
    assert!(!left.contains("sleep"), "no sleeper of the timed-out command is left: {left}");
    assert_eq!(server.sh(&id, "cat marker").await, "kept\n", "the sandbox and its files live on");
    server.delete(&id).await;
}

#[tokio::test]
async fn background_processes_of_a_command_do_not_survive_it() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let reply = server.command(&id, "sleep 311 & nohup sleep 312 >/dev/null 2>&1 & disown; echo started").await;
    assert_eq!(stream(&reply, "stdout"), "started\n", "{reply}");
    assert!(reply["duration_ms"].as_u64().unwrap() < 5_000, "the command did not wait for its children: {reply}");
    let left = until_stdout(&server, &id, PROCESSES, |ps| !ps.contains("sleep 31")).await;
    assert_eq!(left.lines().count(), 1, "only the supervisor is left: {left}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_command_that_floods_its_output_is_stopped_at_the_limit_and_the_sandbox_lives_on() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_OUTPUT_LIMIT_BYTES", "100000")]).await;
    let id = server.sandbox(json!({})).await;
    let reply = server.command(&id, "yes flood").await;
    assert_eq!((&reply["status"], &reply["truncated"]), (&json!("output_limit"), &json!(true)), "{}", reply["message"]);
    assert!(stream(&reply, "stdout").len() <= 100_000);
    assert_eq!(server.sh(&id, "echo after").await, "after\n");
    until_stdout(&server, &id, PROCESSES, |ps| !ps.contains("yes")).await;
    server.delete(&id).await;
}

#[tokio::test]
async fn a_command_cannot_reach_the_supervisors_channel_to_tracebox() {
    // PID 1 (the supervisor) holds tracebox's requests on fd 0 and its replies on fd 1; it is
    // not dumpable, so a program of the same user cannot open them through /proc.
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    for cmd in ["echo forged > /proc/1/fd/1", "head -c 1 /proc/1/fd/0", "cat /proc/1/environ", "ls /proc/1/fd"] {
        let reply = server.command(&id, cmd).await;
        assert_ne!(reply["exit_code"], 0, "{cmd} is refused by the kernel: {reply}");
        assert!(stream(&reply, "stderr").contains("ermission denied"), "{cmd}: {reply}");
    }
    assert_eq!(server.sh(&id, "echo fine").await, "fine\n", "the sandbox still answers");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_bad_command_request_is_a_400_naming_the_field_and_runs_nothing() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let cases = [
        (json!({"cmd": "  "}), "invalid_sandbox", "`cmd`"),
        (json!({"cmd": "echo x", "timeout": 0}), "invalid_sandbox", "`timeout`"),
        (json!({"cmd": "echo x", "timeout": 100_000}), "invalid_sandbox", "`timeout`"),
        (json!({"cmd": "echo x", "env": {"1BAD": "x"}}), "invalid_sandbox", "`env`"),
        (json!({"cmd": "echo x", "shell": "zsh"}), "invalid_json", "`shell`"),
        (json!({"command": "echo x"}), "invalid_json", "cmd"),
    ];
    for (body, wanted, field) in cases {
        let (status, reply) = server.command_with(&id, body.clone()).await;
        assert_eq!((status, code(&reply)), (400, wanted), "{body}: {reply}");
        assert!(message(&reply).contains(field), "{body}: the message names {field}: {reply}");
    }
    let (status, reply) = server.command_with("sbx_nosuchsandbox", json!({"cmd": "true"})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{reply}");
    let (_, view) = server.view(&id).await;
    assert_eq!(view["steps"], 0, "nothing ran: {view}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cwd_outside_the_workspace_or_missing_is_a_400_and_runs_nothing() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "ln -s /etc etc-link; echo x > file").await;
    for cwd in ["/etc", "..", "../..", "etc-link", "missing", "file"] {
        let body = json!({"cmd": "pwd > /workspace/ran", "cwd": cwd});
        let (status, reply) = server.command_with(&id, body).await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "cwd {cwd}: {reply}");
        assert!(message(&reply).contains("cwd"), "the message names `cwd`: {reply}");
    }
    assert_eq!(server.read(&id, "ran").await.0, 404, "no command ran");
    server.delete(&id).await;
}

#[tokio::test]
async fn steps_past_the_queue_limit_are_refused_with_409_and_the_queued_one_runs_after() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MAX_QUEUED_STEPS", "1")]).await;
    let id = server.sandbox(json!({})).await;
    let holder = {
        let cmd = "touch running; while [ ! -e release ]; do sleep 0.05; done; echo released";
        let (client, url) = (server.client.clone(), server.url(&format!("/sandboxes/{id}/commands")));
        tokio::spawn(
            async move { client.post(url).json(&json!({"cmd": cmd})).send().await.unwrap().json::<Value>().await },
        )
    };
    let deadline = tokio::time::Instant::now() + patience();
    while server.read(&id, "running").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the first command never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Three more at once while one runs: one waits, two are refused at once, whichever came
    // first. The waiting one cannot end before the first is released.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..3 {
        let (client, url, done_tx) =
            (server.client.clone(), server.url(&format!("/sandboxes/{id}/commands")), done_tx.clone());
        tokio::spawn(async move {
            let response = client.post(url).json(&json!({"cmd": format!("echo waited {n}")})).send().await.unwrap();
            let _ = done_tx.send((response.status().as_u16(), response.json::<Value>().await.unwrap()));
        });
    }
    for _ in 0..2 {
        let (status, reply) = done.recv().await.unwrap();
        assert_eq!((status, code(&reply)), (409, "sandbox_busy"), "{reply}");
        assert!(message(&reply).contains("TRACEBOX_SANDBOX_MAX_QUEUED_STEPS"), "{reply}");
    }
    let (status, _) = server.write(&id, "release", "now").await;
    assert_eq!(status, 200);
    let first = holder.await.unwrap().unwrap();
    assert_eq!(first["stdout"], "released\n", "{first}");
    let (status, queued) = done.recv().await.unwrap();
    assert_eq!(status, 200, "the queued command ran once the slot was free: {queued}");
    assert!(stream(&queued, "stdout").starts_with("waited "), "{queued}");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ code cells

#[tokio::test]
async fn python_variables_imports_and_functions_persist_between_cells_and_results_are_reprs() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let first = server.code(&id, "import math\ndef area(r):\n    return math.pi * r * r\nx = 41").await;
    assert_eq!((&first["status"], &first["result"], &first["error"]), (&json!("success"), &Value::Null, &Value::Null));
    assert_eq!(server.result(&id, "x + 1").await, "42");
    assert_eq!(server.result(&id, "round(area(1), 5), 'text', [None]").await, "(3.14159, 'text', [None])");
    let printed = server.code(&id, "print('out'); import sys; print('err', file=sys.stderr); x").await;
    assert_eq!((stream(&printed, "stdout"), stream(&printed, "stderr")), ("out\n", "err\n"), "{printed}");
    assert_eq!(printed["result"], "41");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cell_that_raises_is_an_error_with_its_traceback_and_the_kernel_keeps_its_state() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.code(&id, "kept = 'yes'").await;
    let reply = server.code(&id, "print('before')\nraise ValueError('boom')").await;
    assert_eq!((&reply["status"], &reply["exit_code"], &reply["result"]), (&json!("error"), &json!(1), &Value::Null));
    assert_eq!((&reply["error"]["name"], &reply["error"]["value"]), (&json!("ValueError"), &json!("boom")), "{reply}");
    assert!(stream(&reply["error"], "traceback").contains("raise ValueError('boom')"), "{reply}");
    assert_eq!(stream(&reply, "stdout"), "before\n", "{reply}");
    let exited = server.code(&id, "raise SystemExit(3)").await;
    assert_eq!(exited["error"]["name"], "SystemExit", "SystemExit ends the cell, not the kernel: {exited}");
    assert_eq!(server.result(&id, "kept").await, "'yes'");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_python_cell_that_loops_forever_is_interrupted_at_its_timeout_and_the_kernel_survives() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.code(&id, "kept = 42").await;
    // Several times: the reply must say timeout every time, never a plain error.
    for n in 0..6 {
        let (status, reply) = server.code_with(&id, json!({"code": "while True: pass", "timeout": 0.5})).await;
        assert_eq!(status, 200, "{reply}");
        let how = (&reply["status"], &reply["timed_out"], &reply["interrupted"], &reply["restarted"]);
        assert_eq!(how, (&json!("timeout"), &json!(true), &json!(true), &json!(false)), "cell {n}: {reply}");
        assert_eq!(reply["error"]["name"], "KeyboardInterrupt", "{reply}");
    }
    assert_eq!(server.result(&id, "kept").await, "42", "the same kernel, with its variables");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cell_stuck_in_c_code_gets_a_new_kernel_at_its_timeout_and_the_reply_says_so() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.code(&id, "kept = 42").await;
    let (_, reply) = server.code_with(&id, json!({"code": "sum(range(10**13))", "timeout": 0.5})).await;
    let how = (&reply["status"], &reply["timed_out"], &reply["interrupted"], &reply["restarted"]);
    assert_eq!(how, (&json!("timeout"), &json!(true), &json!(true), &json!(true)), "{reply}");
    assert_eq!(reply["error"]["name"], "KernelRestarted", "{reply}");
    let after = server.code(&id, "kept").await;
    assert_eq!(after["error"]["name"], "NameError", "a new kernel: the variables are gone: {after}");
    assert_eq!(server.result(&id, "1 + 1").await, "2");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cell_that_ends_its_kernel_is_told_so_and_the_next_cell_gets_a_new_one() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.code(&id, "kept = 1").await;
    let reply = server.code(&id, "import os; os._exit(3)").await;
    assert_eq!((&reply["status"], &reply["restarted"]), (&json!("error"), &json!(true)), "{reply}");
    assert_eq!(reply["error"]["name"], "KernelRestarted", "{reply}");
    assert_eq!(server.code(&id, "kept").await["error"]["name"], "NameError");
    assert_eq!(server.result(&id, "2 * 21").await, "42");
    server.delete(&id).await;
}

#[tokio::test]
async fn restarting_the_kernel_forgets_its_variables_and_keeps_the_files() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.code(&id, "kept = 1\nopen('file.txt', 'w').write('stays')").await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/code/restart"), json!({})).await;
    assert_eq!(status, 204, "{reply}");
    assert_eq!(server.code(&id, "kept").await["error"]["name"], "NameError");
    assert_eq!(server.result(&id, "open('file.txt').read()").await, "'stays'");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cell_in_another_language_than_the_sandboxes_is_a_400_naming_language() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"language": "python"})).await;
    let (status, reply) = server.code_with(&id, json!({"code": "1", "language": "node"})).await;
    assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "{reply}");
    assert!(message(&reply).contains("`language`"), "{reply}");
    let (status, reply) = server.code_with(&id, json!({"code": "1", "language": "python3"})).await;
    assert_eq!((status, &reply["result"]), (200, &json!("1")), "its own language, by any name: {reply}");
    server.delete(&id).await;
}

#[tokio::test]
async fn node_variables_persist_top_level_await_works_and_results_are_util_inspect() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"language": "node", "env": {"GREETING": "hello"}})).await;
    assert_eq!(server.result(&id, "let x = 40; const y = {a: [1, 2], b: 's'}").await, Value::Null);
    assert_eq!(server.result(&id, "x + 2").await, "42");
    assert_eq!(server.result(&id, "y").await, "{ a: [ 1, 2 ], b: 's' }");
    assert_eq!(server.result(&id, "await new Promise(r => setTimeout(() => r(x * 2), 10))").await, "80");
    assert_eq!(server.result(&id, "function twice(n) { return 2 * n }; twice(x)").await, "80");
    assert_eq!(server.result(&id, "twice(1)").await, "2", "functions persist too");
    assert_eq!(server.result(&id, "process.env.GREETING").await, "'hello'");
    let printed = server.code(&id, "console.log('out'); console.error('err'); undefined").await;
    assert_eq!((stream(&printed, "stdout"), stream(&printed, "stderr")), ("out\n", "err\n"), "{printed}");
    let thrown = server.code(&id, "throw new TypeError('bad')").await;
    assert_eq!(
        (&thrown["status"], &thrown["error"]["name"], &thrown["error"]["value"]),
        (&json!("error"), &json!("TypeError"), &json!("bad"))
    );
    assert_eq!(server.result(&id, "x").await, "40", "a throw keeps the kernel");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_node_cell_that_loops_forever_is_interrupted_at_its_timeout_and_the_kernel_survives() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"language": "node"})).await;
    server.code(&id, "var kept = 42").await;
    for n in 0..4 {
        let (_, reply) = server.code_with(&id, json!({"code": "while (true) {}", "timeout": 0.5})).await;
        let how = (&reply["status"], &reply["timed_out"], &reply["interrupted"], &reply["restarted"]);
        assert_eq!(how, (&json!("timeout"), &json!(true), &json!(true), &json!(false)), "cell {n}: {reply}");
    }
    assert_eq!(server.result(&id, "kept").await, "42");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ policy and redaction

#[tokio::test]
async fn a_command_the_policy_blocks_is_a_403_and_nothing_of_it_runs() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let (status, reply) = server.command_with(&id, json!({"cmd": "touch ran; :(){ :|:& };:"})).await;
    assert_eq!((status, code(&reply)), (403, "blocked_by_policy"), "{reply}");
    assert!(message(&reply).contains("shell.fork_bomb"), "{reply}");
    let trace_id = reply["trace_id"].as_str().expect("the refusal is traced");
    assert_eq!(server.trace(trace_id).await["status"], "blocked");
    assert_eq!(server.read(&id, "ran").await.0, 404, "nothing of the command ran");
    let (status, reply) = server.code_with(&id, json!({"code": "import os; os.system('touch ran')"})).await;
    assert_eq!((status, code(&reply)), (403, "blocked_by_policy"), "cells are screened too: {reply}");
    assert_eq!(server.read(&id, "ran").await.0, 404);
    assert_eq!(server.sh(&id, "echo fine").await, "fine\n", "the sandbox still answers");
    server.delete(&id).await;
}

#[tokio::test]
async fn secrets_in_command_and_cell_output_are_redacted() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    // Put together at run time, so that the key is in the output and not in the request.
    let reply =
        server.command(&id, "K=AKIA; echo \"key=${K}IOSFODNN7EXAMPLE\"; echo \"${K}IOSFODNN7EXAMPLE\" >&2").await;
    assert_eq!(stream(&reply, "stdout"), "key=[REDACTED:aws_access_key_id]\n", "{reply}");
    assert_eq!(stream(&reply, "stderr"), "[REDACTED:aws_access_key_id]\n", "{reply}");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert!(!trace.to_string().contains("AKIAIOSFODNN7EXAMPLE"), "the trace keeps no secret: {trace}");
    let cell = server.code(&id, "k = 'AKIA' + 'IOSFODNN7EXAMPLE'\nprint(k)").await;
    assert_eq!(stream(&cell, "stdout"), "[REDACTED:aws_access_key_id]\n", "{cell}");
    let trace = server.trace(cell["trace_id"].as_str().unwrap()).await;
    assert!(!trace.to_string().contains("AKIAIOSFODNN7EXAMPLE"), "the trace keeps no secret: {trace}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cells_result_and_error_are_redacted_like_its_output() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let result = server.code(&id, "k = 'AKIA' + 'IOSFODNN7EXAMPLE'\nk").await;
    let raised = server.code(&id, "raise ValueError(k)").await;
    let traces = [
        server.trace(result["trace_id"].as_str().unwrap()).await,
        server.trace(raised["trace_id"].as_str().unwrap()).await,
    ];
    server.delete(&id).await;
    assert_eq!(result["result"], "'[REDACTED:aws_access_key_id]'", "{result}");
    assert_eq!(raised["error"]["value"], "[REDACTED:aws_access_key_id]", "{raised}");
    for shown in [&result, &raised, &traces[0], &traces[1]] {
        assert!(!shown.to_string().contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
    }
}

#[tokio::test]
async fn secrets_in_a_file_read_through_the_api_are_redacted() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "K=AKIA; echo \"key=${K}IOSFODNN7EXAMPLE\" > secret.txt").await;
    let (status, bytes) = server.read(&id, "secret.txt").await;
    server.delete(&id).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&bytes), "key=[REDACTED:aws_access_key_id]\n");
}

// ------------------------------------------------------------------ resource exhaustion

#[tokio::test]
async fn a_fork_bomb_the_screen_misses_is_held_by_the_pids_limit_and_killed_at_its_timeout() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > marker").await;
    let bomb = "python3 -c 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass'";
    let (status, reply) = server.command_with(&id, json!({"cmd": bomb, "timeout": 2})).await;
    assert_eq!((status, &reply["status"]), (200, &json!("timeout")), "{reply}");
    until_stdout(&server, &id, PROCESSES, |ps| !ps.contains("python3 -c")).await;
    assert_eq!(server.sh(&id, "cat marker").await, "kept\n", "the sandbox answers, its files intact");
    assert_eq!(server.result(&id, "6 * 7").await, "42");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_cell_that_exhausts_memory_ends_only_its_kernel_and_the_sandbox_lives_on() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"memory_mb": 64, "disk_mb": 16})).await;
    server.sh(&id, "echo kept > marker").await;
    let reply = server.code(&id, "hog = bytearray(400 * 2**20)\nhog[::4096] = b'x' * len(hog[::4096])").await;
    assert_eq!(reply["status"], "error", "{reply}");
    let name = reply["error"]["name"].as_str().unwrap();
    assert!(matches!(name, "MemoryError" | "KernelRestarted"), "{reply}");
    assert_eq!(server.sh(&id, "cat marker").await, "kept\n", "the supervisor and the files survive");
    assert_eq!(server.result(&id, "6 * 7").await, "42", "a kernel answers after");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_command_whose_sandbox_is_deleted_under_it_hears_that_it_was_deleted() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let running = {
        let (server, id) = (&server, id.clone());
        async move { server.command_with(&id, json!({"cmd": "echo started; sleep 30", "timeout": 60})).await }
    };
    let deleting = async {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        server.delete(&id).await;
    };
    let ((status, reply), ()) = tokio::join!(running, deleting);
    assert_eq!((status, code(&reply)), (409, "sandbox_conflict"), "{reply}");
    assert!(message(&reply).contains("the sandbox was removed (deleted"), "not 'killed from outside': {reply}");
    server.no_sandbox_containers().await;
}
