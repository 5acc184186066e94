//! Requests refused before they ran (blocked by the policy, busy) keep only the start of their
//! code and stdin, so a loop of them cannot fill the store; runs that ran keep all of theirs.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{TestServer, containers_of, eventually};

/// What the trace of a refused request keeps of its code, and of its stdin (a constant of the
/// runner, REFUSED_KEPT_BYTES).
const KEPT: usize = 4096;

/// Bytes of the trace store on disk: the database and its write-ahead log.
fn store_bytes(data_dir: &Path) -> u64 {
    ["traces.db", "traces.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(data_dir.join("traces").join(name)).ok())
        .map(|meta| meta.len())
        .sum()
}

/// Blocked code of about `size` bytes: the refused import first, then a long comment.
fn blocked_code(size: usize) -> String {
    let head = "import subprocess\n";
    format!("{head}#{}", "x".repeat(size - head.len() - 1))
}

/// The trace's input kept `KEPT` bytes of code and stdin and counted the rest as left out.
fn assert_cut(trace: &Value, code: &str, stdin: &str) {
    let input = &trace["input"];
    let (kept_code, kept_stdin) = (input["code"].as_str().unwrap(), input["stdin"].as_str().unwrap());
    assert_eq!(kept_code, &code[..KEPT], "the start of the code, cut at {KEPT} bytes");
    assert_eq!(kept_stdin, &stdin[..KEPT.min(stdin.len())]);
    let left_out = (code.len() + stdin.len() - kept_code.len() - kept_stdin.len()) as u64;
    assert_eq!(input["omitted_bytes"].as_u64(), Some(left_out), "{input}");
}

/// How much 20 blocked requests of `code` and `stdin` grow the store of a fresh server.
async fn growth_of_twenty_blocked(code: &str, stdin: &str) -> (u64, Value) {
    let server = TestServer::spawn().await;
    let before = store_bytes(&server.data_dir);
    let mut reply = Value::Null;
    for _ in 0..20 {
        let (status, answer) = server.execute(json!({"code": code, "stdin": stdin})).await;
        assert_eq!(status, 403, "{answer}");
        reply = answer;
    }
    let grown = store_bytes(&server.data_dir) - before;
    (grown, server.trace(reply["trace_id"].as_str().unwrap()).await)
}

#[tokio::test]
async fn twenty_blocked_requests_of_1_25_mib_grow_the_store_by_a_fraction_of_them() {
    // The largest request the default limits take: 256 KiB of code, 1 MiB of stdin. Whole, the
    // 20 of them grew the store (with its WAL, whose frames SQLite reuses after a checkpoint,
    // so the figure moves by a few hundred KB from run to run) by 45.5 MB; cut, by about 2.3 MB.
    let (code, stdin) = (blocked_code(256 * 1024), "y".repeat(1024 * 1024));
    let (grown, trace) = growth_of_twenty_blocked(&code, &stdin).await;
    eprintln!("20 blocked requests of 1.25 MiB grew the store by {grown} bytes");
    assert!(grown < 8 * 1024 * 1024, "{grown} bytes for 25 MiB of refused requests");
    assert_eq!(trace["status"], "blocked");
    assert_cut(&trace, &code, &stdin);
}

#[tokio::test]
async fn a_blocked_request_with_1_mib_of_code_keeps_its_start_and_the_page_says_it_was_cut() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_CODE_BYTES", "2097152")]).await;
    let code = blocked_code(1024 * 1024);
    let (status, reply) = server.execute(json!({"code": code, "stdin": "short"})).await;
    assert_eq!(status, 403, "{reply}");
    let trace_id = reply["trace_id"].as_str().unwrap();
    assert_cut(&server.trace(trace_id).await, &code, "short");
    let page = server.client.get(server.url(&format!("/trace/{trace_id}"))).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("were left out"), "the trace page says the code was cut");
}

#[tokio::test]
async fn a_busy_refusal_keeps_the_start_and_a_run_that_ran_keeps_all_of_its_code() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_MAX_CONCURRENT_RUNS", "1"), ("TRACEBOX_QUEUE_TIMEOUT_SECS", "0.5")]).await;
    let instance = server.instance_id().await;
    let ran_code = format!("import time\ntime.sleep(3)\n#{}", "z".repeat(10_000));
    let long = server.execute(json!({"code": ran_code}));
    let (code, stdin) = (format!("print(1)\n#{}", "q".repeat(100_000)), "s".repeat(5_000));
    let refused = async {
        eventually("the first run holds the only slot", || !containers_of(&instance).is_empty()).await;
        server.execute(json!({"code": code, "stdin": stdin})).await
    };
    let ((status, ran), (refused_status, refused)) = tokio::join!(long, refused);
    assert_eq!((status, refused_status), (200, 503), "{ran} {refused}");
    assert_eq!(refused["error"]["code"], "busy");
    assert_cut(&server.trace(refused["trace_id"].as_str().unwrap()).await, &code, &stdin);

    let ran = server.trace(ran["trace_id"].as_str().unwrap()).await;
    assert_eq!(ran["input"]["code"], ran_code, "a run that ran keeps all of its code");
    assert!(ran["input"].get("omitted_bytes").is_none(), "{}", ran["input"]);
}
