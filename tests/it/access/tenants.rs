//! Tenants: each key's traces, files, artifacts, sandboxes and recycled containers are its own.
//! Another tenant's are 404, exactly as what does not exist; admin keys see everything.

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::{client_of, code, create_key, get, post, run, send};
use crate::common::TestServer;

/// A server with three keys: two tenants and an admin.
async fn three_keys(env: &[(&str, &str)]) -> (TestServer, reqwest::Client, reqwest::Client, reqwest::Client) {
    let server = TestServer::spawn_with(env).await;
    let alice = client_of(&create_key(&server, "alice", &[]));
    let bob = client_of(&create_key(&server, "bob", &[]));
    let admin = client_of(&create_key(&server, "root", &["--role", "admin"]));
    (server, alice, bob, admin)
}

fn ids(page: &Value) -> Vec<String> {
    page["traces"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_tenant_never_sees_lists_searches_or_exports_anothers_traces() {
    let (server, alice, bob, admin) = three_keys(&[]).await;
    // A word only alice's trace holds, in its code and in its output.
    let reply = run(&alice, &server, "print('zebracorn-' + 'alice')").await;
    let id = reply["trace_id"].as_str().unwrap().to_owned();
    run(&bob, &server, "print('bob was here')").await;

    for query in ["/traces?format=json", "/traces?format=json&q=zebracorn", "/traces?format=json&q=zebracorn-alice"] {
        let (status, page) = get(&bob, &server, query).await;
        assert_eq!(status, 200);
        assert!(!ids(&page).contains(&id), "{query} showed bob alice's trace");
    }
    let (_, page) = get(&bob, &server, "/traces?format=json").await;
    assert_eq!(page["traces"].as_array().unwrap().len(), 1, "bob sees his own run only: {page}");
    // An admin filtering by tenant does not widen a user's list.
    let (_, page) = get(&bob, &server, "/traces?format=json&tenant=alice").await;
    assert!(!ids(&page).contains(&id));

    for path in [format!("/trace/{id}"), format!("/trace/{id}/output/stdout")] {
        let (status, reply) = get(&bob, &server, &path).await;
        assert_eq!((status, code(&reply)), (404, "no_such_trace"), "{path}: {reply}");
    }
    let export = bob.get(server.url("/traces/export")).send().await.unwrap().text().await.unwrap();
    assert!(!export.contains("zebracorn"), "the export holds only bob's traces");
    assert_eq!(export.lines().count(), 1);

    let (_, page) = get(&alice, &server, "/traces?format=json&q=zebracorn").await;
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    let (status, trace) = get(&alice, &server, &format!("/trace/{id}")).await;
    assert_eq!((status, trace["tenant"].as_str()), (200, Some("alice")));

    let (_, page) = get(&admin, &server, "/traces?format=json").await;
    assert_eq!(page["traces"].as_array().unwrap().len(), 2, "the admin sees everyone's");
    let (_, page) = get(&admin, &server, "/traces?format=json&tenant=alice").await;
    assert_eq!(ids(&page), std::slice::from_ref(&id), "and filters by tenant");
    assert_eq!(get(&admin, &server, &format!("/trace/{id}")).await.0, 200);
}

async fn upload(client: &reqwest::Client, server: &TestServer, name: &str, bytes: &[u8]) -> (u16, Value) {
    let form = Form::new().part("file", Part::bytes(bytes.to_vec()).file_name(name.to_owned()));
    let response = client.post(server.url("/upload")).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_tenants_files_are_its_own_under_the_same_names() {
    let (server, alice, bob, admin) = three_keys(&[]).await;
    let (status, stored) = upload(&alice, &server, "data.csv", b"alice's rows").await;
    assert_eq!(status, 200, "{stored}");
    // Bob may have a data.csv of his own: the name is not numbered, nothing tells him alice has one.
    let (status, stored) = upload(&bob, &server, "data.csv", b"bob's rows").await;
    assert_eq!((status, stored["files"][0]["name"].as_str()), (200, Some("data.csv")), "{stored}");

    let (_, listed) = get(&bob, &server, "/files").await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1);
    let bytes = bob.get(server.url("/download/data.csv")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"bob's rows");
    let reply = run_with_file(&bob, &server).await;
    assert_eq!(reply["stdout"], "bob's rows", "a run's files are its tenant's");
    let reply = run_with_file(&alice, &server).await;
    assert_eq!(reply["stdout"], "alice's rows");

    // Bob deletes his; alice's stays, and bob cannot reach it by name.
    assert_eq!(send(&bob, &server, Method::DELETE, "/files/data.csv", None).await.0, 204);
    assert_eq!(get(&bob, &server, "/download/data.csv").await.0, 404);
    assert_eq!(send(&bob, &server, Method::DELETE, "/files/data.csv", None).await.0, 404);
    let (status, reply) = post(&bob, &server, "/execute", json!({"code": "1", "files": ["data.csv"]})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_file"), "{reply}");
    assert_eq!(get(&alice, &server, "/download/data.csv").await.0, 200);
    // The directory of tenants' files is no file's name.
    let (status, reply) = upload(&bob, &server, "tenants", b"x").await;
    assert_eq!((status, code(&reply)), (400, "invalid_file_name"), "{reply}");
    // The admin reaches a tenant's files by naming it.
    let (_, listed) = get(&admin, &server, "/files?tenant=alice").await;
    assert_eq!(listed["files"][0]["name"], "data.csv");
}

async fn run_with_file(client: &reqwest::Client, server: &TestServer) -> Value {
    let body = json!({"code": "print(open('data.csv').read(), end='')", "files": ["data.csv"]});
    let (status, reply) = post(client, server, "/execute", body).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

#[tokio::test]
async fn a_runs_artifacts_are_its_tenants() {
    let (server, alice, bob, _) = three_keys(&[]).await;
    let program = "import os; os.makedirs('out', exist_ok=True); open('out/r.txt', 'w').write('mine')";
    let reply = run(&alice, &server, program).await;
    let url = reply["artifacts"][0]["url"].as_str().expect("an artifact").to_owned();
    assert_eq!(alice.get(server.url(&url)).send().await.unwrap().status(), 200);
    let (status, reply) = get(&bob, &server, &url).await;
    assert_eq!((status, code(&reply)), (404, "no_such_file"), "as if the run had none: {reply}");
}

#[tokio::test]
async fn a_tenant_cannot_see_use_or_delete_anothers_sandbox() {
    let (server, alice, bob, admin) = three_keys(&[]).await;
    let (status, made) = post(&alice, &server, "/sandboxes", json!({})).await;
    assert_eq!(status, 201, "{made}");
    let id = made["sandbox_id"].as_str().unwrap().to_owned();
    let (status, mine) = post(&bob, &server, "/sandboxes", json!({})).await;
    assert_eq!(status, 201, "{mine}");

    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/sandboxes/{id}"), None),
        (Method::POST, format!("/sandboxes/{id}/commands"), Some(json!({"cmd": "echo hi"}))),
        (Method::POST, format!("/sandboxes/{id}/code"), Some(json!({"code": "1"}))),
        (Method::GET, format!("/sandboxes/{id}/files"), None),
        (Method::GET, format!("/sandboxes/{id}/files/content?path=x"), None),
        (Method::POST, format!("/sandboxes/{id}/tools/shell"), Some(json!({"command": "id"}))),
        (Method::GET, format!("/sandboxes/{id}/trajectory"), None),
        (Method::GET, format!("/sandboxes/{id}/snapshots"), None),
        (Method::POST, format!("/sandboxes/{id}/pause"), None),
        (Method::POST, format!("/sandboxes/{id}/reset"), Some(json!({}))),
        (Method::DELETE, format!("/sandboxes/{id}"), None),
    ];
    let (_, unknown) = get(&bob, &server, "/sandboxes/sbx_doesnotexist0000000000000").await;
    for (method, path, body) in attempts {
        let (status, reply) = send(&bob, &server, method.clone(), &path, body).await;
        assert_eq!((status, code(&reply)), (404, "no_such_sandbox"), "{method} {path}: {reply}");
        // Word for word what a sandbox that does not exist answers (bar its id).
        let shape = |reply: &Value| reply["error"]["message"].as_str().unwrap().replace(&id, "ID");
        assert_eq!(shape(&reply), shape(&unknown).replace("sbx_doesnotexist0000000000000", "ID"));
    }
    let (_, listed) = get(&bob, &server, "/sandboxes").await;
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 1, "bob lists his own: {listed}");
    let (status, cleaned) = post(&bob, &server, "/sandboxes/cleanup", json!({})).await;
    assert_eq!((status, cleaned["removed"].as_u64()), (200, Some(1)), "bob's cleanup removes only his");

    let (status, view) = get(&alice, &server, &format!("/sandboxes/{id}")).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("running")), "alice's is untouched: {view}");
    let (_, listed) = get(&admin, &server, "/sandboxes").await;
    assert_eq!(listed["sandboxes"][0]["sandbox_id"], id.as_str(), "the admin sees it");
    assert_eq!(send(&admin, &server, Method::DELETE, &format!("/sandboxes/{id}"), None).await.0, 204);
}

/// The container a run took from the pool, as its trace (read by an admin) records it.
async fn container_of(admin: &reqwest::Client, server: &TestServer, reply: &Value) -> String {
    let (_, trace) = get(admin, server, &format!("/trace/{}", reply["trace_id"].as_str().unwrap())).await;
    let took = trace["events"].as_array().unwrap().iter().find(|e| e["name"] == "pool.took");
    took.unwrap_or_else(|| panic!("the run took no warm container: {trace}"))["detail"]["container"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn recycled_containers_serve_one_tenant_only_whatever_it_asks() {
    let env = [("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "1")];
    let (server, alice, bob, admin) = three_keys(&env).await;
    let first = run(&alice, &server, "print(1)").await;
    let alices = container_of(&admin, &server, &first).await;
    // Alice's container is back on her shelf, idle, when bob runs: he must not get it.
    crate::common::pool::wait_idle(&server, "python-recycle-alice", 1).await;
    let his = run(&bob, &server, "print(2)").await;
    assert_ne!(container_of(&admin, &server, &his).await, alices, "bob never gets alice's container");
    let again = run(&alice, &server, "print(3)").await;
    assert_eq!(container_of(&admin, &server, &again).await, alices, "alice gets hers back");

    // Naming another tenant's containers is refused, naming whose the key's are.
    let body = json!({"code": "1", "isolation": "recycle", "tenant": "alice"});
    let (status, reply) = post(&bob, &server, "/execute", body).await;
    assert_eq!((status, code(&reply)), (400, "invalid_isolation"), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("\"bob\""), "{reply}");
}

#[tokio::test]
async fn a_user_key_clones_no_repository_from_the_servers_own_disk() {
    let (server, alice, _, admin) = three_keys(&[]).await;
    // Any repository the server's user can read: its own source tree, say.
    let here = env!("CARGO_MANIFEST_DIR");
    for url in [here.to_owned(), format!("file://{here}"), "ssh://git@127.0.0.1/repo.git".to_owned()] {
        let (status, reply) = post(&alice, &server, "/sandboxes", json!({"repo": {"url": url}})).await;
        assert_eq!((status, code(&reply)), (403, "forbidden"), "{url}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("https://"), "{reply}");
    }
    let (_, listed) = get(&admin, &server, "/sandboxes").await;
    assert!(listed["sandboxes"].as_array().unwrap().is_empty(), "nothing was made: {listed}");
}

#[tokio::test]
async fn a_tenant_in_a_query_is_a_name_never_a_path() {
    let (server, alice, _, admin) = three_keys(&[]).await;
    // The tenants' directory exists once someone uploaded.
    assert_eq!(upload(&alice, &server, "a.txt", b"a").await.0, 200);
    for path in [
        "/files?tenant=../../traces",
        "/download/token-secret?tenant=../../traces",
        "/download/passwd?tenant=../../../../../etc",
        "/traces?format=json&tenant=..%2F..",
        "/sandboxes?tenant=a%20b",
    ] {
        let (status, reply) = get(&admin, &server, path).await;
        assert_eq!((status, code(&reply)), (400, "invalid_query"), "{path}: {reply}");
    }
    let (status, reply) = send(&admin, &server, Method::DELETE, "/files/traces.db?tenant=../../traces", None).await;
    assert_eq!((status, code(&reply)), (400, "invalid_query"), "{reply}");
    assert!(server.data_dir.join("traces/traces.db").exists());
}

#[tokio::test]
async fn a_schedule_and_its_tasks_are_its_tenants_and_only_an_admin_drains_a_node() {
    let (server, alice, bob, admin) = three_keys(&[]).await;
    let (status, schedule) =
        post(&alice, &server, "/schedule", json!({"tasks": [{"code": "print('alice task')"}]})).await;
    assert_eq!(status, 200, "{schedule}");
    let schedule_id = schedule["trace_id"].as_str().unwrap().to_owned();
    let task_id = schedule["results"][0]["trace_id"].as_str().unwrap().to_owned();
    for id in [&schedule_id, &task_id] {
        let (status, reply) = get(&bob, &server, &format!("/trace/{id}")).await;
        assert_eq!((status, code(&reply)), (404, "no_such_trace"), "bob reads none of alice's schedule: {reply}");
        let (status, trace) = get(&alice, &server, &format!("/trace/{id}")).await;
        assert_eq!((status, trace["tenant"].as_str()), (200, Some("alice")), "{trace}");
    }

    // Where work goes is for anyone with a key; changing it is for an admin.
    let (status, nodes) = get(&bob, &server, "/nodes").await;
    assert_eq!((status, nodes["nodes"][0]["name"].as_str()), (200, Some("local")), "{nodes}");
    assert!(nodes["nodes"][0].get("docker_host").is_none(), "an engine's address is the operator's: {nodes}");
    let (_, nodes) = get(&admin, &server, "/nodes").await;
    assert_eq!(nodes["nodes"][0]["docker_host"], "unix:///var/run/docker.sock", "{nodes}");
    let (status, refused) = post(&bob, &server, "/nodes/local/drain", json!({})).await;
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    let (status, drained) = post(&admin, &server, "/nodes/local/drain", json!({})).await;
    assert_eq!((status, drained["state"].as_str()), (200, Some("draining")), "{drained}");
    let (status, refused) = post(&bob, &server, "/execute", json!({"code": "print(1)"})).await;
    assert_eq!((status, code(&refused)), (503, "node_down"), "a drained server's only node takes nothing: {refused}");
    let (status, _) = post(&admin, &server, "/nodes/local/undrain", json!({})).await;
    assert_eq!(status, 200);
    let anonymous = server.client.get(server.url("/nodes")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401, "no key, no nodes");
}
