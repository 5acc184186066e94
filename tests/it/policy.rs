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

/// A Python program that prints an AWS key id and an Anthropic key in every form a hostile (or
/// careless) program might: after an escape or a separator, split by something a reader does
/// not see, and that names a file of `out/` after the key. The keys never appear whole in the
/// code, so only what the program makes of them could leak.
const ESCAPED_KEYS: &str = r#"
import json, os, sys
key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
ant = "sk-ant-api03-" + "Zq9x" * 10
print(json.dumps("x\n" + key))
print(repr("\t" + key))
print(json.dumps({"path": "C:\\keys\\" + key}))
print(json.dumps(json.dumps({"key": key})))
print("token%3D" + ant)
print("token%3d" + key)
print("Bearer_" + key)
print("key=\\n" + key)
print("'" + key + "'", key + "_backup")
for hidden in ["\u200b", "\u200d", "\ufeff", "\u00ad", "\x1b[31m", "\x1b]0;t\x07"]:
    print(key[:4] + hidden + key[4:] + "\x1b[0m")
sys.stderr.write(json.dumps("\n" + ant) + "\n")
sys.stderr.write(ant[:10] + "\u200b" + ant[10:] + "\n")
os.makedirs("out", exist_ok=True)
open("out/" + key + ".txt", "w").write("plain")
open("out/" + key[:4] + "\u200b" + key[4:] + ".txt", "w").write("hidden")
"#;

#[tokio::test]
async fn keys_after_escapes_split_by_hidden_characters_or_in_artifact_names_are_redacted_everywhere() {
    let server = TestServer::spawn().await;
    let tails = ["IOSFODNN7EXAMPLE", &"Zq9x".repeat(10)];
    let leaked = |what: &str, text: &str| {
        for tail in tails {
            assert!(!text.contains(tail), "a key reached {what}: {text}");
        }
    };
    let (status, reply) = server.execute(json!({"code": ESCAPED_KEYS})).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("success")), "{reply}");
    leaked("the reply", &reply.to_string());
    let stdout = reply["stdout"].as_str().unwrap();
    assert_eq!(stdout.lines().count(), 15, "{stdout}");
    assert!(stdout.lines().all(|line| line.contains("[REDACTED:")), "{stdout}");
    assert!(stdout.contains("\"x\\n[REDACTED:aws_access_key_id]\""), "{stdout}");
    assert!(stdout.contains("[REDACTED:aws_access_key_id]\u{1b}[0m"), "the colours around a key stay: {stdout}");
    assert_eq!(reply["stderr"].as_str().unwrap().matches("[REDACTED:anthropic_api_key]").count(), 2, "{reply}");

    let mut names: Vec<&str> =
        reply["artifacts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["out/REDACTED-aws_access_key_id-1.txt", "out/REDACTED-aws_access_key_id.txt"], "{reply}");
    let redactions = reply["redactions"].as_array().unwrap();
    assert!(redactions.contains(&json!({"rule": "aws_access_key_id", "stream": "artifacts", "count": 2})), "{reply}");
    let mut contents = Vec::new();
    for artifact in reply["artifacts"].as_array().unwrap() {
        let url = artifact["url"].as_str().unwrap();
        leaked("an artifact URL", url);
        let response = server.client.get(server.url(url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        leaked("a download's headers", &format!("{:?}", response.headers()));
        contents.push(response.text().await.unwrap());
    }
    contents.sort();
    assert_eq!(contents, ["hidden", "plain"]);

    let trace_id = reply["trace_id"].as_str().unwrap();
    let (status, trace) = server.get_json(&format!("/trace/{trace_id}?format=json")).await;
    assert_eq!(status, 200, "{trace}");
    leaked("the trace", &trace.to_string());
    assert_eq!(trace["output"]["artifacts"], reply["artifacts"]);
    let page = server.client.get(server.url(&format!("/trace/{trace_id}"))).send().await.unwrap();
    leaked("the trace page", &page.text().await.unwrap());
    let (_, downloads) = server.get_json("/traces?kind=download").await;
    for download in downloads["traces"].as_array().unwrap() {
        leaked("a download's trace", &server.trace(download["id"].as_str().unwrap()).await.to_string());
    }
    let stored = server.data_dir.join("uploads/artifacts").join(trace_id).join("out");
    let on_disk: Vec<String> =
        std::fs::read_dir(&stored).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    leaked("a stored file's name", &on_disk.join(" "));
    leaked("the server log", &server.logged());
    for file in ["traces/traces.db", "traces/traces.db-wal"] {
        let bytes = std::fs::read(server.data_dir.join(file)).unwrap_or_default();
        leaked(file, &String::from_utf8_lossy(&bytes));
    }
}
