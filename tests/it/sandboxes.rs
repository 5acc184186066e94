//! Stateful sandboxes against the real engine: creation and its errors, the view and the list,
//! limits, idle timeouts, pause and resume, snapshots and reset and their quota, the trace tree,
//! and that nothing is left behind. Restarts of tracebox are in sandbox_restarts.rs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::eventually;
use crate::common::sandboxes::{SandboxServer, code, container_of_sandbox, is_running, message, sandbox_containers};

/// Upload `bytes` as `name` to the server's uploads.
async fn upload(server: &SandboxServer, name: &str, bytes: &[u8]) {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = server.client.post(server.url("/upload")).multipart(form).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
}

fn ids(list: &Value) -> Vec<&str> {
    list["sandboxes"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|s| s["sandbox_id"].as_str().unwrap())
        .collect()
}

fn at_us(stamp: &Value) -> i128 {
    let text = stamp.as_str().unwrap_or_else(|| panic!("a timestamp: {stamp}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .unix_timestamp_nanos()
        / 1000
}

// ------------------------------------------------------------------ create, show, list, delete

#[tokio::test]
async fn a_created_sandbox_is_shown_listed_and_filtered_and_deleting_it_leaves_only_its_trace() {
    let server = SandboxServer::spawn().await;
    let created = server.create(json!({"metadata": {"team": "red", "run": "1"}, "timeout": 60})).await;
    let id = created["sandbox_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sbx_"), "{created}");
    assert_eq!(created["status"], "running");
    for field in ["created_at", "expires_at", "trace_id"] {
        assert!(created[field].is_string(), "{field} in {created}");
    }
    assert_eq!(at_us(&created["expires_at"]) - at_us(&created["last_activity_at"]), 60_000_000, "{created}");
    let other = server.sandbox(json!({"metadata": {"team": "blue"}, "language": "node"})).await;

    let (status, view) = server.view(&id).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((&view["status"], &view["steps"], &view["language"]), (&json!("running"), &json!(0), &json!("python")));
    assert!(view["disk_used_bytes"].is_u64(), "a running sandbox tells its disk use: {view}");
    let (_, list) = server.get_json("/sandboxes").await;
    assert_eq!(ids(&list), [other.as_str(), id.as_str()], "newest first");
    let (_, list) = server.get_json("/sandboxes?metadata.team=red").await;
    assert_eq!(ids(&list), [id.as_str()]);
    let (_, list) = server.get_json("/sandboxes?metadata.team=red&metadata.run=2").await;
    assert_eq!(ids(&list), Vec::<&str>::new(), "every pair must match");
    let (_, list) = server.get_json("/sandboxes?status=paused").await;
    assert_eq!(ids(&list), Vec::<&str>::new());
    let (status, reply) = server.get_json("/sandboxes?status=sleeping").await;
    assert_eq!((status, code(&reply)), (400, "invalid_query"), "{reply}");
    let (status, reply) = server.get_json("/sandboxes?colour=red").await;
    assert_eq!((status, code(&reply)), (400, "invalid_query"), "{reply}");

    let container = container_of_sandbox(&id).expect("its container");
    assert!(is_running(&container));
    server.delete(&id).await;
    assert!(container_of_sandbox(&id).is_none(), "its container is gone when DELETE answers");
    let (status, reply) = server.view(&id).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{reply}");
    let (status, reply) = server.send(Method::DELETE, &format!("/sandboxes/{id}"), None).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "deleting twice: {reply}");
    let trace = server.trace(created["trace_id"].as_str().unwrap()).await;
    assert_eq!(
        (&trace["kind"], &trace["status"]),
        (&json!("sandbox"), &json!("success")),
        "its trace stays, ended: {trace}"
    );
    server.delete(&other).await;
    assert!(server.snapshot_files().is_empty());
}

#[tokio::test]
async fn bad_create_input_is_a_400_naming_the_field_and_creates_nothing() {
    let server = SandboxServer::spawn().await;
    let cases = [
        (json!({"language": "cobol"}), "invalid_sandbox", "`language`"),
        (json!({"timeout": -1}), "invalid_sandbox", "`timeout`"),
        (json!({"memory_mb": 0}), "invalid_sandbox", "`memory_mb`"),
        (json!({"memory_mb": 1_000_000}), "invalid_sandbox", "`memory_mb`"),
        (json!({"disk_mb": 0}), "invalid_sandbox", "`disk_mb`"),
        (json!({"disk_mb": 1_000_000}), "invalid_sandbox", "`disk_mb`"),
        (json!({"cpus": 0}), "invalid_sandbox", "`cpus`"),
        (json!({"cpus": "many"}), "invalid_json", "`cpus`"),
        (json!({"env": {"A=B": "1"}}), "invalid_sandbox", "`env`"),
        (json!({"on_timeout": "explode"}), "invalid_sandbox", "`on_timeout`"),
        (json!({"metadata": {"": "x"}}), "invalid_sandbox", "`metadata`"),
        (json!({"colour": "red"}), "invalid_json", "`colour`"),
        (json!({"files": ["../etc/passwd"]}), "invalid_file_name", "../etc/passwd"),
        (json!({"files": ["never-uploaded.csv"]}), "no_such_file", "never-uploaded.csv"),
    ];
    for (body, wanted, field) in cases {
        let (status, reply) = server.post("/sandboxes", body.clone()).await;
        assert!(matches!(status, 400 | 404), "{body}: {reply}");
        assert_eq!(code(&reply), wanted, "{body}: {reply}");
        assert!(message(&reply).contains(field), "{body}: the message names {field}: {reply}");
    }
    let (_, list) = server.get_json("/sandboxes").await;
    assert_eq!(ids(&list), Vec::<&str>::new());
    assert!(sandbox_containers(server.instance()).is_empty(), "no container was started");
}

#[tokio::test]
async fn a_create_whose_files_do_not_fit_in_disk_mb_fails_clearly_and_leaves_nothing() {
    let server = SandboxServer::spawn().await;
    upload(&server, "big.bin", &vec![7u8; 3 << 20]).await;
    let (status, reply) = server.post("/sandboxes", json!({"files": ["big.bin"], "disk_mb": 2})).await;
    assert_eq!((status, code(&reply)), (413, "file_too_large"), "{reply}");
    assert!(message(&reply).contains("disk_mb"), "{reply}");
    let (_, list) = server.get_json("/sandboxes").await;
    assert_eq!(ids(&list), Vec::<&str>::new(), "no sandbox is left");
    server.no_sandbox_containers().await;
    assert!(server.snapshot_files().is_empty(), "no snapshot is left: {:?}", server.snapshot_files());
    let (_, traces) = server.get_json("/traces?format=json&kind=sandbox").await;
    assert_eq!(traces["traces"][0]["status"], "internal_error", "its trace says it failed: {traces}");
}

#[tokio::test]
async fn the_sandbox_limit_holds_at_its_edge_paused_ones_count_and_a_delete_frees_a_place() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MAX", "2")]).await;
    let first = server.sandbox(json!({})).await;
    let second = server.sandbox(json!({})).await;
    let (status, reply) = server.post("/sandboxes", json!({})).await;
    assert_eq!((status, code(&reply)), (409, "too_many_sandboxes"), "{reply}");
    assert!(message(&reply).contains("TRACEBOX_SANDBOX_MAX"), "{reply}");
    let (status, _) = server.post(&format!("/sandboxes/{first}/pause"), json!({})).await;
    assert_eq!(status, 200);
    let (status, reply) = server.post("/sandboxes", json!({})).await;
    assert_eq!((status, code(&reply)), (409, "too_many_sandboxes"), "a paused sandbox counts: {reply}");
    server.delete(&second).await;
    let third = server.sandbox(json!({})).await;
    assert_eq!(sandbox_containers(server.instance()).len(), 1, "a paused sandbox has no container");
    for id in [first, third] {
        server.delete(&id).await;
    }
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_sandbox_limit() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MAX", "2")]).await;
    let creates = (0..5).map(|_| server.post("/sandboxes", json!({})));
    let replies = futures_util::future::join_all(creates).await;
    let created: Vec<&str> =
        replies.iter().filter(|(status, _)| *status == 201).map(|(_, r)| r["sandbox_id"].as_str().unwrap()).collect();
    let refused = replies.iter().filter(|(status, r)| *status == 409 && code(r) == "too_many_sandboxes").count();
    let (_, list) = server.get_json("/sandboxes").await;
    for id in ids(&list) {
        server.delete(id).await;
    }
    assert_eq!((created.len(), refused), (2, 3), "{replies:?}");
}

#[tokio::test]
async fn cleanup_removes_every_sandbox_running_or_paused() {
    let server = SandboxServer::spawn().await;
    let running = server.sandbox(json!({})).await;
    let paused = server.sandbox(json!({})).await;
    server.sh(&paused, "echo x > f").await;
    server.post(&format!("/sandboxes/{paused}/pause"), json!({})).await;
    assert!(!server.snapshot_files().is_empty());
    let (status, reply) = server.post("/sandboxes/cleanup", json!({})).await;
    assert_eq!((status, &reply["removed"]), (200, &json!(2)), "{reply}");
    for id in [running, paused] {
        assert_eq!(server.view(&id).await.0, 404);
    }
    assert!(sandbox_containers(server.instance()).is_empty(), "done when it answers");
    assert!(server.snapshot_files().is_empty(), "{:?}", server.snapshot_files());
}

// ------------------------------------------------------------------ idle timeouts

#[tokio::test]
async fn an_idle_sandbox_is_paused_at_its_timeout_and_resumes_with_its_files() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MIN_TIMEOUT_SECS", "1")]).await;
    let id = server.sandbox(json!({"timeout": 2})).await;
    server.sh(&id, "echo kept > file.txt").await;
    server.code(&id, "variable = 1").await;
    let paused = server.wait_status(&id, "paused").await;
    assert_eq!(paused["disk_used_bytes"], Value::Null, "{paused}");
    eventually("the paused sandbox's container is removed", || container_of_sandbox(&id).is_none()).await;
    let (status, reply) = server.command_with(&id, json!({"cmd": "true"})).await;
    assert_eq!((status, code(&reply)), (409, "sandbox_conflict"), "{reply}");
    let (status, resumed) = server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!((status, &resumed["status"]), (200, &json!("running")), "{resumed}");
    assert!(
        resumed["note"].as_str().unwrap().contains("variables"),
        "the reply says the interpreter state is gone: {resumed}"
    );
    assert_eq!(server.sh(&id, "cat file.txt").await, "kept\n");
    assert_eq!(server.code(&id, "variable").await["error"]["name"], "NameError");
    server.delete(&id).await;
}

#[tokio::test]
async fn an_idle_sandbox_with_on_timeout_kill_is_removed_and_then_404() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MIN_TIMEOUT_SECS", "1")]).await;
    let id = server.sandbox(json!({"timeout": 2, "on_timeout": "kill"})).await;
    let trace_id = server.view(&id).await.1["trace_id"].as_str().unwrap().to_owned();
    server.wait_status(&id, "gone").await;
    let (status, reply) = server.command_with(&id, json!({"cmd": "true"})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{reply}");
    server.no_sandbox_containers().await;
    let trace = server.trace(&trace_id).await;
    assert_ne!(trace["status"], "running", "its trace ended: {trace}");
}

#[tokio::test]
async fn a_timeout_below_the_minimum_is_a_400_naming_the_minimum_and_never_raised_silently() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SANDBOX_MIN_TIMEOUT_SECS", "5")]).await;
    let (status, reply) = server.post("/sandboxes", json!({"timeout": 4.5})).await;
    assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "{reply}");
    assert!(message(&reply).contains("`timeout`") && message(&reply).contains('5'), "names the minimum: {reply}");
    let id = server.sandbox(json!({"timeout": 5})).await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/timeout"), json!({"timeout": 1})).await;
    assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "{reply}");
    assert!(message(&reply).contains('5'), "{reply}");
    let (_, view) = server.view(&id).await;
    assert_eq!(view["timeout"], 5.0, "unchanged by the refused request: {view}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_new_timeout_counts_from_now_and_activity_moves_expires_at() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"timeout": 600})).await;
    let (status, view) =
        server.post(&format!("/sandboxes/{id}/timeout"), json!({"timeout": 900, "on_timeout": "kill"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((&view["timeout"], &view["on_timeout"]), (&json!(900.0), &json!("kill")));
    assert_eq!(at_us(&view["expires_at"]) - at_us(&view["last_activity_at"]), 900_000_000, "{view}");
    let before = at_us(&view["expires_at"]);
    server.sh(&id, "true").await;
    let (_, after) = server.view(&id).await;
    assert!(at_us(&after["expires_at"]) > before, "a command moves it: {view} then {after}");
    assert_eq!(after["on_timeout"], "kill", "kept");
    let (status, reply) = server.post(&format!("/sandboxes/{id}/timeout"), json!({"on_timeout": "snooze"})).await;
    assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "{reply}");
    let (status, reply) = server.post("/sandboxes/sbx_none/timeout", json!({"timeout": 60})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{reply}");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ pause and resume

#[tokio::test]
async fn a_paused_sandbox_refuses_its_steps_and_files_with_409_saying_to_resume() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > file.txt").await;
    let (status, paused) = server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!((status, &paused["status"]), (200, &json!("paused")), "{paused}");
    let refusals = [
        server.command_with(&id, json!({"cmd": "true"})).await,
        server.code_with(&id, json!({"code": "1"})).await,
        server.write(&id, "f", "x").await,
        server.list(&id, ".").await,
        server.read_refused(&id, "file.txt").await,
        server.post(&format!("/sandboxes/{id}/snapshots"), json!({})).await,
        server.post(&format!("/sandboxes/{id}/reset"), json!({})).await,
        server.post(&format!("/sandboxes/{id}/code/restart"), json!({})).await,
        server.post(&format!("/sandboxes/{id}/pause"), json!({})).await,
    ];
    for (status, reply) in &refusals {
        assert_eq!((*status, code(reply)), (409, "sandbox_conflict"), "{reply}");
    }
    assert!(message(&refusals[0].1).contains("resume"), "the message says to resume it: {}", refusals[0].1);
    server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!((status, code(&reply)), (409, "sandbox_conflict"), "resuming a running one: {reply}");
    assert_eq!(server.read(&id, "file.txt").await, (200, b"kept\n".to_vec()));
    server.delete(&id).await;
}

#[tokio::test]
async fn pause_and_resume_keep_every_kind_of_file_locked_ones_and_hard_links_included() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let made = "mkdir -p tree/empty tree/deep/er; echo deep > tree/deep/er/f; echo run > tool.sh; chmod 750 tool.sh; \
                echo a > a; ln a hard; ln -s tree/deep/er/f link; ln -s /etc/passwd outward; \
                echo secret > locked; chmod 000 locked; mkdir shut; echo in > shut/in; chmod 000 shut; \
                echo ro > ro; chmod 400 ro";
    server.sh(&id, made).await;
    let listing = "find . -printf '%p %y %m %n %l\\n' 2>&1 | sort; chmod 700 shut; cat shut/in; chmod 000 shut";
    let before = server.sh(&id, listing).await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "a workspace with locked files is paused: {reply}");
    let (status, reply) = server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let after = server.sh(&id, listing).await;
    assert_eq!(after, before, "the same files, kinds, modes, links");
    assert_eq!(server.sh(&id, "echo b >> hard; cat a").await, "a\nb\n", "a hard link is still one file");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ snapshots and reset

#[tokio::test]
async fn reset_brings_back_the_files_given_at_creation_or_a_named_snapshot_with_a_new_kernel() {
    let server = SandboxServer::spawn().await;
    upload(&server, "data.csv", b"a,b\n1,2\n").await;
    let id = server.sandbox(json!({"files": ["data.csv"]})).await;
    assert_eq!(server.sh(&id, "cat data.csv; echo 3,4 >> data.csv; echo new > new.txt").await, "a,b\n1,2\n");
    let (status, snapshot) = server.post(&format!("/sandboxes/{id}/snapshots"), json!({"label": "edited"})).await;
    assert_eq!(status, 201, "{snapshot}");
    let snapshot_id = snapshot["snapshot_id"].as_str().unwrap().to_owned();
    server.sh(&id, "rm new.txt; echo later > later.txt").await;
    server.code(&id, "variable = 1").await;

    let (_, list) = server.get_json(&format!("/sandboxes/{id}/snapshots")).await;
    let labels: Vec<&Value> = list["snapshots"].as_array().unwrap().iter().map(|s| &s["label"]).collect();
    assert_eq!(labels, [&json!("creation"), &json!("edited")], "oldest first: {list}");

    let (status, reply) = server.post(&format!("/sandboxes/{id}/reset"), json!({"snapshot_id": snapshot_id})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(server.sh(&id, "ls; cat data.csv").await, "data.csv\nnew.txt\na,b\n1,2\n3,4\n");
    assert_eq!(server.code(&id, "variable").await["error"]["name"], "NameError", "the interpreter restarted");

    let (status, reply) = server.send(Method::POST, &format!("/sandboxes/{id}/reset"), None).await;
    assert_eq!(status, 200, "no body: to the creation state: {reply}");
    assert_eq!(server.sh(&id, "ls; cat data.csv").await, "data.csv\na,b\n1,2\n", "the files given at creation");
    assert_eq!(server.sh(&id, "echo writable >> data.csv; tail -1 data.csv").await, "writable\n");

    let (status, reply) = server.post(&format!("/sandboxes/{id}/reset"), json!({"snapshot_id": "snap_nope"})).await;
    assert_eq!(status, 404, "an unknown snapshot: {reply}");
    let other = server.sandbox(json!({})).await;
    let (status, _) = server.post(&format!("/sandboxes/{other}/reset"), json!({"snapshot_id": snapshot_id})).await;
    assert_eq!(status, 404, "another sandbox's snapshot is unknown to this one");
    assert_eq!(server.sh(&id, "cat data.csv | wc -l").await, "3\n", "a refused reset changes nothing");
    server.delete(&other).await;
    server.delete(&id).await;
    assert!(server.snapshot_files().is_empty(), "{:?}", server.snapshot_files());
}

#[tokio::test]
async fn reset_of_a_sandbox_made_without_files_empties_it_even_where_directories_are_locked() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "mkdir -p shut/deep; echo x > shut/deep/f; chmod 000 shut/deep; chmod 500 shut; echo y > top").await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/reset"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(server.sh(&id, "ls -A").await, "");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ the trace tree

#[tokio::test]
async fn a_sandbox_is_a_trace_whose_children_are_its_steps_in_order() {
    let server = SandboxServer::spawn().await;
    let created = server.create(json!({"env": {"TOKEN": "not-in-the-trace"}})).await;
    let id = created["sandbox_id"].as_str().unwrap();
    server.sh(id, "echo one").await;
    server.code(id, "2").await;
    server.write(id, "f.txt", "x").await;
    server.read(id, "f.txt").await;
    server.post(&format!("/sandboxes/{id}/snapshots"), json!({"label": "s"})).await;
    server.sh(id, "echo three").await;
    let trace_id = created["trace_id"].as_str().unwrap();
    let (status, trace) = server.get_json(&format!("/trace/{trace_id}?format=json")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!((&trace["kind"], &trace["status"]), (&json!("sandbox"), &json!("running")), "{trace}");
    assert_eq!(trace["input"]["env_names"], json!(["TOKEN"]), "names, never values: {trace}");
    assert!(!trace.to_string().contains("not-in-the-trace"));
    let kinds: Vec<&str> = trace["children"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["command", "cell", "sandbox_op", "sandbox_op", "sandbox_op", "command"], "{trace}");
    let starts: Vec<i128> = trace["children"].as_array().unwrap().iter().map(|c| at_us(&c["started_at"])).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "in order: {starts:?}");
    for child in trace["children"].as_array().unwrap() {
        assert_eq!(child["parent_id"], trace_id);
    }
    let (_, commands) = server.get_json("/traces?format=json&kind=command").await;
    assert_eq!(commands["traces"].as_array().unwrap().len(), 2, "{commands}");
    server.delete(id).await;
    let (_, ended) = server.get_json(&format!("/trace/{trace_id}?format=json")).await;
    assert_eq!(ended["status"], "success", "ended by the delete: {ended}");
    assert_eq!(ended["children"].as_array().unwrap().len(), 6, "its steps stay: {ended}");
}

#[tokio::test]
async fn nothing_is_left_after_a_busy_life_no_container_no_snapshot_no_running_trace() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo x > f").await;
    server.post(&format!("/sandboxes/{id}/snapshots"), json!({})).await;
    server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    server.post(&format!("/sandboxes/{id}/reset"), json!({})).await;
    server.code(&id, "1").await;
    server.delete(&id).await;
    assert!(sandbox_containers(server.instance()).is_empty());
    assert!(server.snapshot_files().is_empty(), "{:?}", server.snapshot_files());
    let (_, running) = server.get_json("/traces?format=json&status=running").await;
    assert_eq!(running["traces"], json!([]), "{running}");
    eventually("the server's other containers are gone", || crate::common::containers_of(server.instance()).is_empty())
        .await;
}

#[tokio::test]
async fn a_snapshot_past_its_quota_is_413_and_keeps_nothing_and_a_pause_past_it_leaves_the_sandbox_running() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SNAPSHOT_MAX_BYTES", "60000")]).await;
    let id = server.sandbox(json!({})).await;
    // Random bytes do not compress: each snapshot of them takes about 40 kB.
    server.sh(&id, "head -c 40000 /dev/urandom > noise").await;
    let (status, first) = server.post(&format!("/sandboxes/{id}/snapshots"), json!({"label": "first"})).await;
    assert_eq!(status, 201, "{first}");
    let kept = server.snapshot_files();
    server.sh(&id, "head -c 40000 /dev/urandom > noise").await;
    let (status, reply) = server.post(&format!("/sandboxes/{id}/snapshots"), json!({"label": "second"})).await;
    assert_eq!((status, code(&reply)), (413, "snapshot_quota"), "{reply}");
    assert!(message(&reply).contains("TRACEBOX_SNAPSHOT_MAX_BYTES"), "{reply}");
    assert_eq!(server.snapshot_files(), kept, "the refused snapshot left no file");
    let (_, list) = server.get_json(&format!("/sandboxes/{id}/snapshots")).await;
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1, "{list}");
    let (status, reply) = server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!((status, code(&reply)), (413, "snapshot_quota"), "{reply}");
    assert_eq!(server.view(&id).await.1["status"], "running", "a pause that could not keep the files does not pause");
    assert_eq!(server.sh(&id, "wc -c < noise").await, "40000\n");
    server.delete(&id).await;
    assert!(server.snapshot_files().is_empty(), "{:?}", server.snapshot_files());
}

#[tokio::test]
async fn a_pause_replaces_the_last_pauses_snapshot_so_pausing_again_and_again_never_fills_the_quota() {
    // Room for one pause's snapshot of 30 kB of noise, not two (a sandbox made without files
    // keeps no creation snapshot).
    let server = SandboxServer::spawn_with(&[("TRACEBOX_SNAPSHOT_MAX_BYTES", "60000")]).await;
    let id = server.sandbox(json!({})).await;
    for round in 0..4 {
        server.sh(&id, &format!("head -c 30000 /dev/urandom > noise; echo {round} > round")).await;
        let (status, reply) = server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
        assert_eq!(status, 200, "pause {round}: {reply}");
        let (status, reply) = server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
        assert_eq!(status, 200, "resume {round}: {reply}");
        assert_eq!(server.sh(&id, "cat round").await, format!("{round}\n"), "the latest pause's files came back");
    }
    let (_, list) = server.get_json(&format!("/sandboxes/{id}/snapshots")).await;
    let labels: Vec<&str> =
        list["snapshots"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["pause"], "{list}");
    assert_eq!(server.snapshot_files().len(), 1, "the earlier pauses' files are gone");
    server.delete(&id).await;
    assert!(server.snapshot_files().is_empty(), "{:?}", server.snapshot_files());
}
