//! Tokens: a key exchanged at `POST /auth/token` for a short-lived token, optionally limited to
//! one sandbox and to reads. A token never outlives its key nor does more than it.

use reqwest::Method;
use serde_json::{Value, json};

use super::{client_of, code, create_key, get, keys, post, run, send};
use crate::common::TestServer;

async fn token(client: &reqwest::Client, server: &TestServer, body: Value) -> String {
    let (status, reply) = post(client, server, "/auth/token", body).await;
    assert_eq!(status, 200, "{reply}");
    reply["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_acts_as_its_key_until_it_expires() {
    let server = TestServer::spawn().await;
    let key = client_of(&create_key(&server, "alice", &[]));
    let (status, reply) = post(&key, &server, "/auth/token", json!({"expires_in": 2})).await;
    assert_eq!((status, reply["tenant"].as_str(), reply["expires_in"].as_u64()), (200, Some("alice"), Some(2)));
    let token = client_of(reply["token"].as_str().unwrap());
    let made = run(&token, &server, "print('by token')").await;
    // What a token makes is its key's tenant's.
    assert_eq!(get(&key, &server, &format!("/trace/{}", made["trace_id"].as_str().unwrap())).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, reply) = post(&token, &server, "/execute", json!({"code": "1"})).await;
    assert_eq!((status, code(&reply)), (401, "unauthorized"));
    assert!(reply["error"]["message"].as_str().unwrap().contains("expired"), "{reply}");
}

#[tokio::test]
async fn a_token_dies_with_its_key_and_cannot_be_altered_or_make_tokens() {
    let server = TestServer::spawn().await;
    let key = client_of(&create_key(&server, "alice", &[]));
    let text = token(&key, &server, json!({})).await;
    let as_token = client_of(&text);
    // A token makes no tokens (it would outlive its own expiry).
    let (status, reply) = post(&as_token, &server, "/auth/token", json!({})).await;
    assert_eq!((status, code(&reply)), (403, "forbidden"), "{reply}");
    // One character of the signature changed.
    let mut altered = text.clone().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let (status, _) = get(&client_of(&String::from_utf8(altered).unwrap()), &server, "/traces?format=json").await;
    assert_eq!(status, 401);
    // A life up to the longest allowed is given; out of bounds is refused, naming the field.
    let (status, reply) = post(&key, &server, "/auth/token", json!({"expires_in": 86_400})).await;
    assert_eq!((status, reply["expires_in"].as_u64()), (200, Some(86_400)), "{reply}");
    for ttl in [0, 86_401] {
        let (status, reply) = post(&key, &server, "/auth/token", json!({"expires_in": ttl})).await;
        assert_eq!((status, code(&reply)), (400, "invalid_limit"), "{ttl}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("expires_in"));
    }
    assert_eq!(get(&as_token, &server, "/traces?format=json").await.0, 200);
    assert!(keys(&server, &["revoke", "alice"]).status.success());
    assert_eq!(get(&as_token, &server, "/traces?format=json").await.0, 401, "the key's revocation ends its tokens");
}

#[tokio::test]
async fn a_token_limited_to_a_sandbox_reaches_that_sandbox_only() {
    let server = TestServer::spawn().await;
    let key = client_of(&create_key(&server, "alice", &[]));
    let (_, one) = post(&key, &server, "/sandboxes", json!({})).await;
    let (_, other) = post(&key, &server, "/sandboxes", json!({})).await;
    let (one, other) = (one["sandbox_id"].as_str().unwrap(), other["sandbox_id"].as_str().unwrap());
    let agent = client_of(&token(&key, &server, json!({"sandbox": one})).await);

    let (status, reply) = post(&agent, &server, &format!("/sandboxes/{one}/commands"), json!({"cmd": "echo hi"})).await;
    assert_eq!((status, reply["stdout"].as_str()), (200, Some("hi\n")), "{reply}");
    for (method, path) in [
        (Method::GET, format!("/sandboxes/{other}")),
        (Method::POST, format!("/sandboxes/{other}/commands")),
        (Method::GET, "/sandboxes".to_owned()),
        (Method::POST, "/execute".to_owned()),
        (Method::GET, "/traces".to_owned()),
        (Method::GET, format!("/sandboxes/{one}x")),
    ] {
        let (status, reply) =
            send(&agent, &server, method.clone(), &path, Some(json!({"cmd": "id", "code": "1"}))).await;
        assert_eq!((status, code(&reply)), (403, "forbidden"), "{method} {path}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(one), "{reply}");
    }
    // A token for a sandbox another tenant holds is refused as if it did not exist.
    let bob = client_of(&create_key(&server, "bob", &[]));
    let (status, reply) = post(&bob, &server, "/auth/token", json!({"sandbox": one})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{reply}");
    for id in [one, other] {
        send(&key, &server, Method::DELETE, &format!("/sandboxes/{id}"), None).await;
    }
}

#[tokio::test]
async fn a_read_only_token_reads_and_changes_nothing() {
    let server = TestServer::spawn().await;
    let key = client_of(&create_key(&server, "alice", &[]));
    let made = run(&key, &server, "print('kept')").await;
    let reader = client_of(&token(&key, &server, json!({"read_only": true})).await);
    let (status, trace) = get(&reader, &server, &format!("/trace/{}", made["trace_id"].as_str().unwrap())).await;
    assert_eq!((status, trace["summary"]["status"].as_str().or(trace["status"].as_str())), (200, Some("success")));
    for (method, path) in [(Method::POST, "/execute"), (Method::POST, "/sandboxes"), (Method::DELETE, "/files/x")] {
        let (status, reply) = send(&reader, &server, method.clone(), path, Some(json!({"code": "1"}))).await;
        assert_eq!((status, code(&reply)), (403, "forbidden"), "{method} {path}: {reply}");
    }
    // A WebSocket runs code: a read-only token does not open one, however the path is written.
    for path in ["/ws", "/%77s", "/%77%73", "/mcp", "/%6dcp"] {
        assert_eq!(get(&reader, &server, path).await.0, 403, "{path}");
    }
}

#[tokio::test]
async fn an_open_server_has_no_tokens_to_give() {
    let server = TestServer::spawn().await;
    let (status, reply) =
        post(&crate::common::http_client(crate::common::patience()), &server, "/auth/token", json!({})).await;
    assert_eq!((status, code(&reply)), (403, "forbidden"), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("tracebox keys create"));
}

#[tokio::test]
async fn signing_out_ends_the_session_even_for_a_copy_of_the_cookie() {
    let server = TestServer::spawn().await;
    let key = create_key(&server, "alice", &[]);
    let browser = tracebox::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(crate::common::patience())
        .build()
        .unwrap();
    let signed_in = browser
        .post(server.url("/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("key", key.as_str()), ("next", "/traces")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/traces");
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |path: &str| browser.get(server.url(path)).header("cookie", cookie.clone()).send();
    assert_eq!(with_cookie("/traces?format=json").await.unwrap().status(), 200);
    let out = browser.post(server.url("/auth/logout")).header("cookie", cookie.clone()).send().await.unwrap();
    assert_eq!((out.status().as_u16(), out.headers()["location"].to_str().unwrap()), (303, "/login"));
    let reply = with_cookie("/traces?format=json").await.unwrap();
    assert_eq!(reply.status(), 401, "a copy of the cookie is worth nothing after the sign-out");
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("signed out"), "{body}");
    // A page with a stale cookie goes back to the sign-in page.
    let page =
        browser.get(server.url("/traces")).header("cookie", cookie).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 303);
}
