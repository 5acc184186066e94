//! Browser safety over real HTTP, as a hostile page's browser would send it: a `Host` the server
//! does not answer to gets 421 on every route (DNS rebinding), a request from a page of another
//! origin gets 403 and runs nothing, and programs, the server's own pages and listed origins go
//! on as before. Headers that must be forged or left out go over a raw socket.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{TestServer, patience};

/// How many traces the server holds, of every kind (runs, uploads, Claude calls, batches).
async fn trace_count(server: &TestServer) -> usize {
    let (status, page) = server.get_json("/traces?limit=100").await;
    assert_eq!(status, 200, "{page}");
    page["traces"].as_array().expect("a list of traces").len()
}

/// Send `head` (the request line and headers, without the blank line) and `body` over a raw
/// socket, and read the answer to the connection's end: its status and its JSON body, if any.
async fn raw(server: &TestServer, head: &str, body: &str) -> (u16, Value) {
    let mut socket = TcpStream::connect(server.host()).await.unwrap();
    let request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(patience(), socket.read_to_end(&mut answer)).await.expect("an answer").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let status = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A `POST /execute` with `headers`, as a page's `fetch` or form would send it.
async fn execute_from(server: &TestServer, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request =
        server.client.post(server.url("/execute")).header("content-type", "text/plain").body(r#"{"code": "print(1)"}"#);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

fn assert_refused(status: u16, reply: &Value, code: &str, mentions: &str) {
    let expected = if code == "cross_origin" { 403 } else { 421 };
    assert_eq!(status, expected, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    assert_eq!(reply["trace_id"], Value::Null, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
}

#[tokio::test]
async fn a_page_of_another_origin_runs_nothing_and_leaves_no_trace() {
    let server = TestServer::spawn().await;
    let port = server.host().rsplit(':').next().unwrap().to_owned();
    let next_door = format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1);
    let foreign: [&[(&str, &str)]; 6] = [
        // The finding: a text/plain POST needs no preflight, and its body was read as JSON.
        &[("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")],
        &[("origin", "http://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        // Another port of the same host is the same site, and another origin.
        &[("origin", &next_door), ("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "same-site")],
        // Sandboxed frames and files have no origin to show.
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
    ];
    for headers in foreign {
        let (status, reply) = execute_from(&server, headers).await;
        assert_refused(status, &reply, "cross_origin", "TRACEBOX_ALLOWED_ORIGINS");
    }
    let (status, reply) = execute_from(&server, &[("origin", "http://evil.example")]).await;
    assert_refused(status, &reply, "cross_origin", "\"http://evil.example\"");

    // Every other door too: Claude (the operator's key), uploads, batches, deletions, sandboxes
    // and their agent tools, trajectories and replays (the sandbox need not exist: the guard
    // answers first).
    let evil = [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")];
    for (method, path) in [
        ("POST", "/claude"),
        ("POST", "/upload"),
        ("POST", "/batch"),
        // Nodes: a page must not schedule runs, read where work goes, or drain a node.
        ("POST", "/schedule"),
        ("GET", "/nodes"),
        ("POST", "/nodes/local/drain"),
        ("POST", "/nodes/local/undrain"),
        ("DELETE", "/files/a.txt"),
        ("POST", "/sandboxes"),
        ("POST", "/sandboxes/sbx_x/tools/shell"),
        ("GET", "/sandboxes/sbx_x/trajectory"),
        ("POST", "/sandboxes/sbx_x/replay"),
        // Access: a page must not mint tokens, sign a browser in to its attacker's key (login
        // CSRF) or out.
        ("POST", "/auth/token"),
        ("POST", "/auth/login"),
        ("POST", "/auth/logout"),
    ] {
        let mut request = server.client.request(method.parse().unwrap(), server.url(path)).body("{}");
        for (name, value) in evil {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert_refused(status, &response.json().await.unwrap(), "cross_origin", path);
    }
    assert_eq!(trace_count(&server).await, 0, "nothing ran, nothing was stored");

    // The same request from a page of its own, or sent by a program, runs.
    let own = server.url.clone();
    let by_name = format!("http://localhost:{port}");
    for headers in [
        &[][..],
        &[("origin", own.as_str()), ("sec-fetch-site", "same-origin")][..],
        // A page of the server reached by another of its names is cross-site, and its own.
        &[("origin", by_name.as_str()), ("sec-fetch-site", "cross-site")][..],
    ] {
        let (status, reply) = execute_from(&server, headers).await;
        assert_eq!((status, reply["stdout"].as_str()), (200, Some("1\n")), "{headers:?}: {reply}");
    }
    assert_eq!(trace_count(&server).await, 3);
    assert!(server.logged().contains("cross_origin"), "refusals are logged for the operator");
}

#[tokio::test]
async fn an_origin_listed_by_the_operator_is_let_in_everywhere_and_the_websocket_refuses_the_rest() {
    let server = TestServer::spawn_with(&[("TRACEBOX_ALLOWED_ORIGINS", "https://ide.example.com")]).await;
    let listed = [("origin", "https://ide.example.com"), ("sec-fetch-site", "cross-site")];
    let (status, reply) = execute_from(&server, &listed).await;
    assert_eq!((status, reply["stdout"].as_str()), (200, Some("1\n")), "{reply}");
    let (status, reply) = execute_from(&server, &[("origin", "https://ide.example.com.evil.example")]).await;
    assert_refused(status, &reply, "cross_origin", "TRACEBOX_ALLOWED_ORIGINS");

    // The WebSocket is judged by the same rule: a page on another port of this host is refused.
    let port: u16 = server.host().rsplit(':').next().unwrap().parse().unwrap();
    let url = server.url("/ws").replacen("http://", "ws://", 1);
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://127.0.0.1:{}", port ^ 1).parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_refused(response.status().as_u16(), &body, "cross_origin", "TRACEBOX_ALLOWED_ORIGINS");
        }
        other => panic!("a page on another port opened the socket: {:?}", other.map(|_| ())),
    }
    assert_eq!(trace_count(&server).await, 1);
}

#[tokio::test]
async fn a_host_the_server_does_not_answer_to_gets_421_on_every_route() {
    let server = TestServer::spawn_with(&[("TRACEBOX_ALLOWED_HOSTS", "tracebox.test")]).await;
    server.run("python", "print('a secret of the trace')").await;
    let port = server.host().rsplit(':').next().unwrap().to_owned();
    let rebound = format!("evil.example:{port}");
    for head in [
        "GET /traces HTTP/1.1",
        "GET /traces?format=json HTTP/1.1",
        "GET /health HTTP/1.1",
        "GET /static/style.css HTTP/1.1",
        "GET / HTTP/1.1",
        "GET /no-such-route HTTP/1.1",
        "POST /execute HTTP/1.1",
        "POST /schedule HTTP/1.1",
        "GET /nodes HTTP/1.1",
        "POST /nodes/local/drain HTTP/1.1",
        "POST /sandboxes/sbx_x/tools/shell HTTP/1.1",
        "GET /sandboxes/sbx_x/trajectory HTTP/1.1",
        "POST /sandboxes/sbx_x/replay HTTP/1.1",
        "POST /auth/token HTTP/1.1",
        "GET /login HTTP/1.1",
        "POST /auth/login HTTP/1.1",
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ] {
        let (status, reply) = raw(&server, &format!("{head}\r\nHost: {rebound}"), "").await;
        assert_refused(status, &reply, "misdirected_request", &format!("\"{rebound}\""));
        assert!(reply["error"]["message"].as_str().unwrap().contains("TRACEBOX_ALLOWED_HOSTS"), "{head}: {reply}");
        assert!(!reply.to_string().contains("a secret"), "{head}: {reply}");
    }
    // The authority of an absolute request target counts as much as the Host.
    let (status, reply) =
        raw(&server, &format!("GET http://{rebound}/traces HTTP/1.1\r\nHost: {}", server.host()), "").await;
    assert_refused(status, &reply, "misdirected_request", &rebound);

    // Its own names, written any way a client may write them, and the one the operator listed.
    for host in
        [server.host().to_owned(), format!("LocalHost.:{port}"), format!("[::1]:{port}"), "tracebox.test".into()]
    {
        let (status, reply) = raw(&server, &format!("GET /health HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!((status, reply["status"].as_str()), (200, Some("ok")), "{host}: {reply}");
    }
    // A page on the listed name is one of the server's own.
    let own = "POST /execute HTTP/1.1\r\nHost: tracebox.test\r\nOrigin: http://tracebox.test";
    let (status, reply) = raw(&server, own, &json!({"code": "print(2)"}).to_string()).await;
    assert_eq!((status, reply["stdout"].as_str()), (200, Some("2\n")), "{reply}");

    // A request that names no host at all: refused on HTTP/1.1, where Host is required.
    let (status, _) = raw(&server, "GET /health HTTP/1.1", "").await;
    assert_eq!(status, 400);
    let (status, reply) = raw(&server, "GET /health HTTP/1.0", "").await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("ok")), "HTTP/1.0 had no Host: {reply}");
}

#[tokio::test]
async fn links_to_pages_are_followed_from_elsewhere_but_nothing_else_is_read_and_static_files_load_for_anyone() {
    let server = TestServer::spawn().await;
    let id = server.run("python", "print('out')").await["trace_id"].as_str().unwrap().to_owned();
    let get = |path: String, headers: &'static [(&'static str, &'static str)]| {
        let mut request = server.client.get(server.url(&path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap() }
    };
    const FOLLOWED: &[(&str, &str)] = &[
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-user", "?1"),
    ];
    const FETCHED: &[(&str, &str)] =
        &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")];
    for page in ["/".to_owned(), "/traces".to_owned(), format!("/trace/{id}")] {
        let response = get(page.clone(), FOLLOWED).await;
        assert_eq!(response.status(), 200, "a link to {page} followed from a chat");
        assert!(response.text().await.unwrap().starts_with("<!doctype html>"), "{page}");
        let response = get(page.clone(), FETCHED).await;
        assert_eq!(response.status(), 403, "{page} loaded by another page");
    }
    for path in ["/health".to_owned(), "/traces/export".to_owned(), format!("/trace/{id}/output/stdout")] {
        let response = get(path.clone(), FOLLOWED).await;
        let status = response.status().as_u16();
        assert_refused(status, &response.json().await.unwrap(), "cross_origin", &path);
    }
    const EVIL: &[(&str, &str)] = &[("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")];
    let response = get("/static/style.css".into(), EVIL).await;
    assert_eq!(response.status(), 200, "static files are public");
}
