//! Reading a sandbox's files through the API: text is redacted whole before a range is cut
//! from it (a range never shows part of a secret), a file over the read limit is read in ranges
//! only, and a range past the end is 416.

use serde_json::json;

use crate::common::TestServer;

/// An AWS key, assembled so that no file of this repository holds one.
fn key() -> String {
    ["AKIA", "IOSFODNN7", "EXAMPLE"].concat()
}

async fn sandbox(server: &TestServer) -> String {
    let (status, reply) = server.post_json("/sandboxes", json!({})).await;
    assert_eq!(status, 201, "{reply}");
    reply["sandbox_id"].as_str().unwrap().to_owned()
}

async fn delete(server: &TestServer, id: &str) {
    let response = server.client.delete(server.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
}

async fn put(server: &TestServer, id: &str, path: &str, body: Vec<u8>) {
    let url = server.url(&format!("/sandboxes/{id}/files/content?path={path}"));
    let response = server.client.put(url).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// GET the file, with `range` when given: status, Content-Range, X-Tracebox-Redacted, body.
async fn get(server: &TestServer, id: &str, path: &str, range: Option<&str>) -> (u16, String, bool, Vec<u8>) {
    let mut request = server.client.get(server.url(&format!("/sandboxes/{id}/files/content?path={path}")));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let content_range = header("content-range").unwrap_or_default();
    let redacted = header("x-tracebox-redacted").as_deref() == Some("true");
    (response.status().as_u16(), content_range, redacted, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn no_range_shows_part_of_a_secret_as_ranges_index_the_redacted_text() {
    let server = TestServer::spawn().await;
    let id = sandbox(&server).await;
    put(&server, &id, "creds.txt", format!("key {}\n", key()).into_bytes()).await;

    let (status, _, redacted, whole) = get(&server, &id, "creds.txt", None).await;
    let whole = String::from_utf8(whole).unwrap();
    assert_eq!(status, 200);
    assert!(redacted && whole.starts_with("key [REDACTED:") && !whole.contains("AKIA"), "{whole}");
    let (status, content_range, redacted, part) = get(&server, &id, "creds.txt", Some("bytes=0-9")).await;
    assert_eq!((status, redacted), (206, true));
    assert_eq!(part, whole.as_bytes()[..10].to_vec(), "the range is cut from the redacted text");
    assert_eq!(content_range, format!("bytes 0-9/{}", whole.len()));
    assert!(!String::from_utf8_lossy(&part).contains("AKIA"), "no part of the key: {part:?}");

    put(&server, &id, "plain.txt", b"0123456789".to_vec()).await;
    let (status, content_range, redacted, part) = get(&server, &id, "plain.txt", Some("bytes=2-4")).await;
    assert_eq!((status, content_range.as_str(), redacted, part), (206, "bytes 2-4/10", false, b"234".to_vec()));
    let (status, content_range, _, part) = get(&server, &id, "plain.txt", Some("bytes=7-")).await;
    assert_eq!((status, content_range.as_str(), part), (206, "bytes 7-9/10", b"789".to_vec()));
    let (status, _, _, body) = get(&server, &id, "plain.txt", Some("bytes=10-")).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (416, Some("range_not_satisfiable")), "{body}");
    delete(&server, &id).await;
}

#[tokio::test]
async fn a_file_over_the_read_limit_is_refused_whole_and_served_in_ranges() {
    let server = TestServer::spawn_with(&[("TRACEBOX_UPLOAD_MAX_FILE_BYTES", "1024")]).await;
    let id = sandbox(&server).await;
    let (_, made) = server
        .post_json(
            &format!("/sandboxes/{id}/commands"),
            json!({"cmd": "head -c 1024 /dev/zero > edge; head -c 1025 /dev/zero > over"}),
        )
        .await;
    assert_eq!(made["exit_code"], 0, "{made}");

    let (status, _, _, body) = get(&server, &id, "edge", None).await;
    assert_eq!((status, body.len()), (200, 1024), "a file of exactly the limit is read whole");
    let (status, _, _, body) = get(&server, &id, "over", None).await;
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("file_too_large")), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("1025 bytes") && message.contains("Range: bytes=0-1023"), "{message}");
    let (status, content_range, _, part) = get(&server, &id, "over", Some("bytes=1000-")).await;
    assert_eq!((status, content_range.as_str(), part.len()), (206, "bytes 1000-1024/1025", 25));
    delete(&server, &id).await;
}

#[tokio::test]
async fn a_sandbox_runs_a_program_it_built_in_its_workspace() {
    let server = TestServer::spawn().await;
    let id = sandbox(&server).await;
    let cmd = "printf '#!/bin/sh\\necho built and ran\\n' > tool.sh && chmod +x tool.sh && ./tool.sh";
    let (_, reply) = server.post_json(&format!("/sandboxes/{id}/commands"), json!({ "cmd": cmd })).await;
    assert_eq!((reply["exit_code"].as_i64(), reply["stdout"].as_str()), (Some(0), Some("built and ran\n")), "{reply}");
    let (_, reply) =
        server.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "cp tool.sh /tmp/t && /tmp/t"})).await;
    assert_eq!(reply["exit_code"], 126, "/tmp stays noexec: {reply}");
    delete(&server, &id).await;
}
