//! `tracebox run`: the same pipeline from a terminal, exiting with the program's code; and
//! (`cli/sandbox.rs`) `tracebox sandbox`, a client of a server's sandboxes.

mod sandbox;

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
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_file_runs_and_its_output_and_exit_code_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("hello.js");
    std::fs::write(&program, "console.log('hi from a file'); console.error('warned'); process.exit(4)").unwrap();
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
    assert!(dir.path().join("traces/traces.db").is_file(), "the run left a trace");
}

#[test]
fn stdin_is_given_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("upper.py");
    std::fs::write(&program, "import sys\nprint(sys.stdin.read().upper(), end='')").unwrap();
    let output = tracebox_run(&["--stdin", "-", program.to_str().unwrap()], dir.path(), "shout\n");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "SHOUT\n");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "from a file\n").unwrap();
    let output = tracebox_run(&["--stdin", input.to_str().unwrap(), program.to_str().unwrap()], dir.path(), "");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "FROM A FILE\n");
}

#[test]
fn a_handler_prints_only_its_result_on_stdout_and_the_program_output_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("handler.py");
    std::fs::write(
        &program,
        "def handler(event, context):\n    print('log line')\n    return {'sum': sum(event['n'])}\n",
    )
    .unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"n": [1, 2, 3]}"#).unwrap();
    let args = ["--handler", "handler", "--event", event.to_str().unwrap(), program.to_str().unwrap()];
    let output = tracebox_run(&args, dir.path(), "");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "{\"sum\":6}\n", "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "log line\n");
    assert_eq!(output.status.code(), Some(0));

    let raising = dir.path().join("raising.js");
    std::fs::write(&raising, "exports.handler = async (event) => { throw new TypeError(`no ${event}`); };").unwrap();
    let output = tracebox_run(&["--handler", "handler", "--event", "-", raising.to_str().unwrap()], dir.path(), "7");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "", "no result");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("at exports.handler") && stderr.contains("the handler failed: TypeError: no 7"),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(1));

    let output = tracebox_run(&["--event", event.to_str().unwrap(), program.to_str().unwrap()], dir.path(), "");
    assert_eq!(output.status.code(), Some(2), "--event needs --handler");
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

#[test]
fn an_interrupted_run_exits_130_and_leaves_no_container() {
    use std::time::{Duration, Instant};
    crate::common::require_docker();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args(["run", "--timeout", "60", "-"])
        .env("TRACEBOX_DATA_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"while True: pass").unwrap();
    let deadline = Instant::now() + crate::common::patience();
    let boot = loop {
        let boots = std::fs::read_dir(dir.path().join("traces/boots")).into_iter().flatten().flatten();
        if let Some(name) = boots.filter_map(|e| e.file_name().into_string().ok()).next() {
            break name.trim_end_matches(".lock").to_owned();
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let containers = || crate::common::containers_labelled(&format!("tracebox.boot={boot}"));
    while containers().is_empty() {
        assert!(Instant::now() < deadline, "the run's container never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(containers().is_empty(), "Ctrl-C must not leave the container running");
}

/// Every command finds the sandbox image's base without being told (the label the image carries,
/// else whichever base Docker has): with `TRACEBOX_BASE_IMAGE` unset, `image build` finds the
/// image current and `run` goes through, offline as well as with a registry.
#[test]
fn no_base_image_setting_is_needed() {
    crate::common::require_docker();
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("one.py");
    std::fs::write(&program, "print('found its base')").unwrap();
    let tracebox = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tracebox"))
            .args(args)
            .env("TRACEBOX_DATA_DIR", dir.path())
            .env_remove("TRACEBOX_BASE_IMAGE")
            .env_remove("TRACEBOX_CONFIG")
            .output()
            .unwrap()
    };
    let built = tracebox(&["image", "build"]);
    let said = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success() && said.contains("is up to date"), "{said}");
    let output = tracebox(&["run", program.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "found its base\n", "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}
