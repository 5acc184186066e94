//! Artifacts: what a run writes under `/workspace/out/` comes back, stored with its trace and
//! downloadable; what cannot come back is named with the reason; the limits hold at their edge.

use serde_json::{Value, json};

use crate::common::{TestServer, empty_policy, sha256, unscreened_server};
use crate::files::upload;

/// A Python program that writes a real 64×32 PNG (pure standard library) and a text result.
pub const PNG_PROGRAM: &str = r#"
import os, struct, zlib
def png(width, height):
    rows = b"".join(b"\0" + bytes(v for x in range(width) for v in (x * 4, y * 8, 128)) for y in range(height))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
os.makedirs("out", exist_ok=True)
open("out/plot.png", "wb").write(png(64, 32))
open("out/result.txt", "w").write("42\n")
print("done")
"#;

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect()
}

fn reason_of<'a>(reply: &'a Value, name: &str) -> &'a str {
    let omitted = reply["artifacts_omitted"].as_array().unwrap();
    let found = omitted.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("{name} is not omitted: {reply}"));
    found["reason"].as_str().unwrap()
}

async fn get(server: &TestServer, url: &str) -> reqwest::Response {
    server.client.get(server.url(url)).send().await.unwrap()
}

async fn unscreened_server_with(settings: &[(&str, &str)]) -> TestServer {
    let policy = empty_policy();
    let mut all = vec![("TRACEBOX_POLICY", policy.as_str())];
    all.extend_from_slice(settings);
    TestServer::spawn_with(&all).await
}

#[tokio::test]
async fn a_runs_out_directory_comes_back_as_artifacts_whose_downloads_match() {
    let server = TestServer::spawn().await;
    let code = format!(
        "{PNG_PROGRAM}\nos.makedirs('out/deep/er', exist_ok=True)\nopen('out/deep/er/bytes.bin', 'wb').write(bytes(range(256)) * 4096)\nopen('not-out.txt', 'w').write('stays')"
    );
    let (status, reply) = server.execute(json!({"code": code})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(names(&reply["artifacts"]), ["out/deep/er/bytes.bin", "out/plot.png", "out/result.txt"]);
    assert_eq!(reply["artifacts_omitted"], json!([]));
    let trace_id = reply["trace_id"].as_str().unwrap();

    for artifact in reply["artifacts"].as_array().unwrap() {
        let url = artifact["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("/download/artifacts/{trace_id}/out/")), "{url}");
        let response = get(&server, url).await;
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, artifact["size"].as_u64().unwrap(), "{url}");
        assert_eq!(sha256(&bytes), artifact["sha256"], "{url}");
        assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        // The bytes on disk, under the trace's own directory, are the ones served.
        let stored = server.data_dir.join("uploads/artifacts").join(trace_id).join(artifact["name"].as_str().unwrap());
        assert_eq!(std::fs::read(stored).unwrap(), bytes);
    }
    let png = get(&server, reply["artifacts"][1]["url"].as_str().unwrap()).await;
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let text = get(&server, reply["artifacts"][2]["url"].as_str().unwrap()).await;
    assert_eq!(text.text().await.unwrap(), "42\n");

    // A range of an artifact is that slice of it.
    let ranged = server
        .client
        .get(server.url(reply["artifacts"][0]["url"].as_str().unwrap()))
        .header("range", "bytes=256-511")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), (0..=255u8).collect::<Vec<_>>());

    // The trace keeps the list, and every download is a trace naming the artifact, its run and hash.
    let trace = server.trace(trace_id).await;
    assert_eq!(trace["output"]["artifacts"], reply["artifacts"]);
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(events.contains(&"artifacts.stored"), "{events:?}");
    let (_, downloads) = server.get_json("/traces?kind=download&status=success").await;
    let downloads = downloads["traces"].as_array().unwrap();
    assert_eq!(downloads.len(), 6, "every GET above is one: five whole files and one range");
    let first = server.trace(downloads.last().unwrap()["id"].as_str().unwrap()).await;
    assert_eq!(first["output"]["run"], trace_id);
    assert_eq!(first["output"]["name"], "out/deep/er/bytes.bin");
    assert_eq!(first["output"]["sha256"], reply["artifacts"][0]["sha256"]);

    // Artifacts are not uploads: GET /files does not list them.
    let (_, files) = server.get_json("/files").await;
    assert_eq!(files["files"], json!([]));
}

#[tokio::test]
async fn a_node_run_returns_artifacts_too() {
    let server = TestServer::spawn().await;
    let code = "const fs = require('fs');\nfs.mkdirSync('out');\nfs.writeFileSync('out/r.json', JSON.stringify({answer: 42}));";
    let reply = server.run("node", code).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(names(&reply["artifacts"]), ["out/r.json"]);
    let body = get(&server, reply["artifacts"][0]["url"].as_str().unwrap()).await.text().await.unwrap();
    assert_eq!(body, r#"{"answer":42}"#);
}

#[tokio::test]
async fn what_cannot_come_back_is_left_out_and_named_with_the_reason() {
    // No policy: the checks on what comes out of the container are what is tested.
    let server = unscreened_server().await;
    let code = r#"
import os
os.makedirs("out/.git", exist_ok=True)
os.symlink("/etc/passwd", "out/passwd")
os.mkfifo("out/pipe")
open("out/.hidden", "w").write("x")
open("out/.git/config", "w").write("x")
open("out/CON.txt", "w").write("x")
open("out/fine.txt", "w").write("fine")
"#;
    let reply = server.run("python", code).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(names(&reply["artifacts"]), ["out/fine.txt"]);
    assert!(reason_of(&reply, "out/passwd").contains("not a regular file"));
    assert!(reason_of(&reply, "out/pipe").contains("not a regular file"));
    assert!(reason_of(&reply, "out/.hidden").contains("starts with a dot"));
    assert!(reason_of(&reply, "out/.git/config").contains("starts with a dot"));
    assert!(reason_of(&reply, "out/CON.txt").contains("reserved on Windows"));
    let kept = server.data_dir.join("uploads/artifacts").join(reply["trace_id"].as_str().unwrap()).join("out");
    let mut on_disk: Vec<String> =
        std::fs::read_dir(&kept).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    on_disk.sort();
    assert_eq!(on_disk, ["fine.txt"], "nothing but the regular file reached the host");

    // `out` itself a link to somewhere else: nothing is followed, nothing comes back.
    let reply = server.run("python", "import os\nos.symlink('/etc', 'out')").await;
    assert_eq!((reply["artifacts"].clone(), reply["artifacts_omitted"].clone()), (json!([]), json!([])), "{reply}");
}

#[tokio::test]
async fn artifacts_are_bounded_in_count_and_size_at_their_edge() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_ARTIFACTS_MAX_FILES", "3"), ("TRACEBOX_ARTIFACTS_MAX_BYTES", "1000")])
            .await;
    let write = |sizes: &[usize]| {
        let files: Vec<String> =
            sizes.iter().enumerate().map(|(n, size)| format!("open('out/f{n}', 'w').write('x' * {size})")).collect();
        format!("import os\nos.makedirs('out')\n{}", files.join("\n"))
    };
    let at = server.run("python", &write(&[500, 499, 1])).await;
    assert_eq!(names(&at["artifacts"]), ["out/f0", "out/f1", "out/f2"], "three files of 1000 bytes in all: {at}");
    assert_eq!(at["artifacts_omitted"], json!([]));

    let files = server.run("python", &write(&[1, 1, 1, 1])).await;
    assert_eq!(names(&files["artifacts"]), ["out/f0", "out/f1", "out/f2"]);
    assert!(reason_of(&files, "out/f3").contains("TRACEBOX_ARTIFACTS_MAX_FILES"), "{files}");

    let bytes = server.run("python", &write(&[500, 501])).await;
    assert_eq!(names(&bytes["artifacts"]), ["out/f0"]);
    assert!(reason_of(&bytes, "out/f1").contains("TRACEBOX_ARTIFACTS_MAX_BYTES"), "{bytes}");
    let kept = server.data_dir.join("uploads/artifacts").join(bytes["trace_id"].as_str().unwrap()).join("out");
    assert!(kept.join("f0").exists() && !kept.join("f1").exists(), "a file left out is not stored");
}

#[tokio::test]
async fn a_failing_run_returns_its_artifacts_and_a_timed_out_one_returns_none() {
    let server = TestServer::spawn().await;
    let failing = server
        .run("python", "import os, sys\nos.makedirs('out')\nopen('out/partial.csv', 'w').write('a\\n')\nsys.exit(3)")
        .await;
    assert_eq!((failing["status"].as_str(), failing["exit_code"].as_i64()), (Some("error"), Some(3)), "{failing}");
    assert_eq!(names(&failing["artifacts"]), ["out/partial.csv"]);

    let (_, slow) = server
        .execute(json!({"code": "import os, time\nos.makedirs('out')\nopen('out/x', 'w').write('x')\ntime.sleep(30)", "timeout": 1}))
        .await;
    assert_eq!(slow["status"], "timeout", "{slow}");
    assert_eq!(slow["artifacts"], json!([]));
    let dir = server.data_dir.join("uploads/artifacts").join(slow["trace_id"].as_str().unwrap());
    assert!(!dir.exists(), "nothing is stored for a run that never ended by itself");
}

#[tokio::test]
async fn output_that_looks_like_the_end_line_is_the_programs_own() {
    let server = TestServer::spawn().await;
    // A NUL-led line with the wrong marker, and a NUL as the very last byte: both are output.
    let code = "import sys\nsys.stdout.buffer.write(b'a\\0TRACEBOX-END 0123 0\\nb\\0')";
    let reply = server.run("python", code).await;
    assert_eq!(reply["stdout"], "a\u{0}TRACEBOX-END 0123 0\nb\u{0}", "{reply}");
    assert_eq!(reply["status"], "success");
}

#[tokio::test]
async fn artifact_downloads_never_leave_their_run_and_uploads_cannot_take_their_name() {
    let server = TestServer::spawn().await;
    let reply = server.run("python", "import os\nos.makedirs('out')\nopen('out/a.txt', 'w').write('a')").await;
    let trace_id = reply["trace_id"].as_str().unwrap();
    for path in [
        format!("/download/artifacts/{trace_id}/out/..%2F..%2F..%2Ftraces%2Ftraces.db"),
        format!("/download/artifacts/{trace_id}/main.py"),
        format!("/download/artifacts/{trace_id}/out/missing.txt"),
        "/download/artifacts/01a2325d-a726-7459-8799-7ace27d51fb8/out/a.txt".to_owned(),
    ] {
        let response = get(&server, &path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_such_file", "{path}: {body}");
    }
    let response = get(&server, "/download/artifacts/not-a-trace/out/a.txt").await;
    assert_eq!(response.status(), 404);

    let (status, refused) = upload(&server, "?overwrite=true", &[("artifacts", b"x")]).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_file_name");
    assert!(refused["error"]["message"].as_str().unwrap().contains("artifacts of runs"), "{refused}");
    // The run's artifact is still there, untouched.
    let body = get(&server, reply["artifacts"][0]["url"].as_str().unwrap()).await.text().await.unwrap();
    assert_eq!(body, "a");
}

#[tokio::test]
async fn what_a_run_wrote_is_never_served_as_something_a_browser_runs() {
    let server = TestServer::spawn().await;
    let code = "import os\nos.makedirs('out')\nopen('out/page.html', 'w').write('<script>alert(1)</script>')\nopen('out/tool.js', 'w').write('alert(1)')";
    let reply = server.run("python", code).await;
    for artifact in reply["artifacts"].as_array().unwrap() {
        let response = get(&server, artifact["url"].as_str().unwrap()).await;
        assert_eq!(response.headers()["content-type"], "application/octet-stream", "{artifact}");
        assert_eq!(response.headers()["content-security-policy"], "default-src 'none'; sandbox");
        assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    }
    // The trace page's own route shows images only; anything else is a (traced) download.
    let trace_id = reply["trace_id"].as_str().unwrap();
    let response = get(&server, &format!("/trace/{trace_id}/artifacts/out/page.html")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("/download/artifacts/"), "{body}");
}

#[tokio::test]
async fn a_tar_past_what_the_limits_could_ever_need_is_not_read_to_its_end() {
    let server =
        unscreened_server_with(&[("TRACEBOX_ARTIFACTS_MAX_FILES", "2"), ("TRACEBOX_ARTIFACTS_MAX_BYTES", "1000")])
            .await;
    // 24 MiB in out/: the tar the supervisor sends is far past what 2 files of 1000 bytes in all
    // could need, so tracebox stops reading it there instead of taking it all in.
    let code = "import os\nos.makedirs('out')\nopen('out/big.bin', 'wb').write(b'x' * (24 << 20))\nprint('wrote')";
    let (status, reply) = server.execute(json!({"code": code, "timeout": 30, "memory_mb": 512})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((reply["status"].as_str(), reply["stdout"].as_str()), (Some("success"), Some("wrote\n")), "{reply}");
    assert_eq!(reply["artifacts"], json!([]));
    assert!(reason_of(&reply, "out/").contains("more came than the artifact limits allow"), "{reply}");
}

#[tokio::test]
async fn a_secret_in_an_artifacts_name_is_redacted_into_a_valid_unique_name() {
    let server = TestServer::spawn().await;
    // The key is never whole in the code: only the names the program makes hold it.
    let code = r#"
import os
key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
os.makedirs("out/" + key, exist_ok=True)
open("out/REDACTED-aws_access_key_id.csv", "w").write("own")
open("out/" + key + ".csv", "w").write("key")
open("out/" + key + "/data.csv", "w").write("deep")
open("out/." + key, "w").write("hidden")
os.symlink("/etc/passwd", "out/" + key + ".lnk")
"#;
    let reply = server.run("python", code).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert!(!reply.to_string().contains("IOSFODNN7EXAMPLE"), "{reply}");
    let mut stored = names(&reply["artifacts"]);
    stored.sort();
    assert_eq!(
        stored,
        [
            "out/REDACTED-aws_access_key_id-1.csv",
            "out/REDACTED-aws_access_key_id.csv",
            "out/REDACTED-aws_access_key_id/data.csv"
        ],
        "{reply}"
    );
    assert!(reason_of(&reply, "out/.REDACTED-aws_access_key_id").contains("starts with a dot"), "{reply}");
    assert!(reason_of(&reply, "out/REDACTED-aws_access_key_id.lnk").contains("not a regular file"), "{reply}");
    let mut contents = Vec::new();
    for artifact in reply["artifacts"].as_array().unwrap() {
        let response = get(&server, artifact["url"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200, "{artifact}");
        contents.push(response.text().await.unwrap());
    }
    contents.sort();
    assert_eq!(contents, ["deep", "key", "own"], "each name leads to its own file");
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["output"]["artifacts"], reply["artifacts"]);
    assert!(!trace.to_string().contains("IOSFODNN7EXAMPLE"));
}
