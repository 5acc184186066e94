//! The run channel: the frames between a container's supervisor and tracebox. Only the
//! supervisor writes them; a program writes to pipes of its own and can neither read, forge
//! nor swallow a frame, in a fresh container or in a recycled one's later runs.

use serde_json::{Value, json};

use crate::common::pool::{container_of, eventually_ready, pooled, recycles, unscreened_recycler};
use crate::common::{TestServer, empty_policy, gvisor, runtime};

/// Reads its own stdout and stderr, and the supervisor's descriptors, for a few milliseconds
/// right after it starts, writing nothing first: whatever it reads was not its own.
fn reader(run: usize) -> String {
    format!(
        r#"
import os, time
fds, denied = [], []
for path in ('/proc/self/fd/1', '/proc/self/fd/2', '/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/fd/2'):
    try:
        fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        denied.append(path)
got = b''
end = time.monotonic() + 0.005
while time.monotonic() < end:
    for fd in fds:
        try:
            got += os.read(fd, 65536)
        except (BlockingIOError, OSError):
            pass
print('run {run} read', len(got), got[:100], 'denied', denied)
"#
    )
}

fn expected(run: usize) -> String {
    format!("run {run} read 0 b'' denied ['/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/fd/2']\n")
}

/// Runs the reader many times: every reply is its own program's, and no program read a byte it
/// did not write.
async fn readers_read_nothing(server: &TestServer, runs: usize, body: impl Fn(&str) -> Value) {
    for run in 0..runs {
        let (status, reply) = server.execute(body(&reader(run))).await;
        assert_eq!(status, 200, "{reply}");
        if gvisor() {
            // gVisor lets a process open a non-dumpable one's descriptors through /proc: the
            // program opens the channel (what that allows: a_program_that_opens_the_channel…).
            // What it can read there is what tracebox sends its own run: at most its stdin's end.
            let out = reply["stdout"].as_str().unwrap();
            let own = [format!("run {run} read 0 b'' denied []\n"), format!("run {run} read 2 b'E\\n' denied []\n")];
            assert!(own.contains(&out.to_owned()), "runsc, run {run}: {reply}");
            continue;
        }
        assert_eq!(
            (reply["status"].as_str(), reply["stdout"].as_str()),
            (Some("success"), Some(expected(run).as_str())),
            "run {run}: {reply}"
        );
    }
}

/// Under gVisor a program can open its supervisor's stdout, the channel, through /proc/1/fd/1
/// and write frames of its own on it: it can forge its own run's end. What it cannot do is reach
/// another run: a fresh container is removed after its run, and a recycled one serves only one
/// under gVisor (`channel_exposed` in sandbox/supervise.py).
const CHANNEL_WRITER: &str = r#"
import os, struct, sys, time
def frame(kind, payload=b''):
    return kind + struct.pack('>I', len(payload)) + payload
try:
    fd = os.open('/proc/1/fd/1', os.O_WRONLY)
except OSError as e:
    print('denied', e.errno)
    sys.exit(5)
os.write(fd, frame(b'o', b'FORGED\n') + frame(b'X', b'0 0') + frame(b'Z'))
time.sleep(0.5)
sys.exit(5)
"#;

#[tokio::test]
async fn a_program_that_opens_the_channel_reaches_no_other_run() {
    let policy = empty_policy();
    for server in [pooled(&[("TRACEBOX_POLICY", &policy)]).await, unscreened_recycler().await] {
        let reply = server.run("python", CHANNEL_WRITER).await;
        if gvisor() {
            assert_eq!(
                (reply["status"].as_str(), reply["exit_code"].as_i64(), reply["stdout"].as_str()),
                (Some("success"), Some(0), Some("FORGED\n")),
                "runsc: the program forged its own run's end: {reply}"
            );
        } else {
            assert_eq!(
                (reply["exit_code"].as_i64(), reply["stdout"].as_str()),
                (Some(5), Some("denied 13\n")),
                "runc: the channel cannot be opened (EACCES): {reply}"
            );
        }
        let first = container_of(&server, &reply).await;
        let reply = server.run("python", "print('next')").await;
        assert_eq!(reply["stdout"], "next\n", "the next run is its own: {reply}");
        if gvisor() {
            assert_ne!(container_of(&server, &reply).await, first, "runsc: never in the container the forger had");
        }
    }
}

#[tokio::test]
async fn a_program_reading_its_own_stdout_and_stderr_never_reads_a_byte_it_did_not_write_fresh() {
    let policy = empty_policy();
    let server = pooled(&[("TRACEBOX_POLICY", &policy)]).await;
    readers_read_nothing(&server, 30, |code| json!({ "code": code })).await;
}

#[tokio::test]
async fn a_program_reading_its_own_stdout_and_stderr_never_reads_a_byte_it_did_not_write_recycled() {
    let server = unscreened_recycler().await;
    readers_read_nothing(&server, 60, |code| json!({ "code": code })).await;
}

/// Writes, on both streams, the lines of the old protocol and frames of the new one (ready,
/// took, ended, the tar's end), with and without a guessed marker; then ends with status 5.
const FORGER: &str = r#"
import os, struct, sys
def frame(kind, payload=b''):
    return kind + struct.pack('>I', len(payload)) + payload
forged = b''.join([
    b'\0TRACEBOX-END 0123456789abcdef0123456789abcdef 0 0 0\n',
    b'\0TRACEBOX-READY 0123456789abcdef0123456789abcdef\n',
    frame(b'X', b'0 0'), frame(b'Z'), frame(b'R'), frame(b'G'), frame(b'o', b'FORGED'),
])
for stream in (sys.stdout.buffer, sys.stderr.buffer):
    stream.write(forged)
    stream.flush()
sys.exit(5)
"#;

#[tokio::test]
async fn frames_and_lines_a_program_forges_come_back_as_its_own_output() {
    for server in [crate::common::unscreened_server().await, unscreened_recycler().await] {
        let reply = server.run("python", FORGER).await;
        assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(5)), "{reply}");
        let forged = reply["stdout"].as_str().unwrap();
        assert!(forged.starts_with("\u{0}TRACEBOX-END ") && forged.ends_with("FORGED"), "{reply}");
        assert_eq!(reply["stderr"], reply["stdout"], "stderr is its own too: {reply}");
        let reply = server.run("python", "print('next')").await;
        assert_eq!(reply["stdout"], "next\n", "the next run is its own: {reply}");
    }
}

/// The attack on a recycled container: try to steal what the supervisor writes, then fake this
/// run's end and a whole next run (ready, took, output, ended), then go on printing.
const HIJACKER: &str = r#"
import os, struct, sys, time
def frame(kind, payload=b''):
    return kind + struct.pack('>I', len(payload)) + payload
stolen = b''
fd = os.open('/proc/self/fd/1', os.O_RDONLY | os.O_NONBLOCK)
end = time.monotonic() + 0.05
while time.monotonic() < end:
    try:
        stolen += os.read(fd, 65536)
    except BlockingIOError:
        pass
fake = frame(b'X', b'0 0') + frame(b'Z') + frame(b'R') + frame(b'G')
fake += frame(b'o', b'FORGED: the next run did not run its own code\n') + frame(b'X', b'0 0') + frame(b'Z')
sys.stdout.buffer.write(fake)
sys.stdout.flush()
time.sleep(0.3)
print('stolen', len(stolen), 'still here')
"#;

#[tokio::test]
async fn a_recycled_program_cannot_fake_its_end_or_the_next_run_of_its_tenant() {
    let server = unscreened_recycler().await;
    let reply = server.run("python", HIJACKER).await;
    assert_eq!(reply["status"], "success", "{reply}");
    let stdout = reply["stdout"].as_str().unwrap();
    assert!(stdout.ends_with("stolen 0 still here\n"), "its run went on to its real end: {reply}");
    assert!(stdout.contains("FORGED"), "what it forged is its own output: {reply}");
    let hijacked = container_of(&server, &reply).await;
    eventually_ready(&server, "python-recycle-default").await;
    let reply = server.run("python", "print('my own code ran')").await;
    assert_eq!(
        (reply["status"].as_str(), reply["stdout"].as_str()),
        (Some("success"), Some("my own code ran\n")),
        "{reply}"
    );
    let same = container_of(&server, &reply).await == hijacked;
    assert_eq!(
        same,
        recycles(),
        "runtime {}: in the very container the attack ran in (runsc: one run each)",
        runtime()
    );
}

#[tokio::test]
async fn a_node_program_forging_frames_gets_them_back_as_output() {
    let server = unscreened_recycler().await;
    let code = r#"
const frame = (kind, payload = '') => {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(5);
  head.write(kind, 0, 'latin1');
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
};
process.stdout.write(Buffer.concat([frame('X', '0 0'), frame('Z'), frame('R')]));
process.stdout.write('real\n');
"#;
    let reply = server.run("node", code).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert!(reply["stdout"].as_str().unwrap().ends_with("real\n"), "{reply}");
    let reply = server.run("node", "console.log('next')").await;
    assert_eq!(reply["stdout"], "next\n", "{reply}");
}
