//! Slow and idle clients, from a raw TCP socket as a hostile client would send them: a body that
//! pauses or trickles gets a 408 in the one error shape and its connection closed; a slow but
//! steady upload is never cut; a request head that never ends gets a 408; connections past
//! TRACEBOX_MAX_CONNECTIONS wait to be accepted.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{TestServer, eventually, patience, sha256};

/// The body pause these servers allow, short so that the tests are quick.
const GAP: &str = "1";

/// What the server answered on a raw connection, and how long after the request began.
struct Answer {
    status: u16,
    head: String,
    body: Value,
    after: Duration,
}

/// Send `start` (a request head and the first bytes of its body) at once, then each of `then`
/// after `pause`, and read the answer to the connection's end. The trickle stops with the answer.
async fn send_slowly(server: &TestServer, start: Vec<u8>, then: Vec<Vec<u8>>, pause: Duration) -> Answer {
    let socket = TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    writer.write_all(&start).await.unwrap();
    let began = Instant::now();
    let trickle = tokio::spawn(async move {
        for piece in then {
            tokio::time::sleep(pause).await;
            if writer.write_all(&piece).await.is_err() {
                return;
            }
        }
        // Stay connected, as a client waiting for its answer does.
        std::future::pending::<()>().await;
        drop(writer);
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(patience(), reader.read_to_end(&mut answer)).await;
    let after = began.elapsed();
    trickle.abort();
    assert!(read.is_ok(), "no answer within TRACEBOX_TEST_PATIENCE_SECS");
    parse(&answer, after)
}

fn parse(answer: &[u8], after: Duration) -> Answer {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let status = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer { status, head: head.to_lowercase(), body, after }
}

/// A request head for `path` on `server` whose body will be `length` bytes of `content_type`.
fn head(server: &TestServer, path: &str, content_type: &str, length: usize) -> Vec<u8> {
    let host = server.host();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The start of an upload of one file named `name`: the multipart framing and `first` bytes.
fn upload_start(name: &str, first: &[u8]) -> Vec<u8> {
    let mut start = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    start.extend_from_slice(first);
    start
}

const MULTIPART: &str = "multipart/form-data; boundary=XyZ";

/// `count` pieces of one byte each.
fn bytes(count: usize) -> Vec<Vec<u8>> {
    vec![b" ".to_vec(); count]
}

fn assert_timed_out(answer: &Answer, setting: &str, what: &str) {
    assert_eq!(answer.status, 408, "{what}: {} {}", answer.head, answer.body);
    assert_eq!(answer.body["error"]["code"], "request_timeout", "{what}: {}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(setting), "{what}: {message:?} should name {setting}");
    assert!(answer.body.as_object().unwrap().contains_key("trace_id"), "{what}: {}", answer.body);
    assert!(answer.head.contains("connection: close"), "{what}: {}", answer.head);
}

/// Cut at the configured time: not before it, and well before the body would have ended.
fn assert_cut_at_the_limit(answer: &Answer, what: &str) {
    let after = answer.after.as_secs_f64();
    assert!((0.9..2.5).contains(&after), "{what}: answered after {after:.2} s, the limit being {GAP} s");
}

#[tokio::test]
async fn a_body_that_pauses_past_the_limit_gets_408_naming_it_on_every_route_that_reads_one() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_BODY_READ_TIMEOUT_SECS", GAP), ("TRACEBOX_BODY_MIN_BYTES_PER_SEC", "0")])
            .await;
    let pause = Duration::from_secs(3);
    let json = |path: &'static str| {
        let mut start = head(&server, path, "application/json", 100);
        start.push(b'{');
        send_slowly(&server, start, bytes(99), pause)
    };
    let mut upload = head(&server, "/upload", MULTIPART, 10_000);
    upload.extend(upload_start("stalled.bin", &[7; 1000]));
    let (execute, batch, claude, upload) = tokio::join!(
        json("/execute"),
        json("/batch"),
        json("/claude"),
        send_slowly(&server, upload, bytes(100), pause)
    );
    for (answer, what) in [(&execute, "/execute"), (&batch, "/batch"), (&claude, "/claude"), (&upload, "/upload")] {
        assert_timed_out(answer, "TRACEBOX_BODY_READ_TIMEOUT_SECS", what);
        assert!(answer.body["error"]["message"].as_str().unwrap().contains("1 s"), "{what}: {}", answer.body);
        assert_cut_at_the_limit(answer, what);
    }
    // The upload is a trace that says why it failed, and leaves no partial file.
    let trace = server.trace(upload.body["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "error", "{trace}");
    assert_eq!(trace["output"]["error"]["code"], "request_timeout", "{trace}");
    let uploads = server.data_dir.join("uploads");
    eventually("the partial upload is removed", || {
        std::fs::read_dir(&uploads).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".partial-"))
    })
    .await;
}

#[tokio::test]
async fn a_trickle_that_never_pauses_that_long_is_cut_by_its_pace() {
    // The finding: a byte every two seconds (here every 0.4 s, within the 1 s pause allowed).
    let server = TestServer::spawn_with(&[("TRACEBOX_BODY_READ_TIMEOUT_SECS", GAP)]).await;
    let pause = Duration::from_millis(400);
    let mut execute = head(&server, "/execute", "application/json", 1000);
    execute.push(b'{');
    let mut upload = head(&server, "/upload", MULTIPART, 10_000);
    upload.extend(upload_start("trickled.bin", b"x"));
    let (execute, upload) =
        tokio::join!(send_slowly(&server, execute, bytes(999), pause), send_slowly(&server, upload, bytes(100), pause));
    for (answer, what) in [(&execute, "/execute"), (&upload, "/upload")] {
        assert_timed_out(answer, "TRACEBOX_BODY_MIN_BYTES_PER_SEC", what);
        assert_cut_at_the_limit(answer, what);
    }
}

#[tokio::test]
async fn a_slow_steady_upload_is_never_cut_and_a_long_run_is_not_a_slow_body() {
    let server = TestServer::spawn_with(&[("TRACEBOX_BODY_READ_TIMEOUT_SECS", GAP)]).await;
    // 48 KiB in 8 KiB pieces 0.6 s apart: each pause under the limit, the pace far above the
    // floor, the whole three times longer than the limit.
    let file: Vec<u8> = (0..48 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut body = upload_start("steady.bin", &file);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut start = head(&server, "/upload", MULTIPART, body.len());
    let mut pieces: Vec<Vec<u8>> = body.chunks(8 * 1024).map(<[u8]>::to_vec).collect();
    start.extend(pieces.remove(0));
    let answer = send_slowly(&server, start, pieces, Duration::from_millis(600)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.after > Duration::from_secs(3), "the upload took {:?}", answer.after);
    assert_eq!(answer.body["files"][0]["sha256"], sha256(&file));

    // The limit is on reading the body, not on the answer: a run longer than it is fine.
    let reply = server.run("python", "import time\ntime.sleep(1.5)\nprint('done')").await;
    assert_eq!(reply["stdout"], "done\n");
}

#[tokio::test]
async fn a_request_head_that_never_ends_gets_408() {
    let server = TestServer::spawn().await;
    let answer = send_slowly(&server, b"POST /execute HTTP/1.1\r\nHost: x\r\n".to_vec(), bytes(100), patience()).await;
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert!(answer.after < Duration::from_secs(8), "the head timeout is 5 s; answered after {:?}", answer.after);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_CONNECTIONS", "4")]).await;
    // The cap is shared out over one worker per CPU, rounded up.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cap = 4usize.div_ceil(workers) * workers;
    let address = server.url.trim_start_matches("http://").to_owned();
    let request = format!("GET /static/style.css HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes();
    let mut held = Vec::new();
    let mut waiting = None;
    for _ in 0..=cap {
        let mut socket = TcpStream::connect(&address).await.unwrap();
        socket.write_all(&request).await.unwrap();
        let mut status = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(2), socket.read_exact(&mut status)).await {
            Ok(Ok(_)) => held.push(socket),
            _ => {
                waiting = Some(socket);
                break;
            }
        }
    }
    let mut waiting =
        waiting.unwrap_or_else(|| panic!("{} connections were served at once, the cap being {cap}", cap + 1));
    // The test server's own client may keep one connection of its own open.
    assert!(held.len() + 1 >= cap, "only {} connections were served before the cap of {cap}", held.len());
    drop(held);
    let mut status = [0u8; 12];
    tokio::time::timeout(patience(), waiting.read_exact(&mut status)).await.unwrap().unwrap();
    assert_eq!(&status, b"HTTP/1.1 200", "the waiting connection is served once others close");
}
