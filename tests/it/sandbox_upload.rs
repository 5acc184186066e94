//! Multipart uploads into a sandbox's `/workspace`: `POST /sandboxes/{id}/files?path=DIR`.
//! Files land under DIR (made when missing) as one traced step; names with a directory, a DIR
//! that leads outside `/workspace`, and bodies over the limits are refused with what to do.

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::TestServer;

/// A server whose largest file is 1 KiB and largest upload 4 KiB: the edges in reach.
async fn small_limits() -> TestServer {
    TestServer::spawn_with(&[("TRACEBOX_UPLOAD_MAX_FILE_BYTES", "1024"), ("TRACEBOX_UPLOAD_MAX_REQUEST_BYTES", "4096")])
        .await
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

fn form(files: &[(&str, Vec<u8>)]) -> Form {
    files.iter().fold(Form::new(), |form, (name, bytes)| {
        form.part("file", Part::bytes(bytes.clone()).file_name(name.to_string()))
    })
}

async fn upload(server: &TestServer, id: &str, query: &str, form: Form) -> (u16, Value) {
    let url = server.url(&format!("/sandboxes/{id}/files{query}"));
    let response = server.client.post(url).multipart(form).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn read(server: &TestServer, id: &str, path: &str) -> (u16, Vec<u8>) {
    let url = server.url(&format!("/sandboxes/{id}/files/content?path={path}"));
    let response = server.client.get(url).send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn files_upload_into_a_directory_made_for_them_as_one_traced_step() {
    let server = small_limits().await;
    let id = sandbox(&server).await;
    let at_the_edge = vec![b'x'; 1024];
    let (status, reply) = upload(
        &server,
        &id,
        "?path=data/in",
        form(&[("a.csv", b"n\n1\n".to_vec()), ("edge.bin", at_the_edge.clone())]),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let paths: Vec<&str> = reply["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["data/in/a.csv", "data/in/edge.bin"]);
    assert_eq!(read(&server, &id, "data/in/a.csv").await, (200, b"n\n1\n".to_vec()));
    assert_eq!(read(&server, &id, "data/in/edge.bin").await, (200, at_the_edge), "a file of exactly the limit fits");

    let (_, view) = server.get_json(&format!("/sandboxes/{id}")).await;
    let trace = server.trace(view["trace_id"].as_str().unwrap()).await;
    let step = trace["children"].as_array().unwrap().iter().find(|c| c["kind"] == "sandbox_op").cloned().unwrap();
    let step = server.trace(step["id"].as_str().unwrap()).await;
    assert_eq!((step["input"]["op"].as_str(), step["input"]["path"].as_str()), (Some("upload"), Some("data/in")));
    assert_eq!(step["output"]["bytes"], 4 + 1024, "{step}");
    delete(&server, &id).await;
}

#[tokio::test]
async fn without_a_path_files_land_in_the_workspace_itself() {
    let server = small_limits().await;
    let id = sandbox(&server).await;
    let (status, reply) = upload(&server, &id, "", form(&[("top.txt", b"top".to_vec())])).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["entries"][0]["path"], "top.txt");
    let (_, run) =
        server.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "cat /workspace/top.txt"})).await;
    assert_eq!(run["stdout"], "top", "a command sees the uploaded file: {run}");
    delete(&server, &id).await;
}

#[tokio::test]
async fn a_file_over_the_limit_or_an_upload_over_its_total_is_refused_and_nothing_is_written() {
    let server = small_limits().await;
    let id = sandbox(&server).await;
    let (status, reply) =
        upload(&server, &id, "", form(&[("ok.txt", b"fine".to_vec()), ("big.bin", vec![0; 1025])])).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("file_too_large")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("TRACEBOX_UPLOAD_MAX_FILE_BYTES"), "{reply}");
    assert_eq!(read(&server, &id, "ok.txt").await.0, 404, "nothing of a refused upload is written");

    let four: Vec<(&str, Vec<u8>)> = ["a", "b", "c", "d"].iter().map(|name| (*name, vec![b'y'; 1024])).collect();
    let (status, reply) = upload(&server, &id, "", form(&four)).await;
    assert_eq!(status, 200, "files of exactly the upload's limit in all fit: {reply}");
    let five: Vec<(&str, Vec<u8>)> = ["1", "2", "3", "4", "5"].iter().map(|name| (*name, vec![b'y'; 1000])).collect();
    let (status, reply) = upload(&server, &id, "", form(&five)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("upload_too_large")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("TRACEBOX_UPLOAD_MAX_REQUEST_BYTES"), "{reply}");
    assert_eq!(read(&server, &id, "1").await.0, 404);
    delete(&server, &id).await;
}

#[tokio::test]
async fn a_name_with_a_directory_or_a_directory_leading_out_of_the_workspace_is_bad_path() {
    let server = small_limits().await;
    let id = sandbox(&server).await;
    let (status, reply) = upload(&server, &id, "", form(&[("../escape.txt", b"x".to_vec())])).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_path")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("?path="), "it says where a directory goes: {reply}");

    let (_, made) = server.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "ln -s /etc etc"})).await;
    assert_eq!(made["exit_code"], 0, "{made}");
    let (status, reply) =
        upload(&server, &id, "?path=etc", form(&[("passwd", b"root::0:0::/:/bin/sh\n".to_vec())])).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_path")), "{reply}");
    let (status, reply) = upload(&server, &id, "?path=/tmp", form(&[("x", b"x".to_vec())])).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_path")), "{reply}");
    let (_, left) = server
        .post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "ls /tmp; grep -c '^root::' /etc/passwd"}))
        .await;
    assert_eq!(left["stdout"], "0\n", "neither /tmp nor /etc got a file: {left}");
    delete(&server, &id).await;
}

#[tokio::test]
async fn a_body_that_is_not_multipart_or_holds_no_file_says_how_to_send_one() {
    let server = small_limits().await;
    let id = sandbox(&server).await;
    let url = server.url(&format!("/sandboxes/{id}/files?path=data"));
    for request in [
        server.client.post(&url).body("just bytes"),
        server.client.post(&url).multipart(Form::new().text("note", "hi")),
        server.client.post(&url).multipart(Form::new()),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["error"]["code"], "invalid_upload", "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("curl -F file=@"), "{reply}");
    }
    let (status, reply) = upload(&server, "sbx_nosuchsandbox", "", form(&[("a", b"a".to_vec())])).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (404, Some("no_such_sandbox")), "{reply}");
    delete(&server, &id).await;
}
