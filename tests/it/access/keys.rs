//! Keys: an open server closes the moment a key exists; a key in either header is let in; a
//! missing, wrong or revoked one is refused 401; the key is never kept or logged in clear.

use reqwest::Method;
use serde_json::json;

use super::{client_of, code, create_key, create_key_in, get, keys, post, run, send};
use crate::common::{TestServer, http_client, patience};

#[tokio::test]
async fn a_server_without_keys_is_open_and_the_first_key_closes_it_at_once() {
    let server = TestServer::spawn().await;
    let anyone = http_client(patience());
    run(&anyone, &server, "print(1)").await;
    let (_, health) = get(&anyone, &server, "/health").await;
    assert_eq!(health["auth"]["mode"], "open");

    let key = create_key(&server, "alice", &[]);
    let (status, reply) = post(&anyone, &server, "/execute", json!({"code": "print(1)"})).await;
    assert_eq!((status, code(&reply)), (401, "unauthorized"), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("Authorization: Bearer"), "{reply}");
    let response = anyone.get(server.url("/traces?format=json")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="tracebox""#);

    // /health stays open, and says keys are on.
    let (status, health) = get(&anyone, &server, "/health").await;
    assert_eq!((status, health["auth"]["mode"].as_str()), (200, Some("keys")));
    // Both headers carry a key.
    run(&client_of(&key), &server, "print(2)").await;
    let response = anyone
        .post(server.url("/execute"))
        .header("x-api-key", &key)
        .json(&json!({"code": "print(3)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_wrong_malformed_or_revoked_key_is_refused() {
    let server = TestServer::spawn().await;
    let key = create_key(&server, "alice", &[]);
    let other = create_key(&server, "bob", &[]);
    // The right id with another key's secret, a made-up key, not a key at all, an empty header.
    let (id_part, _) = key.split_at(21);
    let (_, secret) = other.split_at(21);
    for wrong in [format!("{id_part}{secret}"), "tbx_0123456789abcdef_nope".into(), "hunter2".into(), String::new()] {
        let (status, reply) = post(&client_of(&wrong), &server, "/execute", json!({"code": "1"})).await;
        assert_eq!((status, code(&reply)), (401, "unauthorized"), "{wrong:?}: {reply}");
    }
    run(&client_of(&key), &server, "print(1)").await;
    let revoked = keys(&server, &["revoke", "alice"]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let (status, _) = post(&client_of(&key), &server, "/execute", json!({"code": "1"})).await;
    assert_eq!(status, 401, "a revoked key stops at once, with the server running");
    assert!(!keys(&server, &["revoke", "alice"]).status.success(), "revoking twice says there is no such key");
    run(&client_of(&other), &server, "print(1)").await;
    // Revoking every key locks everyone out; the server never opens up again by itself.
    assert!(keys(&server, &["revoke", "bob"]).status.success());
    let (status, _) =
        post(&crate::common::http_client(crate::common::patience()), &server, "/execute", json!({"code": "1"})).await;
    assert_eq!(status, 401);
    // Revoked names stay taken, so a name always means one key.
    assert!(!keys(&server, &["create", "--name", "alice"]).status.success());
}

#[tokio::test]
async fn keys_are_listed_without_their_secret_and_bad_names_are_refused() {
    let server = TestServer::spawn().await;
    let key = create_key(&server, "ci", &["--role", "admin", "--rate", "5/s", "--max-sandboxes", "2"]);
    let listed = keys(&server, &["list", "--json"]);
    let text = String::from_utf8(listed.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!((line["name"].as_str(), line["role"].as_str()), (Some("ci"), Some("admin")));
    assert_eq!((line["rate_per_sec"].as_f64(), line["max_sandboxes"].as_u64()), (Some(5.0), Some(2)));
    assert!(!text.contains(&key[21..]), "the list never shows a key's secret");
    for bad in [
        &["create", "--name", "a b"][..],
        &["create", "--name", "x", "--role", "root"],
        &["create", "--name", "x", "--rate", "0"],
    ] {
        assert!(!keys(&server, bad).status.success(), "{bad:?}");
    }
}

#[tokio::test]
async fn a_key_is_never_in_a_log_a_trace_or_the_data_directory_in_clear() {
    let fake = crate::common::FakeAnthropic::start(None);
    let server = TestServer::with_fake(&fake, &[]).await;
    let key = create_key(&server, "alice", &[]);
    let client = client_of(&key);
    let secret = key[21..].to_owned();
    run(&client, &server, "import os; print(os.environ.get('X', ''))").await;
    let (status, token) = post(&client, &server, "/auth/token", json!({})).await;
    assert_eq!(status, 200, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    run(&client_of(&token), &server, "print(2)").await;
    // A refused request with the key in odd places too.
    let _ = send(&client, &server, Method::GET, &format!("/trace/{key}"), None).await;
    let (status, _) = post(&client, &server, "/claude", json!({"prompt": "hi"})).await;
    assert_eq!(status, 200);
    let (_, export) = (0, client.get(server.url("/traces/export")).send().await.unwrap().text().await.unwrap());
    assert!(!export.is_empty());
    for (what, text) in [("the log", server.logged()), ("the export", export)] {
        assert!(!text.contains(&secret), "{what} holds the key");
        assert!(!text.contains(&token), "{what} holds the token");
    }
    for entry in walk(&server.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&secret), "{} holds the key in clear", entry.display());
        assert!(!text.contains(&token), "{} holds the token", entry.display());
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_server_beyond_loopback_without_a_key_refuses_to_start_naming_the_fix() {
    crate::common::require_docker();
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("serve")
        .env("TRACEBOX_DATA_DIR", data.path())
        .env("TRACEBOX_ADDR", "0.0.0.0:0")
        .env("TRACEBOX_POOL_SIZE", "0")
        .env("TRACEBOX_SANDBOX_POOL_SIZE", "0")
        .output()
        .expect("tracebox runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for fix in ["tracebox keys create", "127.0.0.1", "--insecure-no-auth"] {
        assert!(stderr.contains(fix), "the refusal names {fix}: {stderr}");
    }

    // Told to, it starts open, and says so loudly.
    let open = TestServer::spawn_with(&[("TRACEBOX_ADDR", "0.0.0.0:0"), ("TRACEBOX_INSECURE_NO_AUTH", "true")]).await;
    let anyone = http_client(patience());
    let (_, health) = get(&anyone, &open, "/health").await;
    assert_eq!(
        (health["auth"]["mode"].as_str(), health["auth"]["insecure_no_auth"].as_bool()),
        (Some("open"), Some(true))
    );
    assert!(open.logged().contains("INSECURE"), "{}", open.logged());
    run(&anyone, &open, "print(1)").await;
}

#[tokio::test]
async fn a_server_beyond_loopback_starts_with_a_key_and_stays_closed_when_it_is_revoked() {
    let data = tempfile::tempdir().unwrap();
    let key = create_key_in(data.path(), "only", &[]);
    let server = TestServer::spawn_on_with(data.path(), &[("TRACEBOX_ADDR", "0.0.0.0:0")]).await;
    run(&client_of(&key), &server, "print(1)").await;
    assert!(keys(&server, &["revoke", "only"]).status.success());
    // No key is left, but a server beyond loopback never opens up by itself.
    for client in [http_client(patience()), client_of(&key)] {
        let (status, reply) = post(&client, &server, "/execute", json!({"code": "1"})).await;
        assert_eq!((status, code(&reply)), (401, "unauthorized"), "{reply}");
    }
}
