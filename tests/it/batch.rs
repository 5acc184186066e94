//! `tracebox batch` and `POST /batch`: prompt sets of code and prompt items run as one batch,
//! judged against their expectations, with the results file, the summary and the exit codes
//! API.md promises.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{FakeAnthropic, TestServer, require_docker};

/// Five items: code in both languages, a prompt whose code runs, one expectation that fails,
/// and a block that the policy refuses as expected.
const MIXED: &str = r#"{"id": "hello", "code": "print('hi')", "expect": {"stdout_regex": "^hi$"}}
{"id": "node", "code": "console.log(6 * 7)", "language": "node", "expect": {"stdout_contains": "42"}}
{"id": "prime", "prompt": "Reply with:\n```python\nprint([n for n in range(2, 30) if all(n % d for d in range(2, n))][9])\n```", "expect": {"exit_code": 0, "stdout_contains": "29"}}
{"id": "wrong", "code": "print(1)", "expect": {"stdout_contains": "2"}}
{"id": "refused", "code": "import subprocess", "expect": {"status": "blocked"}}
"#;

fn batch(args: &[&str], data_dir: &Path, fake: &FakeAnthropic) -> Output {
    require_docker();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tracebox"));
    command.arg("batch").args(args).env("TRACEBOX_DATA_DIR", data_dir);
    for (key, value) in fake.settings() {
        command.env(key, value);
    }
    command.stdin(Stdio::null()).output().expect("tracebox batch runs")
}

fn results(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("a results file");
    let mut lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    lines.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    lines
}

fn passed(results: &[Value]) -> Vec<(&str, bool)> {
    results.iter().map(|r| (r["id"].as_str().unwrap(), r["passed"].as_bool().unwrap())).collect()
}

fn batch_id(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.starts_with("batch trace: /trace/")).expect("the batch trace is named");
    line.trim_start_matches("batch trace: /trace/").to_owned()
}

#[tokio::test]
async fn a_mixed_set_with_one_failing_expectation_exits_1_with_a_correct_results_file() {
    let fake = FakeAnthropic::start(None);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("mixed.jsonl");
    std::fs::write(&set, MIXED).unwrap();
    let out = dir.path().join("results.jsonl");
    let output =
        batch(&[set.to_str().unwrap(), "--out", out.to_str().unwrap(), "--concurrency", "2"], dir.path(), &fake);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines = results(&out);
    assert_eq!(
        passed(&lines),
        [("hello", true), ("node", true), ("prime", true), ("refused", true), ("wrong", false)],
        "{stderr}"
    );
    let wrong = lines.iter().find(|r| r["id"] == "wrong").unwrap();
    assert_eq!(wrong["outcome"], "failed");
    assert_eq!(wrong["failures"], json!(["stdout does not contain \"2\""]));
    assert!(lines.iter().all(|r| r["trace_id"].is_string() && r["duration_ms"].as_f64().is_some()));
    let prime = lines.iter().find(|r| r["id"] == "prime").unwrap();
    assert_eq!((prime["kind"].as_str(), prime["stdout"].as_str()), (Some("prompt"), Some("29\n")));
    assert!(prime["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The summary table, and the failing item named.
    assert!(stderr.contains("items  passed  failed  blocked  errors"), "{stderr}");
    assert!(stderr.contains("failed: wrong (line 4): stdout does not contain"), "{stderr}");

    // The batch is one trace with its items as children, also found by `?batch=`.
    let id = batch_id(&stderr);
    let server = TestServer::spawn_on(dir.path()).await;
    let trace = server.trace(&id).await;
    assert_eq!((trace["kind"].as_str(), trace["status"].as_str()), (Some("batch"), Some("error")));
    assert_eq!(trace["output"]["summary"]["passed"], 4);
    assert_eq!(trace["children"].as_array().unwrap().len(), 5);
    let (_, items) = server.get_json(&format!("/traces?batch={id}")).await;
    let kinds: Vec<&str> = items["traces"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!((kinds.len(), kinds.iter().filter(|k| **k == "claude").count()), (5, 1), "{kinds:?}");
    let claude = items["traces"].as_array().unwrap().iter().find(|t| t["kind"] == "claude").unwrap();
    let claude = server.trace(claude["id"].as_str().unwrap()).await;
    assert_eq!(claude["children"][0]["status"], "success", "the prompt's code ran under its call");
}

#[tokio::test]
async fn handler_items_are_judged_on_the_result_their_handler_returns() {
    let fake = FakeAnthropic::start(None);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("handlers.jsonl");
    let items = [
        json!({"id": "sum", "code": "def handler(event, context):\n    return sum(event)", "handler": "handler", "event": [1, 2, 3], "expect": {"result": 6}}),
        json!({"id": "off", "language": "node", "code": "exports.handler = async (e) => e.length", "handler": "handler", "event": [1], "expect": {"result": 2}}),
    ];
    std::fs::write(&set, items.iter().map(|item| format!("{item}\n")).collect::<String>()).unwrap();
    let out = dir.path().join("results.jsonl");
    let output = batch(&[set.to_str().unwrap(), "--out", out.to_str().unwrap()], dir.path(), &fake);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = results(&out);
    assert_eq!(passed(&lines), [("off", false), ("sum", true)]);
    assert_eq!(lines[0]["failures"], json!(["result is 1, expected 2"]), "{}", lines[0]);
}

#[tokio::test]
async fn an_invalid_line_exits_2_naming_it_and_nothing_runs() {
    let fake = FakeAnthropic::start(None);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("broken.jsonl");
    std::fs::write(&set, "{\"id\": \"ok\", \"code\": \"print(1)\"}\n{\"id\": \"bad\", \"code\": \"x\", \"expect\": {\"stdout_regex\": \"[\"}}\n").unwrap();
    let output = batch(&[set.to_str().unwrap()], dir.path(), &fake);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: `expect.stdout_regex`"), "{stderr}");
    assert!(!dir.path().join("traces").exists(), "nothing ran, nothing was recorded");
    let missing = batch(&[dir.path().join("nope.jsonl").to_str().unwrap()], dir.path(), &fake);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read it"), "{missing:?}");
    for concurrency in ["0", "65"] {
        let refused = batch(&[set.to_str().unwrap(), "--concurrency", concurrency], dir.path(), &fake);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--concurrency"), "{stderr}");
    }
}

/// The most items of a results file that ran at the same moment: each item printed when it
/// started and ended (`time.time()`).
fn most_at_once(results: &[Value]) -> usize {
    let spans: Vec<(f64, f64)> = results
        .iter()
        .map(|r| {
            let times: Vec<f64> =
                r["stdout"].as_str().unwrap().split_whitespace().map(|t| t.parse().unwrap()).collect();
            (times[0], times[1])
        })
        .collect();
    spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count()).max().unwrap_or(0)
}

#[tokio::test]
async fn items_run_at_most_concurrency_at_a_time_and_that_many_do() {
    let fake = FakeAnthropic::start(None);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("sleepers.jsonl");
    // Two seconds each: items started together overlap even when their containers start slowly.
    let code = "import time\\nstart = time.time()\\ntime.sleep(2)\\nprint(start, time.time())";
    let items: Vec<String> = (0..6).map(|n| format!("{{\"id\": \"s{n}\", \"code\": \"{code}\"}}")).collect();
    std::fs::write(&set, items.join("\n")).unwrap();
    for (concurrency, expected) in [("1", 1), ("4", 4)] {
        let out = dir.path().join(format!("c{concurrency}.jsonl"));
        let output = batch(
            &[set.to_str().unwrap(), "--concurrency", concurrency, "--out", out.to_str().unwrap()],
            dir.path(),
            &fake,
        );
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let results = results(&out);
        assert_eq!(results.len(), 6, "every item ran at concurrency {concurrency}");
        assert_eq!(most_at_once(&results), expected, "at concurrency {concurrency}: {results:?}");
    }
}

#[tokio::test]
async fn a_running_server_takes_the_set_over_http_with_the_same_results() {
    let fake = FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("mixed.jsonl");
    std::fs::write(&set, MIXED).unwrap();
    let out = dir.path().join("results.jsonl");
    let output =
        batch(&[set.to_str().unwrap(), "--server", &server.url, "--out", out.to_str().unwrap()], dir.path(), &fake);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(passed(&results(&out)).iter().filter(|(_, ok)| *ok).count(), 4, "{stderr}");
    assert!(!dir.path().join("traces").exists(), "the server ran it, not this process");
    let trace = server.trace(&batch_id(&stderr)).await;
    assert_eq!((trace["kind"].as_str(), trace["source"].as_str()), (Some("batch"), Some("batch")));
    assert_eq!(trace["children"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn post_batch_refuses_an_invalid_set_naming_the_item() {
    let server = TestServer::spawn().await;
    let body = json!({"items": [{"code": "print(1)"}, {"prompt": "x", "code": "y"}]});
    let response = server.client.post(server.url("/batch")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "invalid_prompt_set");
    assert!(reply["error"]["message"].as_str().unwrap().starts_with("item 2: "), "{reply}");
    let body = json!({"items": [{"code": "print(1)"}], "concurrency": 65});
    let response = server.client.post(server.url("/batch")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    // Prompt items on a server without a key are refused before anything runs.
    let body = json!({"promptset": "{\"prompt\": \"hi\"}\n"});
    let response = server.client.post(server.url("/batch")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "claude_not_configured");
    // At the most allowed, a set runs (and a line of the set is named by its line).
    let body = json!({"promptset": "\n{\"id\": \"x\", \"code\": \"print(1)\"}\n", "concurrency": 64});
    let lines = server.client.post(server.url("/batch")).json(&body).send().await.unwrap().text().await.unwrap();
    let item: Value = serde_json::from_str(lines.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (item["item"]["at"].as_str(), item["item"]["passed"].as_bool()),
        (Some("line 2"), Some(true)),
        "{lines}"
    );
}

#[tokio::test]
async fn the_example_prompt_sets_run_against_the_fake_as_the_readme_says() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/promptsets");
    let fake = FakeAnthropic::start(Some(&examples.join("fake-replies.json")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
    std::fs::copy(examples.join("sales.csv"), dir.path().join("uploads/sales.csv")).unwrap();
    let run = |set: &str| {
        let out = dir.path().join(format!("{set}.results.jsonl"));
        let output = batch(
            &[examples.join(set).to_str().unwrap(), "--concurrency", "3", "--out", out.to_str().unwrap()],
            dir.path(),
            &fake,
        );
        (output.status.code(), results(&out), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, graded, stderr) = run("grading.jsonl");
    assert_eq!(code, Some(1), "one student's FizzBuzz is wrong and one cheats: {stderr}");
    let outcomes: Vec<(&str, &str)> =
        graded.iter().map(|r| (r["id"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    assert_eq!(
        outcomes,
        [
            ("fizzbuzz-ada", "passed"),
            ("fizzbuzz-brian", "passed"),
            ("fizzbuzz-grace", "passed"),
            ("fizzbuzz-linus", "failed"),
            ("fizzbuzz-mallory", "blocked")
        ]
    );
    for set in ["analysis.jsonl", "node.jsonl"] {
        let (code, items, stderr) = run(set);
        assert_eq!(code, Some(0), "{set}: {stderr}");
        assert!(items.iter().all(|r| r["passed"] == true), "{set}: {items:?}");
    }
}
