//! `tracebox run`: the same pipeline from a terminal, exiting with the program's code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn tracebox_run(args: &[&str], data_dir: &std::path::Path, stdin: &str) -> Output {
    crate::common::require_docker();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("run")
        .args(args)
        .env("TRACEBOX_DATA_DIR", data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_file_runs_and_its_output_and_exit_code_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("hello.js");
    std::fs::write(
        &program,
        "console.log('hi from a file'); console.error('warned'); process.exit(4)",
    )
    .unwrap();
    let output = tracebox_run(&[program.to_str().unwrap()], dir.path(), "");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi from a file\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "warned\n");
    assert_eq!(output.status.code(), Some(4));
}

#[test]
fn the_program_can_come_from_stdin_and_runs_traced() {
    let dir = tempfile::tempdir().unwrap();
    let output = tracebox_run(&["-"], dir.path(), "print(6 * 7)");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "42\n");
    assert_eq!(output.status.code(), Some(0));
    assert!(
        dir.path().join("traces/traces.db").is_file(),
        "the run left a trace"
    );
}

#[test]
fn piped_input_becomes_the_program_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("upper.py");
    std::fs::write(
        &program,
        "import sys\nprint(sys.stdin.read().upper(), end='')",
    )
    .unwrap();
    let output = tracebox_run(&[program.to_str().unwrap()], dir.path(), "shout\n");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "SHOUT\n");
}

#[test]
fn a_timeout_exits_124_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let output = tracebox_run(&["--timeout", "1", "-"], dir.path(), "while True: pass");
    assert_eq!(output.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&output.stderr).contains("timeout"));
}

#[test]
fn blocked_code_exits_126_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let output = tracebox_run(&["--language", "python", "-"], dir.path(), "import ctypes");
    assert_eq!(output.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&output.stderr).contains("python.ctypes"));
}

#[test]
fn an_unknown_language_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = tracebox_run(&["--language", "ruby", "-"], dir.path(), "puts 1");
    assert_eq!(output.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown language `ruby`"));
}
