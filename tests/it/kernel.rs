//! The sandboxes' kernels (sandbox/kernel.py, sandbox/kernel.js) run directly on the host, wired
//! as the supervisor wires them: cells on stdin, their output on stdout and stderr, results on
//! fd 3 (a FIFO the test reads, opened by a shell that then runs the kernel). No Docker: the
//! host's `python3` and `node` on PATH; the image has Python 3.11 and Node 18.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde::Deserialize;

use crate::common::patience;

#[derive(Debug, Deserialize, PartialEq)]
struct Record {
    status: String,
    result: Option<String>,
    error: Option<CellError>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct CellError {
    name: String,
    value: String,
    traceback: String,
}

#[derive(Clone, Copy, Debug)]
enum Language {
    Python,
    Node,
}

/// A stream of the kernel (stdout or stderr), read into memory by a thread of its own.
#[derive(Default)]
struct Captured {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

impl Captured {
    fn read(mut source: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured::default());
        let sink = Arc::clone(&captured);
        std::thread::spawn(move || {
            let mut chunk = vec![0; 1 << 16];
            while let Ok(n @ 1..) = source.read(&mut chunk) {
                sink.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                sink.grew.notify_all();
            }
        });
        captured
    }

    fn len(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }

    /// Wait until the stream holds `expected` (everything since the last take), and take it.
    fn take(&self, expected: &str) -> String {
        let deadline = Instant::now() + patience();
        let mut bytes = self.bytes.lock().unwrap();
        while bytes.as_slice() != expected.as_bytes() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "expected {expected:?}, got {:?} (TRACEBOX_TEST_PATIENCE_SECS)",
                String::from_utf8_lossy(&bytes)
            );
            bytes = self.grew.wait_timeout(bytes, left).unwrap().0;
        }
        String::from_utf8(std::mem::take(&mut *bytes)).unwrap()
    }
}

/// A kernel process, its ready record read.
struct Kernel {
    child: Child,
    requests: Option<ChildStdin>,
    records: Receiver<Record>,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    _dir: tempfile::TempDir,
}

impl Kernel {
    fn start(language: Language) -> Kernel {
        let sandbox = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox");
        let command = match language {
            Language::Python => vec!["python3".into(), "-u".into(), sandbox.join("kernel.py")],
            Language::Node => vec!["node".into(), sandbox.join("kernel.js")],
        };
        // The directory stands for /workspace: the kernel's cwd, and the FIFO's place.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("results");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // The shell opens the FIFO as fd 3 (waiting for the reader below), then becomes the kernel.
        let mut child = Command::new("sh")
            .args(["-c", r#"exec 3>"$0"; exec "$@""#])
            .arg(&fifo)
            .args(command)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let results = File::open(&fifo).unwrap();
        let (sender, records) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut results = BufReader::new(results);
            let mut header = String::new();
            while matches!(results.read_line(&mut header), Ok(1..)) {
                let mut body = vec![0; header.trim_end().parse().expect("a length line")];
                results.read_exact(&mut body).unwrap();
                let record = serde_json::from_slice(&body).expect("a JSON record");
                if sender.send(record).is_err() {
                    break;
                }
                header.clear();
            }
        });
        let stdout = Captured::read(child.stdout.take().unwrap());
        let stderr = Captured::read(child.stderr.take().unwrap());
        let kernel = Kernel { requests: child.stdin.take(), child, records, stdout, stderr, _dir: dir };
        let ready = kernel.next_record();
        assert_eq!(ready, Record { status: "ready".into(), result: None, error: None });
        kernel
    }

    fn send(&mut self, source: &str) {
        let requests = self.requests.as_mut().unwrap();
        write!(requests, "CELL {}\n{source}", source.len()).unwrap();
        requests.flush().unwrap();
    }

    fn next_record(&self) -> Record {
        match self.records.recv_timeout(patience()) {
            Ok(record) => record,
            Err(RecvTimeoutError::Timeout) => panic!("no result within TRACEBOX_TEST_PATIENCE_SECS"),
            Err(RecvTimeoutError::Disconnected) => panic!("the kernel closed fd 3: {:?}", self.stderr.bytes),
        }
    }

    fn run(&mut self, source: &str) -> Record {
        self.send(source);
        self.next_record()
    }

    /// Run a cell that must succeed, and give its result.
    fn ok(&mut self, source: &str) -> Option<String> {
        let record = self.run(source);
        assert_eq!((record.status.as_str(), &record.error), ("ok", &None), "{source}");
        record.result
    }

    /// Run a cell that must fail, and give its error.
    fn error(&mut self, source: &str) -> CellError {
        let record = self.run(source);
        assert_eq!((record.status.as_str(), &record.result), ("error", &None), "{source}");
        record.error.expect("an error record")
    }

    fn interrupt(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(result: &str) -> Option<String> {
    Some(result.to_owned())
}

fn both(test: fn(Language)) {
    test(Language::Python);
    test(Language::Node);
}

#[test]
fn a_kernel_says_it_is_ready_before_its_first_cell() {
    // Kernel::start asserts the exact ready record.
    both(|language| drop(Kernel::start(language)));
}

#[test]
fn variables_imports_and_functions_persist_across_cells() {
    let mut python = Kernel::start(Language::Python);
    python.ok("import math\nx = 20");
    python.ok("def twice(n):\n    return 2 * n");
    assert_eq!(python.ok("twice(x) + math.floor(1.5)"), text("41"));

    let mut node = Kernel::start(Language::Node);
    node.ok("const path = require('path')\nlet x = 20\nvar y = 1");
    node.ok("function twice(n) { return 2 * n }\nclass Box { constructor(v) { this.v = v } }");
    assert_eq!(node.ok("twice(x) + y + new Box(path.sep.length).v"), text("42"));
}

#[test]
fn node_cells_may_declare_again_what_an_earlier_cell_declared() {
    // Running a fixed cell again must work, as in a browser console.
    let mut node = Kernel::start(Language::Node);
    node.ok("const data = [1, 2]; let n = 1; class Thing {}");
    node.ok("const data = [1, 2, 3]; let n = 2; class Thing { size() { return data.length } }");
    assert_eq!(node.ok("new Thing().size() + n"), text("5"));
}

#[test]
fn the_result_is_the_last_expression_and_null_without_one() {
    let mut python = Kernel::start(Language::Python);
    assert_eq!(python.ok("x = 2\nx * 21"), text("42"));
    assert_eq!(python.ok("'a' + 'b'"), text("'ab'"));
    assert_eq!(python.ok("y = x + 1"), None);
    assert_eq!(python.ok("for i in range(3):\n    pass"), None);
    assert_eq!(python.ok("None"), None);
    assert_eq!(python.ok(""), None);

    let mut node = Kernel::start(Language::Node);
    assert_eq!(node.ok("const x = 2\nx * 21"), text("42"));
    assert_eq!(node.ok("'a' + 'b'"), text("'ab'"));
    assert_eq!(node.ok("({ a: 1, b: [2] })"), text("{ a: 1, b: [ 2 ] }"));
    assert_eq!(node.ok("{ a: 1 }"), text("{ a: 1 }"));
    assert_eq!(node.ok("const y = x + 1"), None);
    assert_eq!(node.ok("undefined"), None);
    assert_eq!(node.ok(""), None);
    assert_eq!(node.ok("null"), text("null"));
}

#[test]
fn a_cells_stdout_and_stderr_reach_their_own_streams() {
    let mut python = Kernel::start(Language::Python);
    python.ok("import sys, subprocess\nprint('out')\nsys.stderr.write('err\\n')\nsys.stdout.write('raw\\n')");
    assert_eq!(python.stdout.take("out\nraw\n"), "out\nraw\n");
    assert_eq!(python.stderr.take("err\n"), "err\n");
    python.ok("subprocess.run(['sh', '-c', 'echo child; echo child-err >&2'])");
    python.stdout.take("child\n");
    python.stderr.take("child-err\n");

    let mut node = Kernel::start(Language::Node);
    node.ok("console.log('out'); console.error('err'); process.stdout.write('raw\\n')");
    node.stdout.take("out\nraw\n");
    node.stderr.take("err\n");
    node.ok("require('child_process').execSync('echo child; echo child-err >&2', { stdio: 'inherit' })");
    node.stdout.take("child\n");
    node.stderr.take("child-err\n");
}

#[test]
fn a_large_output_comes_whole_before_the_result_without_deadlock() {
    // Far more than a pipe holds: the kernel can only write its result once the reader has taken
    // nearly all of it. At most a pipe's worth (64 KiB) plus a chunk being read may lag.
    const OUT: usize = 5 << 20;
    const ERR: usize = 1 << 20;
    const SLACK: usize = 256 << 10;
    let cells = [
        (Language::Python, format!("import sys\nprint('x' * {OUT}, end='')\nsys.stderr.write('e' * {ERR})\n7")),
        (
            Language::Node,
            format!("process.stdout.write('x'.repeat({OUT})); process.stderr.write('e'.repeat({ERR})); 7"),
        ),
    ];
    for (language, cell) in cells {
        let mut kernel = Kernel::start(language);
        assert_eq!(kernel.ok(&cell), text("7"), "{language:?}");
        let (out, err) = (kernel.stdout.len(), kernel.stderr.len());
        assert!(out + SLACK >= OUT && err + SLACK >= ERR, "{language:?}: result came after {out} and {err} bytes");
        assert_eq!(kernel.stdout.take(&"x".repeat(OUT)).len(), OUT);
        assert_eq!(kernel.stderr.take(&"e".repeat(ERR)).len(), ERR);
    }
}

#[test]
fn an_error_keeps_the_interpreter_and_what_ran_before_it() {
    let mut python = Kernel::start(Language::Python);
    python.ok("def check(n):\n    if n > 1:\n        raise ValueError(f'too big: {n}')");
    let error = python.error("a = 1\nb = 2\ncheck(a + b)\nc = 3");
    assert_eq!((error.name.as_str(), error.value.as_str()), ("ValueError", "too big: 3"));
    let traceback = &error.traceback;
    assert!(traceback.starts_with("Traceback (most recent call last):\n"), "{traceback}");
    for line in ["File \"<cell 2>\", line 3, in <module>", "check(a + b)", "File \"<cell 1>\", line 3, in check"] {
        assert!(traceback.contains(line), "{line:?} in {traceback}");
    }
    assert!(!traceback.contains("kernel.py"), "{traceback}");
    assert_eq!(python.ok("a + b"), text("3"));
    assert_eq!(python.error("c").name, "NameError");
    let syntax = python.error("x = (1,");
    assert_eq!(syntax.name, "SyntaxError");
    assert!(syntax.traceback.contains("File \"<cell 5>\", line 1"), "{}", syntax.traceback);

    let mut node = Kernel::start(Language::Node);
    node.ok("function check(n) {\n  if (n > 1) throw new RangeError(`too big: ${n}`)\n}");
    let error = node.error("var a = 1\nlet b = 2\ncheck(a + b)\nlet c = 3");
    assert_eq!((error.name.as_str(), error.value.as_str()), ("RangeError", "too big: 3"));
    assert_eq!(error.traceback, "RangeError: too big: 3\n    at check (cell-1:2:20)\n    at cell-2:3:1");
    assert_eq!(node.ok("a + b"), text("3"));
    assert_eq!(node.error("c").name, "ReferenceError");
    let syntax = node.error("let z = (1,");
    assert_eq!(syntax.name, "SyntaxError");
    assert!(syntax.traceback.starts_with("cell-5:1\nlet z = (1,\n"), "{}", syntax.traceback);
}

#[test]
fn sigint_interrupts_a_busy_cell_and_the_next_cell_runs() {
    let cells = [
        (Language::Python, "n = 0\nprint('looping', flush=True)\nwhile True:\n    n += 1", "KeyboardInterrupt"),
        (Language::Node, "let n = 0\nconsole.log('looping')\nwhile (true) n++", "Interrupted"),
    ];
    for (language, cell, name) in cells {
        let mut kernel = Kernel::start(language);
        kernel.send(cell);
        kernel.stdout.take("looping\n");
        kernel.interrupt();
        let record = kernel.next_record();
        assert_eq!((record.status.as_str(), record.error.unwrap().name.as_str()), ("error", name));
        // What the cell did before the interrupt stays (the loop may not have turned yet).
        assert_eq!(kernel.ok("n >= 0"), text(if let Language::Python = language { "True" } else { "true" }));
    }
}

#[test]
fn sigint_between_cells_is_ignored() {
    both(|language| {
        let mut kernel = Kernel::start(language);
        kernel.interrupt();
        assert_eq!(kernel.ok("1 + 1"), text("2"));
        kernel.interrupt();
        assert_eq!(kernel.ok("2 + 2"), text("4"));
    });
}

#[test]
fn node_top_level_await_gives_the_value_or_the_rejection() {
    let mut node = Kernel::start(Language::Node);
    let sleep = "const sleep = (ms, v) => new Promise((resolve) => setTimeout(() => resolve(v), ms))";
    node.ok(sleep);
    assert_eq!(node.ok("const v = await sleep(10, 40)\nv + 1"), text("41"));
    assert_eq!(node.ok("v + 2"), text("42"));
    let error = node.error("await Promise.reject(new TypeError('no luck'))");
    assert_eq!((error.name.as_str(), error.value.as_str()), ("TypeError", "no luck"));
    assert!(error.traceback.starts_with("TypeError: no luck\n    at cell-4:1:"), "{}", error.traceback);
    // A promise that never settles is interrupted while the kernel waits for it. (The cell prints
    // once it awaits: a SIGINT that comes as its synchronous part ends can be lost, see kernel.js.)
    node.send("await null; console.log('waiting'); await new Promise(() => {})");
    node.stdout.take("waiting\n");
    node.interrupt();
    assert_eq!(node.next_record().error.unwrap().name, "Interrupted");
    assert_eq!(node.ok("v"), text("40"));
}

#[test]
fn python_system_exit_ends_the_cell_not_the_kernel() {
    let mut python = Kernel::start(Language::Python);
    python.ok("import sys\nx = 1");
    let error = python.error("sys.exit(3)\nx = 2");
    assert_eq!((error.name.as_str(), error.value.as_str()), ("SystemExit", "3"));
    assert_eq!(python.error("exit()").name, "SystemExit");
    assert_eq!(python.ok("x"), text("1"));
}

#[test]
fn unicode_passes_through_source_output_and_results() {
    let mut python = Kernel::start(Language::Python);
    assert_eq!(python.ok("s = 'héllo, 世界 🎉'\nprint(s)\ns"), text("'héllo, 世界 🎉'"));
    python.stdout.take("héllo, 世界 🎉\n");
    assert_eq!(python.error("raise ValueError('ünïcode 🎉')").value, "ünïcode 🎉");

    let mut node = Kernel::start(Language::Node);
    assert_eq!(node.ok("const s = 'héllo, 世界 🎉'\nconsole.log(s)\ns"), text("'héllo, 世界 🎉'"));
    node.stdout.take("héllo, 世界 🎉\n");
    assert_eq!(node.error("throw new Error('ünïcode 🎉')").value, "ünïcode 🎉");
}

#[test]
fn a_cell_cannot_read_the_requests() {
    // fd 0 of a cell, and of its children, is /dev/null: the next cell stays the kernel's.
    let mut python = Kernel::start(Language::Python);
    assert_eq!(python.error("input()").name, "EOFError");
    assert_eq!(python.ok("import subprocess\nsubprocess.run(['cat'], capture_output=True).stdout"), text("b''"));

    let mut node = Kernel::start(Language::Node);
    let cat = "require('child_process').execSync('cat', { stdio: ['inherit', 'pipe', 'inherit'] }).length";
    assert_eq!(node.ok(cat), text("0"));
    assert_eq!(node.ok("require('fs').readFileSync(0).length"), text("0"));
}

#[test]
fn the_end_of_the_requests_ends_the_kernel() {
    both(|language| {
        let mut kernel = Kernel::start(language);
        kernel.ok("1");
        kernel.requests = None;
        assert_eq!(kernel.records.recv_timeout(patience()), Err(RecvTimeoutError::Disconnected), "{language:?}");
        assert!(kernel.child.wait().unwrap().success(), "{language:?}");
    });
}
