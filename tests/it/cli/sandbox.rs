//! `tracebox sandbox …`: the real binary against a real server. Each test removes its sandboxes
//! (they outlive the server by design, and the server's drop fails a test that leaves a
//! container); `Cleanup` does it even when an assertion fails first.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::TestServer;

/// `tracebox sandbox ARGS` with `stdin`, finding `server` through TRACEBOX_ADDR as a user's
/// shell would.
fn sandbox(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("sandbox")
        .args(args)
        .env("TRACEBOX_ADDR", server.host())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Its stdout, stderr and exit code, to compare at once.
fn outcome(output: &Output) -> (String, String, Option<i32>) {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (text(&output.stdout), text(&output.stderr), output.status.code())
}

/// Removes every sandbox of the server when dropped (before the server, declared after it).
struct Cleanup<'a>(&'a TestServer);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = sandbox(self.0, &["cleanup"], "");
    }
}

fn create(server: &TestServer, args: &[&str]) -> String {
    let (stdout, stderr, code) = outcome(&sandbox(server, &[&["create"][..], args].concat(), ""));
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.strip_suffix('\n').unwrap_or_default().to_owned();
    assert!(id.starts_with("sbx_") && !id.contains(char::is_whitespace), "stdout is the id alone: {stdout:?}");
    assert!(stderr.contains(&format!("created {id} (python")), "{stderr}");
    id
}

#[tokio::test]
async fn a_sandbox_is_driven_from_the_command_line_from_create_to_rm() {
    let server = TestServer::spawn().await;
    let _cleanup = Cleanup(&server);
    let id = create(&server, &["--metadata", "test=cli"]);
    let run = |args: &[&str], stdin: &str| outcome(&sandbox(&server, args, stdin));

    // A command's streams stay apart and its exit code is this one's.
    let exec = run(&["exec", &id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"], "");
    assert_eq!(exec, ("out\n".into(), "err\n".into(), Some(3)));
    let line = run(&["exec", &id, "--cmd", "echo \"$((6 * 7))\" > answer.txt && cat answer.txt"], "");
    assert_eq!(line, ("42\n".into(), String::new(), Some(0)));

    // A cell's variables persist; the last expression's value is printed after its output.
    assert_eq!(run(&["code", &id, "-"], "x = 41"), (String::new(), String::new(), Some(0)));
    let dir = tempfile::tempdir().unwrap();
    let cell = dir.path().join("cell.py");
    std::fs::write(&cell, "print('x is', x)\nx + 1").unwrap();
    assert_eq!(run(&["code", &id, cell.to_str().unwrap()], ""), ("x is 41\n42\n".into(), String::new(), Some(0)));
    let (stdout, stderr, code) = run(&["code", &id, "-"], "1/0");
    assert_eq!((stdout.as_str(), code), ("", Some(1)), "{stderr}");
    assert!(stderr.contains("ZeroDivisionError: division by zero"), "the traceback: {stderr}");

    let (listed, _, code) = run(&["list"], "");
    assert_eq!(code, Some(0));
    let row = listed.lines().find(|line| line.starts_with(&id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("running") && row.contains("python"), "{row}");
    assert!(!run(&["list", "--metadata", "test=other"], "").0.contains(&id));

    assert_eq!(run(&["pause", &id], "").2, Some(0));
    let (stdout, stderr, code) = run(&["exec", &id, "--", "ls"], "");
    assert_eq!((stdout.as_str(), code), ("", Some(1)));
    assert!(stderr.contains(&format!("sandbox_conflict: sandbox {id} is paused; resume it first")), "{stderr}");
    assert!(run(&["list", "--status", "paused"], "").0.contains(&id));

    let (_, stderr, code) = run(&["resume", &id], "");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("variables did not survive the pause"), "{stderr}");
    assert_eq!(run(&["exec", &id, "--", "cat", "answer.txt"], ""), ("42\n".into(), String::new(), Some(0)));

    assert_eq!(run(&["rm", &id], ""), (String::new(), format!("removed {id}\n"), Some(0)));
    let (listed, stderr, code) = run(&["list"], "");
    assert!(!listed.contains("sbx_") && stderr.contains("no sandboxes") && code == Some(0), "{listed}{stderr}");
}

#[tokio::test]
async fn a_timeout_exits_124_and_code_the_policy_refuses_exits_2_naming_the_rule() {
    let server = TestServer::spawn().await;
    let _cleanup = Cleanup(&server);
    let id = create(&server, &[]);
    let (_, stderr, code) = outcome(&sandbox(&server, &["exec", &id, "--timeout", "1", "--", "sleep", "30"], ""));
    assert_eq!(code, Some(124), "{stderr}");
    assert!(stderr.contains("tracebox: timeout:"), "{stderr}");
    let (stdout, stderr, code) = outcome(&sandbox(&server, &["code", &id, "-"], "import subprocess"));
    assert_eq!((stdout.as_str(), code), ("", Some(2)));
    assert!(stderr.contains("blocked_by_policy") && stderr.contains("rules: python.subprocess"), "{stderr}");
    let (stdout, _, code) = outcome(&sandbox(&server, &["cleanup"], ""));
    assert_eq!((stdout.as_str(), code), ("removed 1 sandboxes\n", Some(0)));
}

#[tokio::test]
async fn an_unknown_sandbox_exits_1_with_the_servers_404() {
    let server = TestServer::spawn().await;
    for args in [&["get", "sbx_nope"][..], &["exec", "sbx_nope", "--", "true"], &["rm", "sbx_nope"]] {
        let (stdout, stderr, code) =
            outcome(&sandbox(&server, &[&["--server", server.url.as_str()][..], args].concat(), ""));
        assert_eq!((stdout.as_str(), code), ("", Some(1)), "{args:?}");
        assert!(stderr.starts_with("tracebox: no_such_sandbox: no sandbox \"sbx_nope\""), "{args:?}: {stderr}");
    }
    // Bad usage is 2, a server that is not there 1.
    assert_eq!(sandbox(&server, &["exec", "sbx_nope"], "").status.code(), Some(2));
    let (_, stderr, code) = outcome(&sandbox(&server, &["list", "--server", "http://127.0.0.1:1"], ""));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot reach http://127.0.0.1:1/sandboxes"), "{stderr}");
}

#[tokio::test]
async fn an_agents_session_from_the_command_line_repo_tools_trajectory_and_replay() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "--quiet"]);
    std::fs::write(repo.path().join("hello.py"), "print('hello')\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "first"]);

    let server = TestServer::spawn().await;
    let _cleanup = Cleanup(&server);
    let id = create(&server, &["--repo", &repo.path().display().to_string(), "--setup", "echo ready > setup.txt"]);
    let run = |args: &[&str]| outcome(&sandbox(&server, args, ""));

    // A tool's output on stdout, its exit code as this one's, why it failed on stderr.
    let (out, _, code) = run(&["exec", &id, "--tool", "shell", "--params", r#"{"command": "python3 hello.py"}"#]);
    assert_eq!((out.as_str(), code), ("hello\n", Some(0)));
    let (out, err, code) =
        run(&["exec", &id, "--tool", "shell", "--params", r#"{"command": "cat setup.txt; exit 5"}"#]);
    assert_eq!((out.as_str(), code), ("ready\n", Some(5)), "{err}");
    assert!(err.contains("shell failed: exit code 5"), "{err}");
    let (out, _, code) = run(&["exec", &id, "--tool", "git", "--params", r#"{"args": ["log", "--format=%s"]}"#]);
    assert_eq!((out.as_str(), code), ("first\n", Some(0)));
    let (_, err, code) = run(&["exec", &id, "--tool", "shell", "--params", "{not json"]);
    assert_eq!(code, Some(2), "bad --params is a usage error: {err}");
    let (_, err, code) = run(&["exec", &id, "--tool", "git", "--params", r#"{"args": ["push"]}"#]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a subcommand the git tool runs"), "{err}");

    // The trajectory, saved and replayed: 0 when it agrees, 1 when a step diverged, 2 when the
    // file is no trajectory.
    let (trajectory, err, code) = run(&["trajectory", &id]);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trajectory.json");
    std::fs::write(&file, &trajectory).unwrap();
    let (table, err, code) = run(&["replay", &id, &file.display().to_string()]);
    assert_eq!(code, Some(0), "{table}{err}");
    assert!(table.starts_with("STEP") && table.lines().count() == 4, "a row per step: {table}");
    assert!(err.contains("no step diverged"), "{err}");

    let mut tampered: serde_json::Value = serde_json::from_str(&trajectory).unwrap();
    tampered["steps"][0]["output"] = serde_json::json!("goodbye\n");
    std::fs::write(&file, tampered.to_string()).unwrap();
    let (table, err, code) = run(&["replay", &id, &file.display().to_string()]);
    assert_eq!(code, Some(1), "{table}{err}");
    assert!(table.lines().nth(1).unwrap().contains("DIVERGED"), "{table}");
    assert!(err.contains("step 0 diverged") && err.contains("goodbye") && err.contains("hello"), "{err}");

    std::fs::write(&file, "not a trajectory").unwrap();
    assert_eq!(run(&["replay", &id, &file.display().to_string()]).2, Some(2));
    std::fs::write(&file, r#"{"steps": [{"tool_name": "teleport", "params": {}}]}"#).unwrap();
    let (_, err, code) = run(&["replay", &id, &file.display().to_string()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("steps[0]") && err.contains("teleport"), "{err}");
    assert_eq!(run(&["replay", &id, "/no/such/file.json"]).2, Some(2));

    let (_, err, code) = run(&["reset", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("reset {id}")), "{err}");
    let (swe, _, code) = run(&["trajectory", &id, "--format", "swe-agent"]);
    assert_eq!(code, Some(0));
    let swe: serde_json::Value = serde_json::from_str(&swe).unwrap();
    assert_eq!(swe["trajectory"][0]["action"], "python3 hello.py", "{swe}");
}
