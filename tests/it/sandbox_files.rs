//! A sandbox's files through the API, as a hostile user would try them: every path is resolved
//! inside the container and must stay within /workspace (`..`, absolute paths, symlinks to /etc
//! and /proc/1, a symlink swapped in while the server looks), bytes round-trip, ranges, limits
//! (TRACEBOX_UPLOAD_MAX_FILE_BYTES, `disk_mb`), and two sandboxes never see each other.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::patience;
use crate::common::sandboxes::{SandboxServer, code, container_of_sandbox, message};

/// Every byte value, and then some.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

fn names(listing: &Value) -> Vec<&str> {
    listing["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("a listing: {listing}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

// ------------------------------------------------------------------ paths

#[tokio::test]
async fn no_path_leads_the_files_api_outside_the_workspace() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "mkdir sub; ln -s /etc etc-link; ln -s /etc/passwd passwd-link; ln -s /proc/1 pid1; ln -s /proc/self me; ln -s ../.. up; ln -s /tmp tmp-link").await;
    let outside = [
        "..",
        "../etc/passwd",
        "/etc/passwd",
        "/workspace/../etc/passwd",
        "sub/../../etc/passwd",
        "etc-link/passwd",
        "passwd-link",
        "pid1/environ",
        "pid1/fd/1",
        "pid1/mem",
        "me/environ",
        "up/etc/passwd",
        "/proc/1/environ",
        "a\0b",
    ];
    for path in outside {
        let (status, reply) = server.read_refused(&id, path).await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "read {path:?}: {reply}");
        let (status, reply) = server.write(&id, path, "written").await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "write {path:?}: {reply}");
    }
    for dir in ["..", "/etc", "etc-link", "pid1", "pid1/fd", "up", "tmp-link"] {
        let (status, reply) = server.list(&id, dir).await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "list {dir:?}: {reply}");
    }
    for path in ["tmp-link/made-here", "etc-link/new", "pid1/comm"] {
        let (status, reply) = server.write(&id, path, "escaped").await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "write {path:?}: {reply}");
    }
    assert_eq!(server.sh(&id, "ls -A /tmp; cat /proc/1/comm").await, "python3\n", "nothing was written outside");
    for path in ["..", "/", "/workspace", "", "."] {
        let (status, reply) = server.remove(&id, path).await;
        assert_eq!(status, 400, "remove {path:?}: {reply}");
    }
    let (status, reply) = server.get_json(&format!("/sandboxes/{id}/files/content")).await;
    assert_eq!((status, code(&reply)), (400, "bad_path"), "`path` is required: {reply}");
    assert!(message(&reply).contains("`path`"), "{reply}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_symlink_swapped_in_after_a_path_was_checked_leads_no_read_write_or_listing_outside() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    // `x` flips between a directory of the workspace and a symlink out of it, atomically
    // (renameat2 RENAME_EXCHANGE), as fast as the kernel allows, until `stop` exists.
    let swapper = r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("x")
open("x/passwd", "w").write("inside\n")
open("x/inside-only", "w").write("")
os.symlink("/etc", "link")
open("swapping", "w").close()
while not os.path.exists("stop"):
    for _ in range(1000):
        libc.renameat2(-100, b"x", -100, b"link", 2)
"#;
    let flipping = {
        let (client, url) = (server.client.clone(), server.url(&format!("/sandboxes/{id}/commands")));
        let cmd = format!("python3 -c '{}'", swapper.replace('\'', r"'\''"));
        tokio::spawn(async move { client.post(url).json(&json!({"cmd": cmd, "timeout": 120})).send().await })
    };
    let deadline = tokio::time::Instant::now() + patience();
    while server.read(&id, "swapping").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the swapper never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut inside, mut refused) = (0, 0);
    for n in 0..150 {
        let (status, bytes) = server.read(&id, "x/passwd").await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("root:"), "read {n} got /etc/passwd through the files API: {text}");
        match status {
            200 => inside += 1,
            _ => {
                assert!(matches!(status, 400 | 404), "read {n}: HTTP {status} {text}");
                refused += 1;
            }
        }
        let (status, listing) = server.list(&id, "x").await;
        if status == 200 {
            let foreign: Vec<&str> = names(&listing)
                .into_iter()
                .filter(|name| !matches!(*name, "inside-only" | "passwd") && !name.starts_with("written-"))
                .collect();
            assert!(foreign.is_empty(), "listing {n} of x shows /etc's names: {foreign:?}");
        }
        let (status, reply) = server.write(&id, &format!("x/written-{n}"), "w").await;
        assert!(matches!(status, 200 | 400 | 404), "write {n}: {status} {reply}");
    }
    assert!(inside > 0 && refused > 0, "the race was run both ways: {inside} inside, {refused} refused");
    server.write(&id, "stop", "").await;
    let stopped = flipping.await.unwrap().unwrap();
    assert_eq!(stopped.status(), 200);
    assert_eq!(server.sh(&id, "ls -A /tmp").await, "", "no write landed outside");
    server.delete(&id).await;
}

#[tokio::test]
async fn reading_a_fifo_through_the_api_is_refused_and_never_hangs_the_sandbox() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "mkfifo pipe").await;
    let read = tokio::time::timeout(Duration::from_secs(10), server.read_refused(&id, "pipe")).await;
    let (status, reply) = read.expect("a read of a FIFO answers at once (it has no writer)");
    assert_eq!((status, code(&reply)), (400, "bad_path"), "{reply}");
    assert_eq!(server.sh(&id, "echo alive").await, "alive\n");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ bytes in and out

#[tokio::test]
async fn a_file_written_with_its_parents_reads_back_byte_for_byte_and_is_listed() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let bytes = binary(300_000);
    let (status, reply) = server.write(&id, "deep/er/data.bin", bytes.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (&reply["entry"]["path"], &reply["entry"]["size"], &reply["entry"]["type"]),
        (&json!("deep/er/data.bin"), &json!(300_000), &json!("file"))
    );
    assert_eq!(server.read(&id, "deep/er/data.bin").await, (200, bytes.clone()));
    assert_eq!(
        server.read(&id, "/workspace/deep/er/data.bin").await,
        (200, bytes),
        "an absolute path inside is the same file"
    );
    assert_eq!(
        server.sh(&id, "sha256sum deep/er/data.bin | cut -c1-64").await.trim(),
        crate::common::sha256(&binary(300_000))
    );
    server.sh(&id, "ln -s deep/er/data.bin link; ln -s deep dirlink").await;
    let (status, listing) = server.list(&id, "").await;
    assert_eq!(status, 200, "{listing}");
    let kinds: Vec<(&str, &str)> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("deep", "dir"), ("dirlink", "symlink"), ("link", "symlink")]);
    assert_eq!(server.read(&id, "link").await.1.len(), 300_000, "a symlink inside /workspace is followed");
    assert_eq!(names(&server.list(&id, "dirlink/er").await.1), ["data.bin"]);
    // Written over: the new bytes, all of them.
    assert_eq!(server.write(&id, "deep/er/data.bin", "short").await.0, 200);
    assert_eq!(server.read(&id, "deep/er/data.bin").await, (200, b"short".to_vec()));
    server.delete(&id).await;
}

#[tokio::test]
async fn directories_and_missing_files_are_told_apart_from_files() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "mkdir -p dir/inner; echo x > file").await;
    let (status, reply) = server.read_refused(&id, "dir").await;
    assert_eq!((status, code(&reply)), (400, "bad_path"), "reading a directory: {reply}");
    assert!(message(&reply).contains("directory"), "{reply}");
    let (status, reply) = server.write(&id, "dir", "x").await;
    assert_eq!((status, code(&reply)), (400, "bad_path"), "writing over a directory: {reply}");
    let (status, reply) = server.list(&id, "file").await;
    assert_eq!((status, code(&reply)), (400, "bad_path"), "listing a file: {reply}");
    let (status, reply) = server.read_refused(&id, "missing").await;
    assert_eq!((status, code(&reply)), (404, "no_such_file"), "{reply}");
    let (status, reply) = server.list(&id, "missing").await;
    assert_eq!((status, code(&reply)), (404, "no_such_file"), "{reply}");
    let (status, reply) = server.remove(&id, "missing").await;
    assert_eq!((status, code(&reply)), (404, "no_such_file"), "{reply}");
    assert_eq!(server.remove(&id, "dir").await.0, 204, "a directory goes with what it holds");
    assert_eq!(server.remove(&id, "file").await.0, 204);
    assert_eq!(names(&server.list(&id, ".").await.1), Vec::<&str>::new());
    server.delete(&id).await;
}

#[tokio::test]
async fn removing_a_symlink_removes_the_link_and_never_its_target() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > target; ln -s target link; ln -s /etc etc-link; mkdir d; ln -s d dlink").await;
    for link in ["link", "etc-link", "dlink"] {
        let (status, reply) = server.remove(&id, link).await;
        assert_eq!(status, 204, "remove {link}: {reply}");
    }
    assert_eq!(server.sh(&id, "ls -A; cat target").await, "d\ntarget\nkept\n");
    server.delete(&id).await;
}

#[tokio::test]
async fn ranges_read_parts_of_a_file() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.write(&id, "ten.txt", "0123456789").await;
    let url = {
        let mut url = reqwest::Url::parse(&server.url(&format!("/sandboxes/{id}/files/content"))).unwrap();
        url.query_pairs_mut().append_pair("path", "ten.txt");
        url
    };
    for (range, body, content_range) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
    ] {
        let response = server.client.get(url.clone()).header("range", range).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 206, "{range}");
        assert_eq!(response.headers()["content-range"], content_range, "{range}");
        assert_eq!(response.text().await.unwrap(), body, "{range}");
    }
    let whole = server.client.get(url.clone()).send().await.unwrap();
    assert_eq!((whole.status().as_u16(), whole.headers()["accept-ranges"].to_str().unwrap()), (200, "bytes"));
    let response = server.client.get(url.clone()).header("range", "bytes=5-2").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400, "an inverted range");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_range_past_the_end_is_416() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.write(&id, "ten.txt", "0123456789").await;
    let mut url = reqwest::Url::parse(&server.url(&format!("/sandboxes/{id}/files/content"))).unwrap();
    url.query_pairs_mut().append_pair("path", "ten.txt");
    let response = server.client.get(url).header("range", "bytes=100-").send().await.unwrap();
    let (status, content_range) = (response.status().as_u16(), response.headers().get("content-range").cloned());
    server.delete(&id).await;
    assert_eq!(status, 416);
    assert_eq!(content_range.unwrap(), "bytes */10");
}

// ------------------------------------------------------------------ limits

#[tokio::test]
async fn a_file_over_the_upload_limit_is_413_both_ways_and_nothing_is_written() {
    let server = SandboxServer::spawn_with(&[("TRACEBOX_UPLOAD_MAX_FILE_BYTES", "1000")]).await;
    let id = server.sandbox(json!({})).await;
    let (status, reply) = server.write(&id, "edge.bin", binary(1000)).await;
    assert_eq!(status, 200, "exactly the limit is fine: {reply}");
    let (status, reply) = server.write(&id, "over.bin", binary(1001)).await;
    assert_eq!((status, code(&reply)), (413, "file_too_large"), "{reply}");
    assert!(message(&reply).contains("TRACEBOX_UPLOAD_MAX_FILE_BYTES"), "{reply}");
    assert_eq!(server.read(&id, "over.bin").await.0, 404, "nothing of it was written");
    // Read back: a file a command made over the limit is refused, never cut short silently.
    server.sh(&id, "head -c 2000 /dev/zero > made.bin").await;
    let (status, reply) = server.read_refused(&id, "made.bin").await;
    assert_eq!((status, code(&reply)), (413, "file_too_large"), "{reply}");
    assert!(message(&reply).contains("Range"), "the message says how to read it in parts: {reply}");
    let response = server
        .client
        .get(server.url(&format!("/sandboxes/{id}/files/content?path=made.bin")))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status().as_u16(), response.bytes().await.unwrap().len()),
        (206, 1000),
        "a part within the limit"
    );
    server.delete(&id).await;
}

#[tokio::test]
async fn disk_mb_is_a_hard_limit_that_fails_writes_inside_and_leaves_the_sandbox_working() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"disk_mb": 4})).await;
    server.write(&id, "kept.txt", "kept").await;
    let reply = server.command(&id, "head -c 6000000 /dev/zero > big; echo $?").await;
    assert_ne!(reply["stdout"], "0\n", "{reply}");
    assert!(reply["stderr"].as_str().unwrap().contains("No space left on device"), "ENOSPC inside: {reply}");
    let (_, view) = server.view(&id).await;
    let used = view["disk_used_bytes"].as_u64().unwrap();
    assert!(used <= 4 << 20, "{view}");
    assert_eq!(server.sh(&id, "cat kept.txt").await, "kept", "the sandbox still answers, its files intact");
    assert_eq!(server.result(&id, "1 + 1").await, "2");
    server.sh(&id, "rm big").await;
    assert_eq!(server.sh(&id, "head -c 1000000 /dev/zero > fits; wc -c < fits").await, "1000000\n", "room again");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_write_through_the_api_past_disk_mb_is_413_and_leaves_the_old_file_whole() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"disk_mb": 4})).await;
    server.write(&id, "kept.txt", "the old content").await;
    let (status, reply) = server.write(&id, "kept.txt", binary(5 << 20)).await;
    assert_eq!((status, code(&reply)), (413, "file_too_large"), "{reply}");
    assert!(message(&reply).contains("disk_mb"), "the message names disk_mb: {reply}");
    assert_eq!(server.read(&id, "kept.txt").await, (200, b"the old content".to_vec()), "nothing half-done");
    let (status, reply) = server.write(&id, "new.bin", binary(5 << 20)).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(server.sh(&id, "ls -A").await, "kept.txt\n", "no partial file is left");
    assert_eq!(server.sh(&id, "echo fine").await, "fine\n");
    server.delete(&id).await;
}

// ------------------------------------------------------------------ isolation

#[tokio::test]
async fn two_sandboxes_see_neither_each_others_files_nor_processes_nor_tmp() {
    let server = SandboxServer::spawn().await;
    let a = server.sandbox(json!({})).await;
    let b = server.sandbox(json!({})).await;
    assert_ne!(container_of_sandbox(&a), container_of_sandbox(&b), "a container each");
    server.sh(&a, "echo a > only-a; echo a > /tmp/only-a").await;
    server.code(&a, "secret = 'a'").await;
    let holder = {
        let (client, url) = (server.client.clone(), server.url(&format!("/sandboxes/{a}/commands")));
        tokio::spawn(async move {
            client.post(url).json(&json!({"cmd": "touch running; sleep 321", "timeout": 60})).send().await
        })
    };
    let deadline = tokio::time::Instant::now() + patience();
    while server.read(&a, "running").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "a's command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = server.sh(&b, "ls -A /workspace /tmp; cat /proc/[0-9]*/cmdline | tr '\\0' ' '").await;
    assert!(!seen.contains("only-a") && !seen.contains("running"), "b sees none of a's files: {seen}");
    assert!(!seen.contains("sleep 321") && !seen.contains("kernel.py"), "b sees none of a's processes: {seen}");
    assert_eq!(server.read(&b, "only-a").await.0, 404, "b's files API sees b's files");
    assert_eq!(server.code(&b, "secret").await["error"]["name"], "NameError", "a kernel each");
    server.delete(&a).await;
    let _ = holder.await;
    assert_eq!(server.sh(&b, "echo b lives").await, "b lives\n");
    server.delete(&b).await;
}

#[tokio::test]
async fn a_multipart_upload_lands_in_the_directory_named() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"a,b\n".to_vec()).file_name("data.csv"))
        .part("file", reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"));
    let response = server
        .client
        .post(server.url(&format!("/sandboxes/{id}/files?path=incoming")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let listing = server.list(&id, "incoming").await.1;
    server.delete(&id).await;
    assert_eq!(status, 200);
    assert_eq!(names(&listing), ["data.csv", "x.txt"]);
}
