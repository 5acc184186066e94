//! The policy in front of the container: refused code never runs, and secrets never leave.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn blocked_code_is_a_403_with_the_rules_and_a_trace() {
    let server = TestServer::spawn().await;
    let (status, reply) =
        server.execute(json!({"code": "print('hi')\nimport subprocess\nsubprocess.run(['id'])"})).await;
    assert_eq!(status, 403);
    assert_eq!(reply["error"]["code"], "blocked_by_policy");
    assert_eq!(reply["status"], "blocked");
    assert_eq!(reply["rules"], json!(["python.subprocess"]));
    assert_eq!(reply["policy_hits"][0]["line"], 2);
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("python.subprocess (line 2)"), "{message}");
    // The refusal is a screen's, and says so; the container is named as the wall.
    assert!(message.starts_with("refused by the policy's screen"), "{message}");
    assert!(message.contains("cannot see everything") && message.contains("not the wall"), "{message}");
    assert!(message.contains("container (no network, no capabilities"), "{message}");

    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "blocked");
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(events.contains(&"policy.blocked"), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("container")), "blocked code never reaches a container: {events:?}");
}

#[tokio::test]
async fn node_child_process_is_blocked() {
    let server = TestServer::spawn().await;
    let (status, reply) = server
        .execute(json!({"language": "node", "code": "const { execSync } = require('child_process');\nexecSync('id')"}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(reply["rules"], json!(["node.child_process"]));
}

#[tokio::test]
async fn warning_rules_let_the_run_happen_and_say_so() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "import socket\nprint('ran')").await;
    assert_eq!(reply["stdout"], "ran\n");
    assert_eq!(reply["policy_hits"][0]["rule"], "python.network");
    assert_eq!(reply["policy_hits"][0]["action"], "warn");
}

#[tokio::test]
async fn secrets_are_redacted_in_the_reply_and_in_the_stored_trace() {
    let server = TestServer::spawn().await;
    let key = ["sk-ant-api03-", &"A1b2".repeat(10)].concat();
    let aws = "AKIAIOSFODNN7EXAMPLE";
    let code = format!("import sys\nprint('key={key}')\nprint('{aws}', file=sys.stderr)");
    let (status, reply) = server.execute(json!({"code": code, "env": {"TOKEN": key}})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["stdout"], "key=[REDACTED:anthropic_api_key]\n");
    assert_eq!(reply["stderr"], "[REDACTED:aws_access_key_id]\n");
    assert_eq!(
        reply["redactions"],
        json!([
            {"rule": "anthropic_api_key", "stream": "stdout", "count": 1},
            {"rule": "aws_access_key_id", "stream": "stderr", "count": 1}
        ])
    );
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    let stored = trace.to_string();
    assert!(!stored.contains(&key) && !stored.contains(aws), "a secret reached the trace store: {stored}");
    assert_eq!(trace["output"]["stdout"], "key=[REDACTED:anthropic_api_key]\n");
    assert!(trace["input"]["code"].as_str().unwrap().contains("[REDACTED:anthropic_api_key]"));
    assert_eq!(trace["input"]["env_names"], json!(["TOKEN"]), "of the environment only names are kept");
    assert!(!server.logged().contains(&key), "a secret reached the server log");
    let database = std::fs::read(server.data_dir.join("traces/traces.db")).unwrap();
    let wal = std::fs::read(server.data_dir.join("traces/traces.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "the raw key is in the database file");
    }
}

#[tokio::test]
async fn environment_values_never_reach_the_trace() {
    let server = TestServer::spawn().await;
    let (status, reply) =
        server.execute(json!({"code": "import os\nprint(len(os.environ['DB_PASSWORD']))", "env": {"DB_PASSWORD": "hunter2-plain"}})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["stdout"], "13\n", "the program gets the value");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert!(!trace.to_string().contains("hunter2-plain"), "{trace}");
    let page =
        server.client.get(server.url(&format!("/trace/{}", reply["trace_id"].as_str().unwrap()))).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("DB_PASSWORD") && !html.contains("hunter2-plain"));
}

#[tokio::test]
async fn a_private_key_split_over_lines_is_redacted_whole() {
    let server = TestServer::spawn().await;
    let code = "print('-----BEGIN RSA PRIVATE KEY-----')\nprint('MIIEowIBAAKCAQEAx')\nprint('-----END RSA PRIVATE KEY-----')\nprint('after')";
    let reply = server.run("python", code).await;
    assert_eq!(reply["stdout"], "[REDACTED:private_key]\nafter\n");
}

#[tokio::test]
async fn a_custom_policy_file_replaces_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[[input]]\nid = \"no-math\"\naction = \"block\"\nreason = \"math is forbidden here\"\npattern = 'import math'\n",
    )
    .unwrap();
    let server = TestServer::spawn_with(&[("TRACEBOX_POLICY", path.to_str().unwrap())]).await;
    let (status, reply) = server.execute(json!({"code": "import math"})).await;
    assert_eq!(status, 403);
    assert_eq!(reply["rules"], json!(["no-math"]));
    let (status, _) = server.execute(json!({"code": "import subprocess"})).await;
    assert_eq!(status, 200, "the built-in rules are replaced, not merged");
}
