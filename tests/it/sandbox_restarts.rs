//! Stateful sandboxes outlive tracebox: a graceful stop leaves their containers running, a
//! `kill -9` loses nothing, the next start attaches again (files and interpreter variables
//! intact), settles a sandbox whose container went, and a paused one keeps its files.

use serde_json::{Value, json};

use crate::common::patience;
use crate::common::sandboxes::{SandboxServer, container_of_sandbox, is_running, sandbox_containers};

fn ids(list: &Value) -> Vec<&str> {
    list["sandboxes"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|s| s["sandbox_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn after_a_kill_9_and_a_restart_the_sandbox_answers_with_its_files_and_its_variables() {
    let mut server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let node = server.sandbox(json!({"language": "node"})).await;
    server.code(&id, "answer = 42\nopen('f.txt', 'w').write('kept')").await;
    server.code(&node, "var answer = 'forty-two'").await;
    let containers = (container_of_sandbox(&id), container_of_sandbox(&node));
    server.crash();
    server.restart().await;
    // As soon as /health answers (restart waited for it).
    let (_, list) = server.get_json("/sandboxes").await;
    assert_eq!(ids(&list).len(), 2, "{list}");
    assert_eq!(server.result(&id, "answer, open('f.txt').read()").await, "(42, 'kept')");
    assert_eq!(server.result(&node, "answer").await, "'forty-two'");
    assert_eq!((container_of_sandbox(&id), container_of_sandbox(&node)), containers, "the same containers");
    assert_eq!(server.sh(&id, "echo still").await, "still\n");
    server.delete(&id).await;
    server.delete(&node).await;
}

#[tokio::test]
async fn a_command_running_across_a_kill_9_never_answers_a_later_command() {
    let mut server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "true").await;
    let old = {
        let (client, url) = (server.client.clone(), server.url(&format!("/sandboxes/{id}/commands")));
        tokio::spawn(async move {
            client
                .post(url)
                .json(
                    &json!({"cmd": "touch started; while [ ! -e go ]; do sleep 0.05; done; echo OLD; touch old-ended"}),
                )
                .send()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + patience();
    while server.read(&id, "started").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.crash();
    let _ = old.await;
    server.restart().await;
    // The first operation after the restart's check of the sandbox, as the old command was
    // the first after the one before it.
    let new = {
        let (client, url) = (server.client.clone(), server.url(&format!("/sandboxes/{id}/commands")));
        let cmd = "touch new-started; while [ ! -e done ]; do sleep 0.05; done; echo NEW";
        tokio::spawn(async move { client.post(url).json(&json!({ "cmd": cmd })).send().await })
    };
    while server.read(&id, "new-started").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline + patience());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.write(&id, "go", "").await;
    let deadline = tokio::time::Instant::now() + patience();
    while server.read(&id, "old-ended").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the old command never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.write(&id, "done", "").await;
    let reply: Value = new.await.unwrap().unwrap().json().await.unwrap();
    server.delete(&id).await;
    assert_eq!(reply["stdout"], "NEW\n", "{reply}");
}

#[tokio::test]
async fn a_shutdown_of_tracebox_leaves_sandbox_containers_running_and_a_deleted_ones_gone() {
    let mut server = SandboxServer::spawn().await;
    let kept = server.sandbox(json!({})).await;
    let deleted = server.sandbox(json!({})).await;
    server.code(&kept, "answer = 42").await;
    server.delete(&deleted).await;
    let container = container_of_sandbox(&kept).unwrap();
    server.stop();
    assert!(is_running(&container), "the sandbox's container outlives its server");
    assert_eq!(
        sandbox_containers(server.instance()),
        std::slice::from_ref(&container),
        "and only it: the deleted one's is gone"
    );
    server.restart().await;
    assert_eq!(server.result(&kept, "answer").await, "42", "the kernel too kept running");
    server.delete(&kept).await;
}

#[tokio::test]
async fn a_sandbox_whose_container_was_removed_behind_tracebox_is_settled_at_the_next_start() {
    let mut server = SandboxServer::spawn().await;
    let snapshotted = server.sandbox(json!({})).await;
    let bare = server.sandbox(json!({})).await;
    server.sh(&snapshotted, "echo kept > f").await;
    server.post(&format!("/sandboxes/{snapshotted}/snapshots"), json!({"label": "keep"})).await;
    server.crash();
    for id in [&snapshotted, &bare] {
        let container = container_of_sandbox(id).unwrap();
        assert!(std::process::Command::new("docker").args(["rm", "-f", &container]).output().unwrap().status.success());
    }
    server.restart().await;
    let (status, view) = server.view(&snapshotted).await;
    assert_eq!((status, &view["status"]), (200, &json!("paused")), "its latest snapshot is what is left: {view}");
    assert_eq!(server.view(&bare).await.0, 404, "nothing was left of the other");
    server.post(&format!("/sandboxes/{snapshotted}/resume"), json!({})).await;
    assert_eq!(server.sh(&snapshotted, "cat f").await, "kept\n");
    server.delete(&snapshotted).await;
}

#[tokio::test]
async fn a_paused_sandbox_keeps_its_files_across_a_restart_of_tracebox() {
    let mut server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"metadata": {"k": "v"}})).await;
    server.write(&id, "data/notes.txt", "written before the restart").await;
    server.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    server.restart().await;
    let (status, view) = server.view(&id).await;
    assert_eq!((status, &view["status"], &view["metadata"]), (200, &json!("paused"), &json!({"k": "v"})), "{view}");
    let (status, reply) = server.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(server.read(&id, "data/notes.txt").await, (200, b"written before the restart".to_vec()));
    server.delete(&id).await;
    assert!(server.snapshot_files().is_empty());
}
