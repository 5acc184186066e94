//! `GET /traces/export`: the filtered list as JSON Lines, every trace whole, newest first; and
//! `GET /trace/{id}/output/{stream}`: one output stream as a file.

use serde_json::Value;

use crate::common::TestServer;

async fn export(server: &TestServer, query: &str) -> reqwest::Response {
    server.client.get(server.url(&format!("/traces/export?{query}"))).send().await.expect("request sent")
}

#[tokio::test]
async fn the_export_is_every_matching_trace_whole_one_json_line_each_newest_first() {
    let server = TestServer::spawn().await;
    let first = server.run("python", "print('kept one')").await;
    let failed = server.run("python", "import sys; sys.exit(3)").await;
    let second = server.run("node", "console.log('kept two')").await;

    let response = export(&server, "format=jsonl&status=success").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment") && disposition.contains("traces.jsonl"), "{disposition}");
    let body = response.text().await.unwrap();
    assert!(body.ends_with('\n'), "every line ends with a newline");
    let lines: Vec<Value> = body.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();

    let ids: Vec<&str> = lines.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second["trace_id"].as_str().unwrap(), first["trace_id"].as_str().unwrap()]);
    assert!(!ids.contains(&failed["trace_id"].as_str().unwrap()), "the status filter holds");
    assert_eq!(lines[0]["output"]["stdout"], "kept two\n");
    assert_eq!(lines[1]["input"]["code"], "print('kept one')");
    for trace in &lines {
        assert!(trace["events"].as_array().is_some_and(|events| events.len() >= 4), "{trace}");
        assert_eq!(trace["status"], "success");
    }
}

#[tokio::test]
async fn the_export_pages_through_more_traces_than_one_store_page() {
    let server = TestServer::spawn().await;
    // The export reads 100 traces per query; refused runs are traces too, and quick to make.
    for n in 0..105 {
        let (status, _) = server.execute(serde_json::json!({"code": format!("import subprocess # {n}")})).await;
        assert_eq!(status, 403);
    }
    let body = export(&server, "status=blocked").await.text().await.unwrap();
    let ids: Vec<String> = body
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 105);
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first, no trace twice");
    sorted.dedup();
    assert_eq!(sorted.len(), 105);
}

#[tokio::test]
async fn a_bad_export_request_is_refused_naming_the_fix() {
    let server = TestServer::spawn().await;
    let response = export(&server, "format=csv").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
    assert!(body["error"]["message"].as_str().unwrap().contains("jsonl"), "{body}");

    let (status, body) = server.get_json("/traces/export?status=finished").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (status, _) = server.get_json("/traces/export?limit=5").await;
    assert_eq!(status, 400);
    let wrong_method = server.client.post(server.url("/traces/export")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn an_output_stream_downloads_as_its_exact_text() {
    let server = TestServer::spawn().await;
    let code = "import sys\nsys.stdout.write('línea 1\\n\\tdos  \\n<b>&amp;</b>')\nsys.stderr.write('oops\\n')";
    let reply = server.run("python", code).await;
    let id = reply["trace_id"].as_str().unwrap();

    let response = server.client.get(server.url(&format!("/trace/{id}/output/stdout"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.headers()["content-disposition"], format!("attachment; filename=\"{id}-stdout.txt\"").as_str());
    assert_eq!(response.bytes().await.unwrap().as_ref(), "línea 1\n\tdos  \n<b>&amp;</b>".as_bytes());
    let stderr = server.client.get(server.url(&format!("/trace/{id}/output/stderr"))).send().await.unwrap();
    assert_eq!(stderr.text().await.unwrap(), "oops\n");

    for path in [
        format!("/trace/{id}/output/stdin"),
        "/trace/01a200cd-214b-7000-b7fa-f1a1a83b125f/output/stdout".to_owned(),
        "/trace/not-an-id/output/stdout".to_owned(),
    ] {
        let (status, body) = server.get_json(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"]["code"].as_str().unwrap().starts_with("no_such_"), "{path}: {body}");
    }
}
