//! Files: real multipart uploads to a real server, downloads with ranges, the list, deletion,
//! the limits, and names that try to leave `uploads/`.

use std::path::Path;

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::common::{TestServer, eventually, sha256};

/// POST /upload with one `file` part per (name, bytes).
pub async fn upload(server: &TestServer, query: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
    let mut form = Form::new();
    for (name, bytes) in files {
        form = form.part("file", Part::bytes(bytes.to_vec()).file_name(name.to_string()));
    }
    let response = server.client.post(server.url(&format!("/upload{query}"))).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

/// A multipart body written by hand, naming its file with RFC 5987 `filename*`, so any byte
/// (NUL, newline, slash) reaches the server exactly as given.
async fn upload_raw_name(server: &TestServer, name: &str) -> (u16, Value) {
    let encoded: String = name
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''{encoded}\r\n\r\nhello\r\n--XyZ--\r\n"
    );
    let response = server
        .client
        .post(server.url("/upload"))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

async fn download(server: &TestServer, name: &str) -> reqwest::Response {
    server.client.get(server.url(&format!("/download/{name}"))).send().await.unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn uploads(server: &TestServer) -> Vec<String> {
    listing(&server.data_dir.join("uploads"))
}

fn assert_error(reply: &Value, code: &str, mentions: &str) {
    assert_eq!(reply["error"]["code"], code, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
}

#[tokio::test]
async fn two_files_in_one_request_are_stored_with_their_sizes_and_hashes_and_listed() {
    let server = TestServer::spawn().await;
    let csv = b"a,b\n1,2\n".as_slice();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (status, reply) = upload(&server, "", &[("data.csv", csv), ("blob.bin", &binary)]).await;
    assert_eq!(status, 200, "{reply}");
    let stored = reply["files"].as_array().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0]["name"].as_str(), stored[0]["size"].as_u64()), (Some("data.csv"), Some(8)));
    assert_eq!(stored[0]["sha256"], sha256(csv));
    assert_eq!((stored[1]["name"].as_str(), stored[1]["size"].as_u64()), (Some("blob.bin"), Some(70_000)));
    assert_eq!(stored[1]["sha256"], sha256(&binary));
    assert!(stored[0].get("requested_name").is_none(), "stored under the name asked: {reply}");
    assert_eq!(std::fs::read(server.data_dir.join("uploads/blob.bin")).unwrap(), binary);
    assert_eq!(uploads(&server), ["blob.bin", "data.csv"]);

    let (status, list) = server.get_json("/files").await;
    assert_eq!(status, 200);
    let files = list["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["blob.bin", "data.csv"], "sorted by name");
    assert_eq!(files[1]["sha256"], sha256(csv));
    assert_eq!(files[1]["size"], 8);
    assert!(files[1]["uploaded_at"].as_str().unwrap().starts_with("20"), "{list}");
}

#[tokio::test]
async fn downloads_return_the_uploaded_bytes_as_an_attachment() {
    let server = TestServer::spawn().await;
    let binary: Vec<u8> = (0..=255u8).rev().cycle().take(4096).collect();
    let large: Vec<u8> = (0..20_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for (name, bytes) in [("raw.bin", binary.as_slice()), ("empty.txt", b"".as_slice()), ("large.dat", &large)] {
        let (status, reply) = upload(&server, "", &[(name, bytes)]).await;
        assert_eq!(status, 200, "{name}: {reply}");
        let response = download(&server, name).await;
        assert_eq!(response.status(), 200, "{name}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-length"], bytes.len().to_string().as_str(), "{name}");
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment") && disposition.contains(name), "{disposition}");
        let body = response.bytes().await.unwrap();
        assert!(body.as_ref() == bytes, "{name}: the downloaded bytes differ from the uploaded ones");
    }
    upload(&server, "", &[("table.csv", b"x\n")]).await;
    let response = download(&server, "table.csv").await;
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"), "{:?}", response.headers());
    let head = server.client.head(server.url("/download/large.dat")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "20000000");
}

/// Headers that keep a served file from running in a browser: plain bytes (or `kind`), a
/// policy of its own that forbids everything, no sniffing, and a download, never a page.
fn assert_inert(headers: &reqwest::header::HeaderMap, kind: &str, what: &str) {
    assert_eq!(headers["content-type"], kind, "{what}: {headers:?}");
    assert_eq!(headers["content-security-policy"], "default-src 'none'; sandbox", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{what}: {disposition}");
}

#[tokio::test]
async fn an_upload_is_never_served_as_something_a_browser_runs() {
    let server = TestServer::spawn().await;
    let files: [(&str, &[u8]); 4] = [
        ("x.js", b"alert(document.cookie)"),
        ("x.mjs", b"export default alert(1)"),
        ("x.html", b"<script src=/download/x.js></script>"),
        ("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ];
    let (status, reply) = upload(&server, "", &files).await;
    assert_eq!(status, 200, "{reply}");
    for (name, bytes) in files {
        let response = download(&server, name).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_inert(response.headers(), "application/octet-stream", name);
        assert_eq!(response.bytes().await.unwrap().as_ref(), bytes, "{name}: the bytes are served as uploaded");
        let head = server.client.head(server.url(&format!("/download/{name}"))).send().await.unwrap();
        assert_inert(head.headers(), "application/octet-stream", &format!("HEAD {name}"));
    }
    // A type a browser only displays is kept, under the same guard.
    upload(&server, "", &[("plot.png", b"\x89PNG\r\n\x1a\n")]).await;
    assert_inert(download(&server, "plot.png").await.headers(), "image/png", "plot.png");
}

#[tokio::test]
async fn a_range_request_returns_that_slice() {
    let server = TestServer::spawn().await;
    let bytes: Vec<u8> = (0..100u8).collect();
    upload(&server, "", &[("numbers.js", &bytes)]).await;
    let response =
        server.client.get(server.url("/download/numbers.js")).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(response.headers()["content-length"], "10");
    assert_inert(response.headers(), "application/octet-stream", "a range");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let tail = server.client.get(server.url("/download/numbers.js")).header("range", "bytes=-5").send().await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[95..]);
}

#[tokio::test]
async fn names_that_could_leave_uploads_are_refused_and_nothing_is_written_outside() {
    let server = TestServer::spawn().await;
    std::fs::write(server.data_dir.join("secret.txt"), b"not yours").unwrap();
    let parent = server.data_dir.parent().unwrap().to_owned();
    let parent_before = listing(&parent);
    let data_before = listing(&server.data_dir);
    let long = "a".repeat(256);
    for (name, rule) in [
        ("../x", "send the base name"),
        ("/etc/passwd", "send the base name"),
        ("a\\b", "send the base name"),
        ("C:\\Users\\a\\data.csv", "send the base name"),
        ("dir/data.csv", "send the base name"),
        ("a\nb", "control character"),
        ("a\0b", "control character"),
        ("CON", "reserved on Windows"),
        ("con.txt", "reserved on Windows"),
        (".hidden", "starts with a dot"),
        ("..", "directory reference"),
        ("data.csv ", "ends with a space or a dot"),
        (&long, "over the 255 allowed"),
    ] {
        let (status, reply) = upload_raw_name(&server, name).await;
        assert_eq!(status, 400, "{name:?}: {reply}");
        assert_error(&reply, "invalid_file_name", rule);
    }
    assert_eq!(uploads(&server), Vec::<String>::new(), "nothing stored, no partial left");
    assert_eq!(listing(&server.data_dir), data_before);
    assert_eq!(listing(&parent), parent_before, "nothing written next to the data directory");

    for path in ["..%2Fsecret.txt", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%5Csecret.txt", ".hidden", "CON"] {
        let response = download(&server, path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_error(&response.json().await.unwrap(), "invalid_file_name", "");
        let response = server.client.delete(server.url(&format!("/files/{path}"))).send().await.unwrap();
        assert_eq!(response.status(), 400, "DELETE {path}");
    }
    assert!(server.data_dir.join("secret.txt").exists(), "DELETE must not reach outside uploads/");
}

#[tokio::test]
async fn uploads_over_the_limits_are_413_and_leave_nothing() {
    let server = TestServer::spawn_with(&[
        ("TRACEBOX_UPLOAD_MAX_FILE_BYTES", "1000"),
        ("TRACEBOX_UPLOAD_MAX_REQUEST_BYTES", "1500"),
    ])
    .await;
    let (status, reply) = upload(&server, "", &[("a.bin", &[1; 1001])]).await;
    assert_eq!(status, 413, "{reply}");
    assert_error(&reply, "file_too_large", "TRACEBOX_UPLOAD_MAX_FILE_BYTES");
    let (status, reply) = upload(&server, "", &[("a.bin", &[1; 1000]), ("b.bin", &[2; 501])]).await;
    assert_eq!(status, 413, "{reply}");
    assert_error(&reply, "upload_too_large", "TRACEBOX_UPLOAD_MAX_REQUEST_BYTES");
    assert_eq!(uploads(&server), Vec::<String>::new(), "neither the first file nor a partial is kept");

    let (status, reply) = upload(&server, "", &[("a.bin", &[1; 1000]), ("b.bin", &[2; 500])]).await;
    assert_eq!(status, 200, "exactly at both limits is fine: {reply}");
    assert_eq!(uploads(&server), ["a.bin", "b.bin"]);
}

#[tokio::test]
async fn uploads_fill_the_total_quota_exactly_and_one_byte_over_is_413_and_leaves_nothing() {
    let mut server = TestServer::spawn_with(&[("TRACEBOX_UPLOAD_MAX_TOTAL_BYTES", "3000")]).await;
    let (status, reply) = upload(&server, "", &[("a.bin", &[1; 1000]), ("b.bin", &[2; 1500])]).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = upload(&server, "", &[("c.bin", &[3; 400]), ("d.bin", &[4; 101])]).await;
    assert_eq!(status, 413, "{reply}");
    assert_error(&reply, "upload_quota_exceeded", "TRACEBOX_UPLOAD_MAX_TOTAL_BYTES");
    assert_error(&reply, "upload_quota_exceeded", "past 3000 bytes");
    assert_eq!(uploads(&server), ["a.bin", "b.bin"], "neither file of the refused upload, nor a partial, is kept");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["output"]["error"]["code"], "upload_quota_exceeded", "the refusal is traced");

    let (status, reply) = upload(&server, "", &[("c.bin", &[3; 400]), ("d.bin", &[4; 100])]).await;
    assert_eq!(status, 200, "exactly at the quota is fine: {reply}");
    // A restart counts what is there: still full.
    server.restart().await;
    let (status, reply) = upload(&server, "", &[("e.bin", &[5; 1])]).await;
    assert_eq!(status, 413, "{reply}");
    let deleted = server.client.delete(server.url("/files/b.bin")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, reply) = upload(&server, "", &[("e.bin", &[5; 1500])]).await;
    assert_eq!(status, 200, "a deleted file's bytes are free again: {reply}");
    assert_eq!(uploads(&server), ["a.bin", "c.bin", "d.bin", "e.bin"]);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_partial_file() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::spawn().await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 10000000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[7; 200_000]).await.unwrap();
    let dir = server.data_dir.join("uploads");
    eventually("the partial file appears", || listing(&dir).iter().any(|n| n.starts_with(".partial-"))).await;
    drop(socket);
    eventually("the partial file is removed", || listing(&dir).is_empty()).await;
}

#[tokio::test]
async fn a_body_declared_over_the_request_limit_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::spawn_with(&[("TRACEBOX_UPLOAD_MAX_REQUEST_BYTES", "1000")]).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    // The limit plus the 1 MiB allowed for multipart framing, plus one byte.
    let length = 1000 + 1024 * 1024 + 1;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(crate::common::patience(), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answered without waiting for the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("upload_too_large") && answer.contains("TRACEBOX_UPLOAD_MAX_REQUEST_BYTES"), "{answer}");
    assert_eq!(uploads(&server), Vec::<String>::new());
}

#[tokio::test]
async fn a_taken_name_is_numbered_unless_overwrite_is_asked() {
    let server = TestServer::spawn().await;
    upload(&server, "", &[("data.csv", b"first")]).await;
    let (status, reply) = upload(&server, "", &[("data.csv", b"second")]).await;
    assert_eq!(status, 200);
    assert_eq!(reply["files"][0]["name"], "data-1.csv", "{reply}");
    assert_eq!(reply["files"][0]["requested_name"], "data.csv");
    let (_, reply) = upload(&server, "", &[("data.csv", b"third")]).await;
    assert_eq!(reply["files"][0]["name"], "data-2.csv", "{reply}");
    assert_eq!(download(&server, "data.csv").await.bytes().await.unwrap().as_ref(), b"first");

    let (status, reply) = upload(&server, "?overwrite=true", &[("data.csv", b"replaced")]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["files"][0]["name"], "data.csv");
    assert!(reply["files"][0].get("requested_name").is_none(), "{reply}");
    assert_eq!(download(&server, "data.csv").await.bytes().await.unwrap().as_ref(), b"replaced");
    assert_eq!(uploads(&server), ["data-1.csv", "data-2.csv", "data.csv"]);
    let (_, list) = server.get_json("/files").await;
    assert_eq!(list["files"][2]["sha256"], sha256(b"replaced"));
}

#[tokio::test]
async fn a_deleted_file_is_gone() {
    let server = TestServer::spawn().await;
    upload(&server, "", &[("gone.txt", b"bye")]).await;
    let response = server.client.delete(server.url("/files/gone.txt")).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let response = download(&server, "gone.txt").await;
    assert_eq!(response.status(), 404);
    assert_error(&response.json().await.unwrap(), "no_such_file", "\"gone.txt\"");
    let response = server.client.delete(server.url("/files/gone.txt")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let (_, list) = server.get_json("/files").await;
    assert_eq!(list["files"], serde_json::json!([]));
}

#[tokio::test]
async fn an_upload_that_is_not_one_says_how_to_call_it() {
    let server = TestServer::spawn().await;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    let post = || server.client.post(server.url("/upload"));
    let (status, reply) = send(post().body("{\"code\": 1}")).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_upload", &format!("curl -F file=@data.csv -F file=@more.csv {}/upload", server.url));
    let (status, reply) = send(post().multipart(Form::new().text("note", "hi"))).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_upload", "\"note\"");
    let (status, reply) = send(post().multipart(Form::new().text("file", "not a file"))).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_upload", "no file name");
    let (status, reply) = send(post().multipart(Form::new())).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_upload", "no file");
    assert_eq!(uploads(&server), Vec::<String>::new());
}

#[tokio::test]
async fn uploads_and_downloads_are_traces() {
    let server = TestServer::spawn().await;
    let (_, reply) = upload(&server, "", &[("traced.csv", b"1,2\n")]).await;
    let upload_id = reply["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(download(&server, "traced.csv").await.status(), 200);
    assert_eq!(download(&server, "missing.csv").await.status(), 404);

    let (status, page) = server.get_json("/traces?kind=upload").await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["traces"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [upload_id.as_str()]);
    let trace = server.trace(&upload_id).await;
    assert_eq!(trace["status"], "success");
    assert_eq!(trace["output"]["files"][0]["name"], "traced.csv");
    assert_eq!(trace["output"]["files"][0]["sha256"], sha256(b"1,2\n"));
    assert!(trace["input"]["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{trace}");
    assert_eq!(page["traces"][0]["preview"], "traced.csv", "the list shows the file names");
    let html = server.client.get(server.url(&format!("/trace/{upload_id}"))).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains("Uploaded 1 file.") && html.contains(&sha256(b"1,2\n")), "{html}");
    assert!(!html.contains("the program exited"), "a transfer is not explained as a run: {html}");

    let (_, page) = server.get_json("/traces?kind=download").await;
    let downloads = page["traces"].as_array().unwrap();
    let statuses: Vec<&str> = downloads.iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["error", "success"], "newest first: {page}");
    let served = server.trace(downloads[1]["id"].as_str().unwrap()).await;
    assert_eq!(served["input"]["name"], "traced.csv");
    assert_eq!(
        (served["output"]["size"].as_u64(), &served["output"]["sha256"]),
        (Some(4), &Value::from(sha256(b"1,2\n")))
    );
}

#[tokio::test]
async fn a_run_reads_the_files_it_names_and_cannot_change_them() {
    let server = TestServer::spawn().await;
    let (status, _) = upload(&server, "", &[("data.csv", b"a,b\n1,2\n3,4\n"), ("notes.txt", b"hello")]).await;
    assert_eq!(status, 200);
    let code = r#"
import csv, os
rows = list(csv.reader(open('/workspace/data.csv')))
print(len(rows), rows[-1])
print(open('notes.txt').read())
for attempt in (lambda: open('data.csv', 'a').write('x'), lambda: os.remove('data.csv'), lambda: os.rename('notes.txt', 'n2')):
    try:
        attempt()
        print('changed!')
    except OSError as error:
        print('refused:', error.strerror)
print(open('data.csv').read() == 'a,b\n1,2\n3,4\n')
"#;
    let (status, reply) = server.execute(serde_json::json!({"code": code, "files": ["data.csv", "notes.txt"]})).await;
    assert_eq!(status, 200, "{reply}");
    let stdout = reply["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("3 ['3', '4']\nhello\n"), "{stdout}");
    assert_eq!(stdout.matches("refused:").count(), 3, "every change is refused: {stdout}");
    assert!(!stdout.contains("changed!") && stdout.ends_with("True\n"), "{stdout}");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["input"]["files"][0]["name"], "data.csv", "the trace names the files given");

    // A run given no files sees none of them.
    let reply = server.run("python", "import os; print(sorted(os.listdir('/workspace')))").await;
    assert_eq!(reply["stdout"], "['main.py']\n");
}

#[tokio::test]
async fn files_a_run_cannot_have_are_refused_naming_them() {
    let server = TestServer::spawn().await;
    upload(&server, "", &[("main.py", b"print('shadow')"), ("ok.txt", b"1")]).await;
    let refused = |files: Value| {
        let server = &server;
        async move { server.execute(serde_json::json!({"code": "print(1)", "files": files})).await }
    };
    let (status, reply) = refused(serde_json::json!(["ok.txt", "missing.csv"])).await;
    assert_eq!(status, 404);
    assert_error(&reply, "no_such_file", "missing.csv");
    let (status, reply) = refused(serde_json::json!(["main.py"])).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_file_name", "main.py");
    let (status, reply) = refused(serde_json::json!(["ok.txt", "ok.txt"])).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_file_name", "twice");
    let (status, reply) = refused(serde_json::json!(["../traces/traces.db"])).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_file_name", "");
    let too_many: Vec<String> = (0..101).map(|n| format!("f{n}")).collect();
    let (status, reply) = refused(serde_json::json!(too_many)).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_file_name", "at most 100");

    // Exactly at the limit, all of them are there.
    let names: Vec<String> = (0..100).map(|n| format!("f{n}")).collect();
    let contents: Vec<(&str, &[u8])> = names.iter().map(|name| (name.as_str(), b"x".as_slice())).collect();
    assert_eq!(upload(&server, "", &contents).await.0, 200);
    let code = "import os; print(len([f for f in os.listdir('.') if f.startswith('f')]))";
    let (status, reply) = server.execute(serde_json::json!({"code": code, "files": names})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["stdout"], "100\n");
}
