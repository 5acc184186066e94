//! Every limit stops what it should, says so in words, and leaves the server healthy.

use serde_json::json;

use crate::common::{TestServer, containers_of, empty_policy, eventually, unscreened_server};

#[tokio::test]
async fn an_infinite_loop_is_killed_at_its_timeout_keeping_earlier_output() {
    let server = TestServer::spawn().await;
    let started = std::time::Instant::now();
    let (status, reply) = server
        .execute(json!({"code": "print('before the loop', flush=True)\nwhile True:\n    pass", "timeout": 1}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "timeout");
    assert_eq!(reply["timed_out"], true);
    assert_eq!(reply["stdout"], "before the loop\n");
    assert!(reply["message"].as_str().unwrap().contains("1 s timeout"), "{reply}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "killed, not waited out");
    crate::common::all_removed(&server).await;
}

#[tokio::test]
async fn a_timeout_kills_every_process_of_the_run_not_only_the_leader() {
    let server = unscreened_server().await;
    let code = "import os, time\nif os.fork() == 0:\n    while True: time.sleep(1)\nprint('parent waits', flush=True)\nos.wait()";
    let (_, reply) = server.execute(json!({"code": code, "timeout": 1})).await;
    assert_eq!(reply["status"], "timeout", "{reply}");
    // The container was killed (not only the waiting parent), then it exited.
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    let at = |name: &str| events.iter().position(|e| *e == name).unwrap_or_else(|| panic!("no {name} in {events:?}"));
    assert!(at("program.sent") < at("timeout") && at("timeout") < at("container.exited"), "{events:?}");
    assert_eq!(trace["output"]["exit_code"], 137, "SIGKILL, for the whole container");
    crate::common::all_removed(&server).await;
}

#[tokio::test]
async fn a_memory_bomb_is_reported_as_oom_naming_the_limit() {
    // Near its limit a program may thrash (its interpreter's code pages are evicted and read
    // back) for seconds before the kernel kills it, longer on a busy machine: a generous
    // timeout keeps that from being reported as one.
    let server = TestServer::spawn().await;
    let code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))";
    let (_, reply) = server.execute(json!({"code": code, "memory_mb": 64, "timeout": 40})).await;
    crate::common::assert_ended_for_memory(&reply);
    if reply["status"] == "oom" {
        assert!(reply["message"].as_str().unwrap().contains("64 MiB"), "{reply}");
    }

    let node = "const keep = []; while (true) keep.push(Buffer.alloc(16 * 1024 * 1024, 1));";
    let (_, reply) = server.execute(json!({"code": node, "language": "node", "memory_mb": 64, "timeout": 40})).await;
    crate::common::assert_ended_for_memory(&reply);
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_server_stays_healthy() {
    let server = TestServer::spawn_with(&[("TRACEBOX_POLICY", &empty_policy()), ("TRACEBOX_PIDS_LIMIT", "64")]).await;
    let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass";
    let (status, reply) = server.execute(json!({"code": bomb, "timeout": 3})).await;
    assert_eq!(status, 200);
    if crate::common::gvisor() {
        // Under gVisor each process is a task of the host, counted by its pids limit, but the
        // sandbox does not survive that limit being reached: it ends (exit 2) at once, and the run
        // with it.
        assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(2)), "runsc: {reply}");
    } else {
        assert_eq!(reply["status"], "timeout", "{reply}");
    }
    let (health, _) = server.get_json("/health").await;
    assert_eq!(health, 200);
    let after = server.run("python", "print('still here')").await;
    assert_eq!(after["stdout"], "still here\n");
    crate::common::all_removed(&server).await;
}

#[tokio::test]
async fn fifty_megabytes_of_output_are_capped_and_the_server_stays_responsive() {
    let server = TestServer::spawn().await;
    let instance = server.instance_id().await;
    let flood = server.execute(json!({"code": "import sys\nsys.stdout.write('x' * 50_000_000)"}));
    let health = async {
        eventually("the flood's container runs", || !containers_of(&instance).is_empty()).await;
        let (status, _) = server.get_json("/health").await;
        status
    };
    let ((status, reply), health) = tokio::join!(flood, health);
    assert_eq!(health, 200, "the server answered while the flood ran");
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "output_limit", "{}", reply["message"]);
    assert_eq!(reply["truncated"], true);
    assert_eq!(reply["stdout"].as_str().unwrap().len(), 1024 * 1024);
    assert!(reply["message"].as_str().unwrap().contains("TRACEBOX_OUTPUT_LIMIT_BYTES"));
}

#[tokio::test]
async fn output_exactly_at_the_limit_passes_and_one_byte_more_is_cut() {
    let server = TestServer::spawn_with(&[("TRACEBOX_OUTPUT_LIMIT_BYTES", "1000")]).await;
    let reply = server.run("python", "import sys\nsys.stdout.write('a' * 600)\nsys.stderr.write('b' * 400)").await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["truncated"], false);

    let reply = server
        .run("python", "import sys\nsys.stdout.write('a' * 600)\nsys.stdout.flush()\nsys.stderr.write('b' * 401)")
        .await;
    assert_eq!(reply["status"], "output_limit", "{reply}");
    assert_eq!(reply["truncated"], true);
    let kept = reply["stdout"].as_str().unwrap().len() + reply["stderr"].as_str().unwrap().len();
    assert_eq!(kept, 1000);
}

#[tokio::test]
async fn the_largest_allowed_timeout_and_memory_are_accepted_and_more_is_refused() {
    let server = TestServer::spawn_with(&[
        ("TRACEBOX_MAX_TIMEOUT_SECS", "5"),
        ("TRACEBOX_DEFAULT_TIMEOUT_SECS", "5"),
        ("TRACEBOX_MAX_MEMORY_MB", "128"),
        ("TRACEBOX_DEFAULT_MEMORY_MB", "64"),
    ])
    .await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "timeout": 5, "memory_mb": 128})).await;
    assert_eq!(status, 200, "{reply}");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["input"]["limits"]["timeout"], 5.0);
    assert_eq!(trace["input"]["limits"]["memory_bytes"], 128 * 1024 * 1024);

    let (status, reply) = server.execute(json!({"code": "print(1)", "timeout": 5.5})).await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["code"], "invalid_limit");
    assert!(reply["error"]["message"].as_str().unwrap().contains("`timeout`"), "{reply}");
    let (status, reply) = server.execute(json!({"code": "print(1)", "memory_mb": 129})).await;
    assert_eq!(status, 400);
    assert!(reply["error"]["message"].as_str().unwrap().contains("`memory_mb`"), "{reply}");
}

#[tokio::test]
async fn a_run_that_closes_its_output_still_meets_its_timeout() {
    let server = unscreened_server().await;
    let code = "import os, time\nos.close(1)\nos.close(2)\nwhile True:\n    time.sleep(0.1)";
    let (_, reply) = server.execute(json!({"code": code, "timeout": 1})).await;
    assert_eq!(reply["status"], "timeout", "{reply}");
}
