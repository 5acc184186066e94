//! The error table of API.md: every bad request gets the right status and a message naming
//! the field and the fix, in the one error shape; nothing crashes the server.

use serde_json::{Value, json};

use crate::common::TestServer;

async fn post_raw(server: &TestServer, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = server.client.post(server.url("/execute")).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("errors are JSON"))
}

fn assert_error(reply: &Value, code: &str, mentions: &str) {
    assert_eq!(reply["error"]["code"], code, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
    assert!(reply.as_object().unwrap().contains_key("trace_id"), "{reply}");
}

#[tokio::test]
async fn malformed_json_is_a_400_that_says_so() {
    let server = TestServer::spawn().await;
    let (status, reply) = post_raw(&server, r#"{"code": "print(1)""#).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json", "not valid JSON");
    let (status, reply) = post_raw(&server, "").await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json", "the body is empty");
}

#[tokio::test]
async fn missing_code_is_a_400_with_an_example() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"language": "python"})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "missing_code", "{\"code\": \"print(1)\"}");
}

#[tokio::test]
async fn an_unknown_language_is_a_400_listing_the_known_ones() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"code": "puts 1", "language": "ruby"})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "unknown_language", "`ruby`");
    assert!(reply["error"]["message"].as_str().unwrap().contains("python"));
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "memory_mb": "lots"})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json", "`memory_mb`");
    let (status, reply) = server.execute(json!({"code": 42})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json", "`code`");
}

#[tokio::test]
async fn a_misspelt_field_is_refused_rather_than_ignored() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "timout": 5})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json", "timout");
}

#[tokio::test]
async fn code_over_the_limit_is_a_413_naming_the_limit() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_CODE_BYTES", "1000")]).await;
    let (status, _) = server.execute(json!({"code": format!("#{}", "x".repeat(999))})).await;
    assert_eq!(status, 200, "exactly at the limit is fine");
    let (status, reply) = server.execute(json!({"code": format!("#{}", "x".repeat(1000))})).await;
    assert_eq!(status, 413);
    assert_error(&reply, "code_too_large", "TRACEBOX_MAX_CODE_BYTES");
}

#[tokio::test]
async fn a_huge_body_is_a_413_without_reading_it_all() {
    let server = TestServer::spawn().await;
    let (status, reply) = post_raw(&server, vec![b' '; 16 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    assert_error(&reply, "body_too_large", "bytes");
}

#[tokio::test]
async fn stdin_over_the_limit_is_a_413() {
    let server = TestServer::spawn_with(&[("TRACEBOX_MAX_STDIN_BYTES", "10")]).await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "stdin": "12345678901"})).await;
    assert_eq!(status, 413);
    assert_error(&reply, "stdin_too_large", "TRACEBOX_MAX_STDIN_BYTES");
}

#[tokio::test]
async fn a_bad_env_name_is_a_400() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "env": {"NOT=OK": "x"}})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_env", "NOT=OK");
}

#[tokio::test]
async fn unknown_routes_and_traces_are_404s_in_the_same_shape() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.get_json("/nope").await;
    assert_eq!(status, 404);
    assert_error(&reply, "no_such_route", "/nope");
    let (status, reply) = server.get_json("/trace/0193aaaa-0000-7000-8000-000000000000").await;
    assert_eq!(status, 404);
    assert_error(&reply, "no_such_trace", "GET /traces");
    let (status, reply) = server.get_json("/trace/not-an-id").await;
    assert_eq!(status, 404);
    assert_error(&reply, "no_such_trace", "not-an-id");
}

#[tokio::test]
async fn bad_list_filters_are_400s_naming_the_filter() {
    let server = TestServer::spawn().await;
    for (query, field) in [
        ("status=sucess", "`status`"),
        ("language=cobol", "`language`"),
        ("since=yesterday", "`since`"),
        ("limit=0", "`limit`"),
        ("cursor=abc", "`cursor`"),
        ("colour=red", "colour"),
    ] {
        let (status, reply) = server.get_json(&format!("/traces?{query}")).await;
        assert_eq!(status, 400, "{query}: {reply}");
        assert_error(&reply, "invalid_query", field);
    }
}

#[tokio::test]
async fn nothing_bad_crashes_the_server() {
    let server = TestServer::spawn().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        br#"{"code": null}"#.to_vec(),
        br#"{"code": "print(1)", "timeout": -1}"#.to_vec(),
        br#"{"code": "print(1)", "timeout": 1e309}"#.to_vec(),
        br#"{"code": "print(1)", "memory_mb": -5}"#.to_vec(),
        br#"{"code": "print(1)", "env": {"A": 1}}"#.to_vec(),
        "{\"code\": \"\\ud800\"}".as_bytes().to_vec(),
    ];
    for body in bodies {
        let (status, reply) = post_raw(&server, body.clone()).await;
        assert_eq!(status, 400, "{}: {reply}", String::from_utf8_lossy(&body));
    }
    let (status, _) = server.get_json("/health").await;
    assert_eq!(status, 200);
}
