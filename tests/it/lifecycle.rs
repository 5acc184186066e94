//! Containers never outlive their purpose: not after a burst of runs, a crash, a client that
//! went away, or a shutdown in the middle of a run.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{TestServer, containers_of, eventually, patience};

#[tokio::test]
async fn twenty_concurrent_runs_all_return_their_own_output() {
    let server = TestServer::spawn().await;
    let runs = (0..20).map(|i| {
        let code = if i % 2 == 0 {
            json!({"code": format!("import time\ntime.sleep(0.2)\nprint({i} * {i})")})
        } else {
            json!({"code": format!("setTimeout(() => console.log({i} * {i}), 200)"), "language": "node"})
        };
        server.execute(code)
    });
    let replies = futures_util::future::join_all(runs).await;
    for (i, (status, reply)) in replies.iter().enumerate() {
        assert_eq!(*status, 200, "{reply}");
        assert_eq!(reply["stdout"], format!("{}\n", i * i), "run {i}");
    }
    let ids: std::collections::HashSet<&str> = replies.iter().map(|(_, r)| r["trace_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 20, "each run has its own trace");
    crate::common::all_removed(&server).await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_MAX_CONCURRENT_RUNS", "1"), ("TRACEBOX_QUEUE_TIMEOUT_SECS", "0.5")]).await;
    let instance = server.instance_id().await;
    let long = server.execute(json!({"code": "import time\ntime.sleep(3)"}));
    let refused = async {
        eventually("the first run holds the only slot", || !containers_of(&instance).is_empty()).await;
        server.client.post(server.url("/execute")).json(&json!({"code": "print(1)"})).send().await.unwrap()
    };
    let ((status, _), refused) = tokio::join!(long, refused);
    assert_eq!(status, 200);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    assert!(body["error"]["message"].as_str().unwrap().contains("TRACEBOX_MAX_CONCURRENT_RUNS"));
    let trace = server.trace(body["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "internal_error", "refused runs are traced too");
}

#[tokio::test]
async fn runs_wait_up_to_max_queued_runs_and_the_next_is_refused_at_once_naming_it() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_MAX_CONCURRENT_RUNS", "1"), ("TRACEBOX_MAX_QUEUED_RUNS", "1")]).await;
    let instance = server.instance_id().await;
    let first = server.execute(json!({"code": "import time\ntime.sleep(2)\nprint('first')"}));
    let later = async {
        eventually("the first run holds the only slot", || !containers_of(&instance).is_empty()).await;
        let queued = server.execute(json!({"code": "print('queued')"}));
        let refused = async {
            let deadline = tokio::time::Instant::now() + patience();
            loop {
                let (_, health) = server.get_json("/health").await;
                if health["runs"]["queued"] == 1 {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the second run never queued: {health}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            server.client.post(server.url("/execute")).json(&json!({"code": "print('refused')"})).send().await.unwrap()
        };
        tokio::join!(queued, refused)
    };
    let ((status, first), ((queued_status, queued), refused)) = tokio::join!(first, later);
    assert_eq!((status, first["stdout"].as_str()), (200, Some("first\n")), "{first}");
    assert_eq!((queued_status, queued["stdout"].as_str()), (200, Some("queued\n")), "one run waits: {queued}");
    assert_eq!(refused.status(), 503, "the second waiting run is one too many");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("TRACEBOX_MAX_QUEUED_RUNS"), "{body}");
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_a_finished_trace_and_no_container() {
    let server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let client = crate::common::http_client(Duration::from_millis(700));
    let gone = client
        .post(server.url("/execute"))
        .json(&json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('finished')"}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the run ended");
    eventually("the abandoned run finished and its container is gone", || containers_of(&instance).is_empty()).await;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let (_, page) = server.get_json("/traces").await;
        if page["traces"][0]["status"] == "success" {
            let trace = server.trace(page["traces"][0]["id"].as_str().unwrap()).await;
            assert_eq!(trace["output"]["stdout"], "started\nfinished\n");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the trace never finished: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_crashed_server_leaves_nothing_after_the_next_start() {
    let mut server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let client = server.client.clone();
    let url = server.url("/execute");
    let running = tokio::spawn(async move {
        client.post(url).json(&json!({"code": "import time\ntime.sleep(30)", "timeout": 60})).send().await
    });
    eventually("the run's container exists", || !containers_of(&instance).is_empty()).await;
    server.crash();
    let _ = running.await;
    assert_eq!(containers_of(&instance).len(), 1, "a crash cannot clean up: the container is left behind");

    server.restart().await;
    assert!(containers_of(&instance).is_empty(), "the next start sweeps it");
    let (_, page) = server.get_json("/traces").await;
    assert_eq!(page["traces"][0]["status"], "internal_error");
    let trace = server.trace(page["traces"][0]["id"].as_str().unwrap()).await;
    assert!(trace["output"]["message"].as_str().unwrap().contains("stopped before this run finished"), "{trace}");
}

#[tokio::test]
async fn a_shutdown_during_a_run_lets_it_finish_and_removes_every_container() {
    let mut server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let client = server.client.clone();
    let url = server.url("/execute");
    let running = tokio::spawn(async move {
        client.post(url).json(&json!({"code": "import time\ntime.sleep(1)\nprint('done')"})).send().await
    });
    eventually("the run's container exists", || !containers_of(&instance).is_empty()).await;
    server.stop();
    let reply: serde_json::Value =
        running.await.unwrap().expect("the in-flight run was answered").json().await.unwrap();
    assert_eq!(reply["stdout"], "done\n");
    assert!(containers_of(&instance).is_empty());
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let server = TestServer::spawn().await;
    let output = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("serve")
        .env("TRACEBOX_DATA_DIR", &server.data_dir)
        .env("TRACEBOX_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another tracebox server already uses the data directory"), "{stderr}");
}

#[tokio::test]
async fn without_docker_the_server_refuses_to_start_and_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("serve")
        .env("TRACEBOX_DATA_DIR", dir.path())
        .env("TRACEBOX_ADDR", "127.0.0.1:0")
        .env("TRACEBOX_DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unreachable") && stderr.contains("scripts/ensure-docker.sh"), "{stderr}");
}

#[tokio::test]
async fn a_missing_image_answers_503_naming_the_fix() {
    let image = format!("tracebox-sandbox:test-missing-{}", std::process::id());
    let server = TestServer::spawn_with(&[("TRACEBOX_IMAGE", &image)]).await;
    let removed = Command::new("docker").args(["rmi", "-f", &image]).output().unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let (status, reply) = server.execute(json!({"code": "print(1)"})).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "sandbox_unavailable");
    assert!(reply["error"]["message"].as_str().unwrap().contains("tracebox image build"), "{reply}");
    let (health, body) = server.get_json("/health").await;
    assert_eq!(health, 503);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["docker"]["image_present"], false);
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "internal_error");
}

#[tokio::test]
async fn a_broken_policy_stops_start_up_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[[output]]\nid = \"bad-one\"\naction = \"redact\"\nreason = \"r\"\npattern = '(oops'\n")
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("serve")
        .env("TRACEBOX_DATA_DIR", dir.path())
        .env("TRACEBOX_POLICY", &policy)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rule `bad-one`") && stderr.contains("invalid pattern"), "{stderr}");
}
