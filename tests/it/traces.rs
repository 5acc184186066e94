//! Every run is a trace in SQLite, readable as JSON and as a page, across restarts.

use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::sandboxes::SandboxServer;

fn event_names(trace: &Value) -> Vec<String> {
    trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_run_records_code_limits_output_and_ordered_timed_events() {
    let server = TestServer::spawn().await;
    let (_, reply) = server
        .execute(json!({"code": "import sys\nprint(input())\nprint('e', file=sys.stderr)\nsys.exit(2)", "stdin": "in", "timeout": 7}))
        .await;
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["id"], reply["trace_id"]);
    assert_eq!((trace["kind"].as_str(), trace["status"].as_str()), (Some("execution"), Some("error")));
    assert_eq!((trace["source"].as_str(), trace["language"].as_str()), (Some("http"), Some("python")));
    assert_eq!(trace["exit_code"], 2);
    assert_eq!(trace["input"]["stdin"], "in");
    assert_eq!(trace["input"]["limits"]["timeout"], 7.0);
    assert_eq!((trace["output"]["stdout"].as_str(), trace["output"]["stderr"].as_str()), (Some("in\n"), Some("e\n")));
    assert_eq!(
        event_names(&trace),
        ["node.placed", "container.started", "program.sent", "program.ended", "finished"],
        "placed on the one node, its container made for it (no warm pool in this test), then removed after the reply"
    );
    let offsets: Vec<f64> =
        trace["events"].as_array().unwrap().iter().map(|e| e["offset_ms"].as_f64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "events are in time order: {offsets:?}");
    assert!(trace["duration_ms"].as_f64().unwrap() >= offsets[2] - offsets[1]);
    assert!(trace["started_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_list_is_newest_first_pages_by_cursor_and_filters() {
    let server = TestServer::spawn().await;
    let mut ids = Vec::new();
    for code in ["print(1)", "import sys; sys.exit(1)", "print(3)"] {
        let (_, reply) = server.execute(json!({"code": code})).await;
        ids.push(reply["trace_id"].as_str().unwrap().to_owned());
    }
    let (_, reply) = server.execute(json!({"code": "console.log(4)", "language": "node"})).await;
    ids.push(reply["trace_id"].as_str().unwrap().to_owned());

    let (status, page) = server.get_json("/traces?limit=3").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["traces"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [&ids[3], &ids[2], &ids[1]]);
    assert_eq!(page["traces"][0]["preview"], "console.log(4)");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = server.get_json(&format!("/traces?limit=3&cursor={cursor}")).await;
    assert_eq!(next["traces"].as_array().unwrap().len(), 1);
    assert_eq!(next["traces"][0]["id"], ids[0].as_str());
    assert_eq!(next["next_cursor"], Value::Null);

    let (_, errors) = server.get_json("/traces?status=error").await;
    assert_eq!(errors["traces"].as_array().unwrap().len(), 1);
    assert_eq!(errors["traces"][0]["id"], ids[1].as_str());
    let (_, node) = server.get_json("/traces?language=js&kind=execution").await;
    assert_eq!(node["traces"].as_array().unwrap().len(), 1);
    let (_, none) = server.get_json("/traces?since=2999-01-01T00:00:00Z").await;
    assert!(none["traces"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_list_finds_traces_by_text_in_their_code_or_output() {
    let server = TestServer::spawn().await;
    let in_output = server.run("python", "print('the quokka smiles')").await;
    let in_code = server.run("node", "const wombat = 1; console.log(wombat)").await;
    server.run("python", "print('nothing to see')").await;
    let found = |q: &'static str| {
        let server = &server;
        async move {
            let (status, page) = server.get_json(&format!("/traces?q={q}")).await;
            assert_eq!(status, 200, "{page}");
            page["traces"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("quokka").await, [in_output["trace_id"].as_str().unwrap()]);
    assert_eq!(found("wombat").await, [in_code["trace_id"].as_str().unwrap()]);
    assert!(found("platypus").await.is_empty());
    let html = server.client.get(server.url("/traces?q=quokka")).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains(in_output["trace_id"].as_str().unwrap()) && !html.contains(in_code["trace_id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn traces_survive_a_restart() {
    let mut server = TestServer::spawn().await;
    let reply = server.run("python", "print('remember me')").await;
    let id = reply["trace_id"].as_str().unwrap().to_owned();
    server.restart().await;
    let trace = server.trace(&id).await;
    assert_eq!(trace["output"]["stdout"], "remember me\n");
    assert!(server.data_dir.join("traces/traces.db").is_file());
}

#[tokio::test]
async fn pages_are_html_for_browsers_and_json_on_request() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "print('<b>bold</b>')").await;
    let id = reply["trace_id"].as_str().unwrap();

    let page =
        server.client.get(server.url(&format!("/trace/{id}"))).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(id) && html.contains("container.started"));

    let json_form = server.client.get(server.url(&format!("/trace/{id}?format=json"))).send().await.unwrap();
    assert!(json_form.headers()["content-type"].to_str().unwrap().starts_with("application/json"));

    let list = server.client.get(server.url("/traces")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains(&format!("/trace/{id}")), "the list links to the trace");
    let css = server.client.get(server.url("/static/style.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
}

#[tokio::test]
async fn user_text_on_pages_is_escaped() {
    let server = TestServer::spawn().await;
    let code = "print('<script>alert(1)</script><img src=x onerror=alert(2)>')";
    let reply = server.run("python", code).await;
    let id = reply["trace_id"].as_str().unwrap();
    for path in [format!("/trace/{id}"), "/traces".to_owned()] {
        let html = server.client.get(server.url(&path)).send().await.unwrap().text().await.unwrap();
        assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "{path} renders user text as HTML");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || html.contains("&#60;script&#62;"), "{path}");
    }
}

/// The `href`s of a page, as a browser reads them (askama writes `&` as `&#38;`).
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| href.replace("&#38;", "&"))
        .collect()
}

#[tokio::test]
async fn the_list_page_pages_and_exports_with_the_filter_it_shows() {
    let server = TestServer::spawn().await;
    for code in ["print('page one')", "print('page two')", "import sys; sys.exit(4)"] {
        server.run("python", code).await;
    }
    let html = |path: String| {
        let server = &server;
        async move { server.client.get(server.url(&path)).send().await.unwrap().text().await.unwrap() }
    };
    let first = html("/traces?status=success&limit=1".to_owned()).await;
    assert!(first.contains("page two") && !first.contains("page one"), "newest first, one per page");
    let first_links = links(&first);
    assert!(first_links.contains(&"/traces/export?status=success&format=jsonl".to_owned()), "{first_links:?}");
    assert!(!first.contains("← Newest"), "the first page has no way back");
    let older = first_links.iter().find(|l| l.contains("cursor=")).expect("a link to older traces");
    assert!(older.starts_with("/traces?status=success&limit=1&cursor="), "{older}");

    let second = html(older.clone()).await;
    assert!(second.contains("page one") && !second.contains("page two") && !second.contains("exit(4)"));
    assert!(second.contains("← Newest") && links(&second).contains(&"/traces?status=success".to_owned()));
}

#[tokio::test]
async fn a_sandbox_page_lists_its_steps_escaped_a_page_at_a_time_and_its_json_keeps_its_children() {
    let server = SandboxServer::spawn().await;
    let sandbox = server.sandbox(json!({})).await;
    let trace_id = server.trace_of(&sandbox).await;
    let long = "head -c 5000 /dev/zero | tr '\\0' x";
    for cmd in ["echo '<script>alert(1)</script>'", "echo two", "echo three", long] {
        server.sh(&sandbox, cmd).await;
    }
    let html = |path: String| {
        let server = &server;
        async move { server.client.get(server.url(&path)).send().await.unwrap().text().await.unwrap() }
    };
    let page = html(format!("/trace/{trace_id}")).await;
    assert!(!page.contains("<script>alert"), "a step's output is text, never markup");
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;") || page.contains("&lt;script&gt;alert(1)"));
    assert!(page.contains("Steps 1–4 of 4") && page.contains("Running: 4 steps so far."), "{page}");
    assert!(page.contains("Cut: the first 2,000 characters of 4.9 KiB shown."), "a long output is cut, and says so");
    assert!(!page.contains(&"x".repeat(2_001)), "and no more of it is on the page");

    // The JSON keeps its children, all counted, and gives a window of them when asked.
    let (_, trace) = server.get_json(&format!("/trace/{trace_id}")).await;
    let children = trace["children"].as_array().unwrap();
    assert_eq!((children.len(), trace["children_total"].as_u64()), (4, Some(4)));
    assert_eq!(children[0]["preview"], "echo '<script>alert(1)</script>'", "a command's preview is its command");
    for child in children {
        assert!(
            links(&page).contains(&format!("/trace/{}", child["id"].as_str().unwrap())),
            "each step links to its page"
        );
    }
    let (_, window) = server.get_json(&format!("/trace/{trace_id}?children_from=1&children_limit=1")).await;
    assert_eq!(window["children"].as_array().unwrap().len(), 1);
    assert_eq!(
        (window["children"][0]["id"].clone(), window["children_total"].as_u64()),
        (children[1]["id"].clone(), Some(4))
    );
    let (status, refused) = server.get_json(&format!("/trace/{trace_id}?children_limit=1001")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_query")), "{refused}");

    // A later page of steps: numbered on from where it starts, with the way back to the first.
    let later = html(format!("/trace/{trace_id}?steps_from=2")).await;
    assert!(later.contains("Step 3") && !later.contains("Step 1<") && !later.contains("echo two"), "{later}");
    assert!(links(&later).contains(&format!("/trace/{trace_id}")), "a link to the first steps");
    server.delete(&sandbox).await;
    let ended = html(format!("/trace/{trace_id}")).await;
    assert!(ended.contains("Ended (deleted) after 4 steps."), "{ended}");
}

#[tokio::test]
async fn a_tool_call_is_a_step_of_its_sandbox_page_as_typed_and_the_command_it_ran_is_its_call_s() {
    let server = SandboxServer::spawn().await;
    let sandbox = server.sandbox(json!({})).await;
    let trace_id = server.trace_of(&sandbox).await;
    let call = |tool: &'static str, params: Value| {
        let (server, sandbox) = (&server, &sandbox);
        async move {
            let (status, reply) = server.post(&format!("/sandboxes/{sandbox}/tools/{tool}"), params).await;
            assert_eq!((status, &reply["success"]), (200, &json!(true)), "{tool}: {reply}");
            reply
        }
    };
    call("file_write", json!({"path": "notes.txt", "content": "<b>hi</b>\n"})).await;
    let shell = call("shell", json!({"command": "cat notes.txt"})).await;
    let (_, trajectory) = server.get_json(&format!("/sandboxes/{sandbox}/trajectory")).await;
    let (status, replayed) =
        server.post(&format!("/sandboxes/{sandbox}/replay"), json!({"trajectory": trajectory, "reset": false})).await;
    assert_eq!((status, replayed["divergence_step"].as_i64()), (200, Some(-1)), "{replayed}");

    let html = |path: String| {
        let server = &server;
        async move { server.client.get(server.url(&path)).send().await.unwrap().text().await.unwrap() }
    };
    let page = html(format!("/trace/{trace_id}")).await;
    assert!(page.contains("Steps 1–3 of 3"), "two calls and the replay; the replay's calls are its own: {page}");
    for shown in ["tool: file_write", "write notes.txt", "tool: shell", "cat notes.txt", "replay", "at no step"] {
        assert!(page.contains(shown), "{shown:?} in {page}");
    }
    assert!(!page.contains("<b>hi</b>"), "a file's content and a call's output are text, never markup");
    assert_eq!(
        page.matches("&#60;b&#62;hi&#60;/b&#62;").count() + page.matches("&lt;b&gt;hi&lt;/b&gt;").count(),
        3,
        "the content written, its diff, and the output the shell call printed"
    );

    // The call's page links back to its step; the command it ran is its call's child, not a step.
    let shell_trace = shell["trace_id"].as_str().unwrap();
    let call_page = html(format!("/trace/{shell_trace}")).await;
    assert!(links(&call_page).contains(&format!("/trace/{trace_id}#step-{shell_trace}")), "{call_page}");
    assert!(call_page.contains("step 2 of"), "{call_page}");
    let (_, call_json) = server.get_json(&format!("/trace/{shell_trace}")).await;
    let command = call_json["children"][0]["id"].as_str().expect("the command the call ran").to_owned();
    let command_page = html(format!("/trace/{command}")).await;
    assert!(links(&command_page).contains(&format!("/trace/{shell_trace}")), "its parent is its call");
    assert!(!command_page.contains("#step-"), "and it is no step of the sandbox: {command_page}");
    server.delete(&sandbox).await;
}
