//! What every user does first: run a program and get its output back.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn python_hello_world() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "print('hello from python')").await;
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["exit_code"], 0);
    assert_eq!(reply["stdout"], "hello from python\n");
    assert_eq!(reply["stderr"], "");
    assert!(reply["trace_id"].as_str().unwrap().len() == 36);
}

#[tokio::test]
async fn node_hello_world_under_every_alias() {
    let server = TestServer::spawn().await;
    for alias in ["node", "javascript", "js", "nodejs"] {
        let reply = server.run(alias, "console.log('hello from ' + 'node')").await;
        assert_eq!(reply["stdout"], "hello from node\n", "{alias}: {reply}");
        assert_eq!(reply["status"], "success");
    }
}

#[tokio::test]
async fn language_defaults_to_python() {
    let server = TestServer::spawn().await;
    let (status, reply) = server.execute(json!({"code": "import sys; print(sys.version_info[0])"})).await;
    assert_eq!(status, 200);
    assert_eq!(reply["stdout"], "3\n");
}

#[tokio::test]
async fn a_bare_curl_body_without_content_type_works() {
    let server = TestServer::spawn().await;
    // What `curl -X POST localhost:5000/execute -d '{"code":"print(1)"}'` sends.
    let response = server
        .client
        .post(server.url("/execute"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"code":"print(1)"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["stdout"], "1\n");
}

#[tokio::test]
async fn stdin_reaches_the_program_and_ends() {
    let server = TestServer::spawn().await;
    let python =
        "name = input()\nrest = __import__('sys').stdin.read()\nprint(f'hi {name}'); print(rest.upper(), end='')";
    let (_, reply) = server.execute(json!({"code": python, "stdin": "ada\nline two\nline three\n"})).await;
    assert_eq!(reply["stdout"], "hi ada\nLINE TWO\nLINE THREE\n");

    let node = "let s = ''; process.stdin.on('data', d => s += d); process.stdin.on('end', () => console.log(s.trim().split('\\n').reverse().join(',')))";
    let (_, reply) = server.execute(json!({"code": node, "language": "node", "stdin": "a\nb\nc\n"})).await;
    assert_eq!(reply["stdout"], "c,b,a\n");
}

#[tokio::test]
async fn no_stdin_means_end_of_file_at_once() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "import sys\nprint(repr(sys.stdin.read()))").await;
    assert_eq!(reply["stdout"], "''\n");
}

#[tokio::test]
async fn stderr_is_kept_apart_from_stdout() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "import sys\nprint('out')\nprint('err', file=sys.stderr)").await;
    assert_eq!(reply["stdout"], "out\n");
    assert_eq!(reply["stderr"], "err\n");
    let reply = server.run("node", "console.log('out'); console.error('err')").await;
    assert_eq!((reply["stdout"].as_str(), reply["stderr"].as_str()), (Some("out\n"), Some("err\n")));
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error_status_not_an_http_error() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "import sys\nsys.exit(3)").await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["exit_code"], 3);
    let reply = server.run("node", "process.exit(7)").await;
    assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(7)));
}

#[tokio::test]
async fn an_exception_shows_a_normal_traceback() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "x = 1\nraise ValueError('boom')").await;
    assert_eq!(reply["exit_code"], 1);
    let stderr = reply["stderr"].as_str().unwrap();
    assert!(stderr.contains("File \"/workspace/main.py\", line 2"), "{stderr}");
    assert!(stderr.contains("raise ValueError('boom')") && stderr.ends_with("ValueError: boom\n"), "{stderr}");
    assert!(!stderr.contains("runner.py"), "the runner's own frame is hidden: {stderr}");
}

#[tokio::test]
async fn unicode_output_round_trips() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "print('héllo wörld 日本語 🦀')").await;
    assert_eq!(reply["stdout"], "héllo wörld 日本語 🦀\n");
    assert_eq!(reply["invalid_utf8"], false);
    let reply = server.run("node", "console.log('ünïcödé ✓')").await;
    assert_eq!(reply["stdout"], "ünïcödé ✓\n");
}

#[tokio::test]
async fn invalid_utf8_output_is_replaced_and_flagged() {
    let server = TestServer::spawn().await;
    let reply = server
        .run(
            "python",
            "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe done\\n')\nsys.stderr.buffer.write(b'\\xc3')",
        )
        .await;
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["stdout"], "ok \u{fffd}\u{fffd} done\n");
    assert_eq!(reply["stderr"], "\u{fffd}");
    assert_eq!(reply["invalid_utf8"], true);
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["output"]["invalid_utf8"], true);
}

#[tokio::test]
async fn invalid_utf8_from_node_is_replaced_and_flagged_too() {
    let server = TestServer::spawn().await;
    let reply = server.run("node", "process.stdout.write(Buffer.from([0x6f, 0x6b, 0xff, 0x0a]))").await;
    assert_eq!(reply["stdout"], "ok\u{fffd}\n");
    assert_eq!(reply["invalid_utf8"], true);
}

#[tokio::test]
async fn env_variables_reach_the_program_byte_for_byte_in_both_languages() {
    let server = TestServer::spawn().await;
    // Values that a naive `NAME=value` framing would cut: '=' inside, newlines, non-ASCII, empty.
    let env = json!({"GREETING": "bonjour", "EQUATION": "a=b=c", "LINES": "one\ntwo", "WORD": "café ✓", "EMPTY": ""});
    let programs = [
        (
            "python",
            "import os\nfor k in ['GREETING','EQUATION','LINES','WORD','EMPTY','HOME']: print(repr(os.environ[k]))",
        ),
        (
            "node",
            "for (const k of ['GREETING','EQUATION','LINES','WORD','EMPTY','HOME']) console.log(JSON.stringify(process.env[k]).replaceAll('\"', \"'\"))",
        ),
    ];
    for (language, code) in programs {
        let (status, reply) = server.execute(json!({"code": code, "language": language, "env": env})).await;
        assert_eq!(status, 200, "{reply}");
        let expected = "'bonjour'\n'a=b=c'\n'one\\ntwo'\n'café ✓'\n''\n'/workspace'\n";
        assert_eq!(reply["stdout"], expected, "{language}: {reply}");
    }
}

#[tokio::test]
async fn node_es_modules_and_top_level_await_work() {
    let server = TestServer::spawn().await;
    let code = "import { basename } from 'node:path';\nawait new Promise(r => setTimeout(r, 10));\nconsole.log(basename(import.meta.url));";
    let reply = server.run("node", code).await;
    assert_eq!(reply["stdout"], "main.mjs\n", "{reply}");
}

#[tokio::test]
async fn node_starts_from_the_runner_snapshot_and_shows_only_the_programs_own_warnings() {
    let server = TestServer::spawn().await;
    let code = "process.emitWarning('mine');\nconsole.log(process.execArgv.includes('--snapshot-blob'), require.main === module);";
    let reply = server.run("node", code).await;
    assert_eq!(reply["stdout"], "true true\n", "started from the snapshot, the code as the main module: {reply}");
    let stderr = reply["stderr"].as_str().unwrap();
    assert!(stderr.contains("Warning: mine"), "the program's warning is shown: {stderr}");
    assert!(!stderr.contains("snapshot"), "the runner's own notice is not: {stderr}");
}

#[tokio::test]
async fn each_run_gets_a_fresh_container() {
    let server = TestServer::spawn().await;
    let code = "import os\nexisted = os.path.exists('/tmp/marker')\nopen('/tmp/marker', 'w').write('x')\nprint(existed, open('/etc/hostname').read().strip())";
    let first = server.run("python", code).await;
    let second = server.run("python", code).await;
    assert_eq!(first["stdout"], "False sandbox\n");
    assert_eq!(second["stdout"], "False sandbox\n", "the second run must not see the first run's file");
}
