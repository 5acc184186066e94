//! Nodes: one tracebox over three real Docker engines — the main one and two extra `dockerd`
//! started by `scripts/nodes.sh` (own sockets, data roots, exec roots; no bridge, no iptables).
//! Placement spreads work and labels pin it; a stopped engine is marked down and work goes to the
//! others; a run whose node fails before its program started (its container lost before it took
//! the program included) runs elsewhere with the attempt recorded; a sandbox waits for its node;
//! nothing is left on any engine.
//!
//! These tests stop and start the extra engines, so they take turns (`ENGINES`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, patience};

/// The extra engines the tests drive.
const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";

/// One test at a time stops and starts engines.
static ENGINES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nodes.sh")
}

/// Run `scripts/nodes.sh ARGS`, failing the test with its output when it fails.
fn nodes_sh(args: &[&str]) -> String {
    let output = Command::new("bash").arg(script()).args(args).output().expect("scripts/nodes.sh runs");
    assert!(
        output.status.success(),
        "scripts/nodes.sh {args:?} failed (these tests need root and Debian's docker.io):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn host_of(node: &str) -> String {
    nodes_sh(&["host", node])
}

/// Containers of `instance` on the engine at `host`, running or not.
fn containers_on(host: &str, instance: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["--host", host, "ps", "-aq", "--filter", &format!("label=tracebox.instance={instance}")])
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

/// A server over three nodes: `local` (the main engine, zone=home), node-a (zone=lab, ssd=yes)
/// and node-b (zone=lab), its heartbeats `heartbeat_secs` apart; the engines are up first.
struct Cluster {
    server: TestServer,
    hosts: Vec<(String, String)>,
    _config: tempfile::TempDir,
}

impl Cluster {
    async fn start(heartbeat_secs: f64, extra: &[(&str, &str)]) -> Cluster {
        Cluster::start_sized(heartbeat_secs, extra, 4).await
    }

    /// As [`Cluster::start`], node-a taking `node_a_runs` runs at once.
    async fn start_sized(heartbeat_secs: f64, extra: &[(&str, &str)], node_a_runs: usize) -> Cluster {
        nodes_sh(&["up", NODE_A, NODE_B]);
        let hosts = vec![
            ("local".to_owned(), "unix:///var/run/docker.sock".to_owned()),
            (NODE_A.to_owned(), host_of(NODE_A)),
            (NODE_B.to_owned(), host_of(NODE_B)),
        ];
        let config = tempfile::tempdir().unwrap();
        let path = config.path().join("tracebox.toml");
        let toml = format!(
            "node_heartbeat_secs = {heartbeat_secs}\n\n\
             [[nodes]]\nname = \"local\"\ndocker_host = \"{}\"\nlabels = {{ zone = \"home\" }}\nmax_concurrent_runs = 4\n\n\
             [[nodes]]\nname = \"{NODE_A}\"\ndocker_host = \"{}\"\nlabels = {{ zone = \"lab\", ssd = \"yes\" }}\nmax_concurrent_runs = {node_a_runs}\n\n\
             [[nodes]]\nname = \"{NODE_B}\"\ndocker_host = \"{}\"\nlabels = {{ zone = \"lab\" }}\nmax_concurrent_runs = 4\n",
            hosts[0].1, hosts[1].1, hosts[2].1
        );
        std::fs::write(&path, toml).unwrap();
        let config_path = path.display().to_string();
        let mut env = vec![("TRACEBOX_CONFIG", config_path.as_str())];
        env.extend_from_slice(extra);
        let server = TestServer::spawn_with(&env).await;
        Cluster { server, hosts, _config: config }
    }

    async fn nodes(&self) -> Vec<Value> {
        let (status, body) = self.server.get_json("/nodes").await;
        assert_eq!(status, 200, "{body}");
        body["nodes"].as_array().unwrap().clone()
    }

    async fn state_of(&self, node: &str) -> String {
        let nodes = self.nodes().await;
        let found = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("{node} in {nodes:?}"));
        found["state"].as_str().unwrap().to_owned()
    }

    async fn wait_state(&self, node: &str, state: &str) {
        let deadline = tokio::time::Instant::now() + patience();
        while self.state_of(node).await != state {
            assert!(tokio::time::Instant::now() < deadline, "{node} never became {state}: {:?}", self.nodes().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn schedule(&self, body: Value) -> Value {
        let (status, reply) = self.server.post_json("/schedule", body).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Stop the server and check that no engine holds any of its containers.
    async fn stop(mut self) {
        let instance = self.server.instance_id().await;
        self.server.stop();
        for (node, host) in &self.hosts {
            let left = containers_on(host, &instance);
            assert!(left.is_empty(), "{node} kept the server's containers: {left:?}");
        }
    }
}

/// Each task's node, in order.
fn nodes_of(schedule: &Value) -> Vec<String> {
    schedule["results"].as_array().unwrap().iter().map(|r| r["node"].as_str().unwrap_or("-").to_owned()).collect()
}

fn hello_tasks(n: usize, extra: Value) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut task = json!({"code": format!("print({i})")});
            task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            task
        })
        .collect()
}

#[tokio::test]
async fn round_robin_spreads_a_schedule_over_every_node_and_labels_pin_tasks() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    let nodes = cluster.nodes().await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for node in &nodes {
        assert_eq!(node["state"], "up", "{node}");
        assert!(node["engine_version"].as_str().is_some_and(|v| !v.is_empty()), "{node}");
        assert_eq!(node["capacity"]["runs"], 4, "{node}");
    }

    let spread = cluster.schedule(json!({"tasks": hello_tasks(9, json!({})), "strategy": "round_robin"})).await;
    let ran = nodes_of(&spread);
    for node in ["local", NODE_A, NODE_B] {
        assert_eq!(ran.iter().filter(|n| *n == node).count(), 3, "round robin over three nodes: {ran:?}");
    }
    for (i, result) in spread["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["status"], "success", "{result}");
        assert_eq!(result["stdout"], format!("{i}\n"), "results come back in the order sent");
    }

    // The schedule is a trace whose children are its tasks, each naming its node.
    let schedule_trace = cluster.server.trace(spread["trace_id"].as_str().unwrap()).await;
    assert_eq!(schedule_trace["kind"], "schedule", "{schedule_trace}");
    let first = spread["results"][0]["trace_id"].as_str().unwrap();
    let task_trace = cluster.server.trace(first).await;
    assert_eq!(task_trace["parent_id"], spread["trace_id"], "{task_trace}");
    assert_eq!(task_trace["output"]["node"], spread["results"][0]["node"], "{task_trace}");

    let pinned = cluster.schedule(json!({"tasks": hello_tasks(4, json!({"labels": {"ssd": "yes"}}))})).await;
    assert_eq!(nodes_of(&pinned), [NODE_A; 4], "only node-a carries ssd=yes");
    let lab = cluster
        .schedule(json!({"tasks": hello_tasks(4, json!({"labels": {"zone": "lab"}})), "strategy": "round_robin"}))
        .await;
    assert!(nodes_of(&lab).iter().all(|n| n == NODE_A || n == NODE_B), "{:?}", nodes_of(&lab));

    let (status, refused) = cluster.server.execute(json!({"code": "print(1)", "labels": {"zone": "moon"}})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("no_node_matches")), "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("zone=moon") && message.contains("node-a [ssd=yes, zone=lab]"), "{message}");

    // In a schedule, a task no node fits is refused on its own; the others run.
    let mixed = cluster
        .schedule(json!({"tasks": [{"code": "print(1)", "labels": {"zone": "moon"}}, {"code": "print(2)", "labels": {"zone": "home"}}]}))
        .await;
    assert_eq!(mixed["results"][0]["error"]["code"], "no_node_matches", "{mixed}");
    assert_eq!(
        (mixed["results"][1]["node"].as_str(), mixed["results"][1]["stdout"].as_str()),
        (Some("local"), Some("2\n"))
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_stopped_engine_goes_down_its_work_goes_to_the_others_and_it_comes_back() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    nodes_sh(&["stop", NODE_B]);
    let stopped = tokio::time::Instant::now();
    cluster.wait_state(NODE_B, "down").await;
    eprintln!("node-b marked down {:?} after its engine stopped (heartbeat 0.5 s)", stopped.elapsed());
    let down = cluster.nodes().await.into_iter().find(|n| n["name"] == NODE_B).unwrap();
    assert!(down["error"].as_str().is_some_and(|e| !e.is_empty()), "a down node says why: {down}");

    // Every task still succeeds, on the nodes that are up; a task only node-b could take is 503.
    let spread = cluster.schedule(json!({"tasks": hello_tasks(6, json!({})), "strategy": "round_robin"})).await;
    for result in spread["results"].as_array().unwrap() {
        assert_eq!(result["status"], "success", "{result}");
        assert_ne!(result["node"], NODE_B, "{result}");
    }
    let (status, refused) =
        cluster.server.execute(json!({"code": "print(1)", "labels": {"zone": "lab"}, "strategy": "random"})).await;
    assert_eq!(status, 200, "node-a still takes zone=lab: {refused}");
    let (status, refused) =
        cluster.server.execute(json!({"code": "print(1)", "labels": {"zone": "lab", "ssd": "yes"}})).await;
    assert_eq!(status, 200, "{refused}");
    nodes_sh(&["stop", NODE_A]);
    cluster.wait_state(NODE_A, "down").await;
    let (status, refused) = cluster.server.execute(json!({"code": "print(1)", "labels": {"zone": "lab"}})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("node_down")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("node-a: down"), "{refused}");

    nodes_sh(&["start", NODE_A]);
    nodes_sh(&["start", NODE_B]);
    cluster.wait_state(NODE_A, "up").await;
    cluster.wait_state(NODE_B, "up").await;
    let back = cluster.schedule(json!({"tasks": hello_tasks(6, json!({})), "strategy": "round_robin"})).await;
    assert!(nodes_of(&back).iter().any(|n| n == NODE_B), "node-b takes work again: {:?}", nodes_of(&back));
    cluster.stop().await;
}

#[tokio::test]
async fn a_run_whose_node_fails_before_its_program_starts_runs_elsewhere_with_the_attempt_recorded() {
    let _turn = ENGINES.lock().await;
    // Heartbeats an hour apart: node-b is still `up` to the server when its engine is gone, so
    // the run placed there fails at the start and must go on.
    let cluster = Cluster::start(3600.0, &[]).await;
    nodes_sh(&["stop", NODE_B]);
    let mut moved = None;
    for _ in 0..4 {
        let (status, reply) = cluster
            .server
            .execute(json!({"code": "print('ran once')", "labels": {"zone": "lab"}, "strategy": "round_robin"}))
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["stdout"], "ran once\n");
        assert_eq!(reply["node"], NODE_A, "{reply}");
        if !reply["attempts"].as_array().is_none_or(Vec::is_empty) {
            moved = Some(reply);
        }
    }
    let moved = moved.expect("round robin placed a run on node-b, whose engine is stopped");
    assert_eq!(moved["attempts"][0]["node"], NODE_B, "{moved}");
    let said = moved["attempts"][0]["error"].as_str().unwrap();
    assert!(said.contains("node node-b") && !said.contains(&host_of(NODE_B)), "named, not located: {moved}");
    let trace = cluster.server.trace(moved["trace_id"].as_str().unwrap()).await;
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(events.contains(&"node.failed") && events.contains(&"node.placed"), "{events:?}");
    assert_eq!(trace["output"]["attempts"][0]["node"], NODE_B, "{trace}");

    nodes_sh(&["start", NODE_B]);
    cluster.stop().await;
}

#[tokio::test]
async fn a_run_failing_over_to_a_full_node_waits_for_its_slot_there() {
    let _turn = ENGINES.lock().await;
    // node-a runs one program at a time; node-b's engine is stopped but still `up` to the server.
    let cluster = Cluster::start_sized(3600.0, &[], 1).await;
    nodes_sh(&["stop", NODE_B]);
    let run = |code: &'static str| {
        cluster.server.execute(json!({"code": code, "labels": {"zone": "lab"}, "strategy": "round_robin"}))
    };
    // Round robin over node-a and node-b: one run holds node-a's slot for a second, the other
    // fails on node-b and must wait for node-a.
    let (first, second) = tokio::join!(run("import time; time.sleep(1); print('ran')"), run("print('ran')"));
    let mut moved = Vec::new();
    for (status, reply) in [first, second] {
        assert_eq!(
            (status, reply["stdout"].as_str(), reply["node"].as_str()),
            (200, Some("ran\n"), Some(NODE_A)),
            "{reply}"
        );
        if reply["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            moved.push(reply);
        }
    }
    let [moved] = moved.as_slice() else { panic!("one run was placed on node-b first: {moved:?}") };
    assert_eq!(moved["attempts"][0]["node"], NODE_B, "{moved}");
    let trace = cluster.server.trace(moved["trace_id"].as_str().unwrap()).await;
    let placed: Vec<&Value> = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "node.placed")
        .map(|e| &e["detail"])
        .collect();
    assert_eq!(placed.len(), 2, "placed on node-b, then on node-a: {placed:?}");
    assert_eq!((placed[1]["node"].as_str(), placed[1]["attempt"].as_u64()), (Some(NODE_A), Some(2)), "{placed:?}");
    nodes_sh(&["start", NODE_B]);
    cluster.stop().await;
}

#[tokio::test]
async fn a_run_whose_container_is_lost_before_it_took_the_program_runs_once_elsewhere() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(3600.0, &[("TRACEBOX_POOL_SIZE", "1")]).await;
    let instance = cluster.server.instance_id().await;
    let host_b = host_of(NODE_B);
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let nodes = cluster.nodes().await;
        let b = nodes.iter().find(|n| n["name"] == NODE_B).expect("node-b listed");
        // One warm container per language.
        if b["pool"]["idle"].as_u64().is_some_and(|idle| idle >= 2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node-b's pool never warmed: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // node-b's warm containers are frozen: the run placed there is handed its program, which no
    // supervisor takes; then they are killed from outside, as a dying engine would lose them.
    let warm = containers_on(&host_b, &instance);
    let docker_b = |verb: &str| {
        let status = Command::new("docker").args(["--host", &host_b, verb]).args(&warm).status().unwrap();
        assert!(status.success(), "docker {verb} on node-b");
    };
    docker_b("pause");
    let run = || {
        cluster
            .server
            .execute(json!({"code": "print('ran once')", "labels": {"zone": "lab"}, "strategy": "round_robin"}))
    };
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        docker_b("kill");
    };
    // Round robin over node-a and node-b: one of the two runs is placed on node-b.
    let ((first, second), ()) = tokio::join!(async { tokio::join!(run(), run()) }, killer);
    let mut moved = Vec::new();
    for (status, reply) in [first, second] {
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["stdout"], "ran once\n", "the program ran once, whole: {reply}");
        assert_eq!(reply["node"], NODE_A, "{reply}");
        if reply["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            moved.push(reply);
        }
    }
    let [moved] = moved.as_slice() else { panic!("exactly one run was placed on node-b first: {moved:?}") };
    assert_eq!(moved["attempts"][0]["node"], NODE_B, "{moved}");
    let why = moved["attempts"][0]["error"].as_str().unwrap();
    assert!(why.contains("stopped before it took the program"), "{why}");
    let trace = cluster.server.trace(moved["trace_id"].as_str().unwrap()).await;
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    let sent = events.iter().filter(|e| **e == "program.sent").count();
    assert_eq!(sent, 2, "the program was sent to node-b's container, then to node-a's: {events:?}");
    assert!(events.contains(&"node.failed"), "{events:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn runs_waiting_for_a_full_node_hold_no_server_slot_that_work_for_another_node_needs() {
    let _turn = ENGINES.lock().await;
    // node-a runs one program at a time, the others four each: the server runs nine at once.
    let cluster = Cluster::start_sized(2.0, &[], 1).await;
    let on_node_a = (0..10).map(|_| {
        cluster.server.execute(json!({"code": "import time; time.sleep(1); print('lab')", "labels": {"ssd": "yes"}}))
    });
    let elsewhere = async {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let nodes = cluster.nodes().await;
            let a = nodes.iter().find(|n| n["name"] == NODE_A).expect("node-a listed");
            if a["running"]["runs"] == 1 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "node-a never ran one: {a}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The other nine runs for node-a are waiting for its one slot by now: as many as the
        // server runs at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.server.execute(json!({"code": "print('home')", "labels": {"zone": "home"}})).await
    };
    let (pinned, home) = tokio::join!(futures_util::future::join_all(on_node_a), elsewhere);
    for (status, reply) in pinned {
        assert_eq!((status, reply["stdout"].as_str()), (200, Some("lab\n")), "{reply}");
        assert_eq!(reply["node"], NODE_A, "{reply}");
    }
    let (status, home) = home;
    assert_eq!((status, home["node"].as_str()), (200, Some("local")), "{home}");
    let trace = cluster.server.trace(home["trace_id"].as_str().unwrap()).await;
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(
        !events.contains(&"queue.waited"),
        "a server slot was free (runs waiting for node-a hold none), so it was taken at once: {events:?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_drained_node_gets_no_new_work_until_undrained_and_only_an_admin_drains() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    let (status, view) = cluster.server.post_json(&format!("/nodes/{NODE_A}/drain"), json!({})).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("draining")), "{view}");
    let spread = cluster.schedule(json!({"tasks": hello_tasks(6, json!({})), "strategy": "round_robin"})).await;
    assert!(!nodes_of(&spread).iter().any(|n| n == NODE_A), "{:?}", nodes_of(&spread));
    let (status, _) = cluster.server.post_json(&format!("/nodes/{NODE_A}/undrain"), json!({})).await;
    assert_eq!(status, 200);
    let spread = cluster.schedule(json!({"tasks": hello_tasks(6, json!({})), "strategy": "round_robin"})).await;
    assert!(nodes_of(&spread).iter().any(|n| n == NODE_A), "{:?}", nodes_of(&spread));
    let (status, missing) = cluster.server.post_json("/nodes/node-z/drain", json!({})).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("no_such_node")), "{missing}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_schedule_refuses_no_tasks_too_many_tasks_and_an_unknown_strategy() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    let (status, empty) = cluster.server.post_json("/schedule", json!({"tasks": []})).await;
    assert_eq!((status, empty["error"]["code"].as_str()), (400, Some("invalid_schedule")), "{empty}");
    let too_many: Vec<Value> = (0..=tracebox::schedule::MAX_TASKS).map(|_| json!({"code": "1"})).collect();
    let (status, refused) = cluster.server.post_json("/schedule", json!({"tasks": too_many})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_schedule")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("1 to 1000"), "{refused}");
    let huge = "#".repeat(8 * 1024 * 1024);
    let (status, refused) = cluster.server.post_json("/schedule", json!({"tasks": [{"code": huge}]})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (413, Some("body_too_large")), "{refused}");
    let (status, strategy) =
        cluster.server.post_json("/schedule", json!({"tasks": [{"code": "1"}], "strategy": "fastest"})).await;
    assert_eq!((status, strategy["error"]["code"].as_str()), (400, Some("invalid_placement")), "{strategy}");
    let (status, task) =
        cluster.server.post_json("/schedule", json!({"tasks": [{"code": "1"}, {"code": "1", "timeout": 0}]})).await;
    assert_eq!(status, 400, "{task}");
    assert!(task["error"]["message"].as_str().unwrap().starts_with("task 2: "), "the bad task is named: {task}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_sandbox_stays_on_its_node_answers_503_while_it_is_down_and_works_again_after() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    let (status, made) = cluster.server.post_json("/sandboxes", json!({"labels": {"zone": "lab"}})).await;
    assert_eq!(status, 201, "{made}");
    let id = made["sandbox_id"].as_str().unwrap().to_owned();
    let node = made["node"].as_str().unwrap().to_owned();
    assert!(node == NODE_A || node == NODE_B, "{made}");
    let command = |cmd: &str| json!({"cmd": cmd});
    let (status, wrote) =
        cluster.server.post_json(&format!("/sandboxes/{id}/commands"), command("echo kept > note.txt")).await;
    assert_eq!(status, 200, "{wrote}");

    nodes_sh(&["stop", &node]);
    let (status, down) = cluster.server.post_json(&format!("/sandboxes/{id}/commands"), command("cat note.txt")).await;
    assert_eq!((status, down["error"]["code"].as_str()), (503, Some("node_down")), "{down}");
    assert!(down["error"]["message"].as_str().unwrap().contains(&node), "{down}");
    let (status, view) = cluster.server.get_json(&format!("/sandboxes/{id}")).await;
    assert_eq!((status, view["node"].as_str()), (200, Some(node.as_str())), "its record is there: {view}");

    nodes_sh(&["start", &node]);
    cluster.wait_state(&node, "up").await;
    let deadline = tokio::time::Instant::now() + patience();
    let read = loop {
        let (status, read) =
            cluster.server.post_json(&format!("/sandboxes/{id}/commands"), command("cat note.txt")).await;
        if status == 200 {
            break read;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sandbox never answered again: {status} {read}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(read["stdout"], "kept\n", "its files outlived its engine's restart: {read}");
    let gone = cluster.server.client.delete(cluster.server.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 204);
    cluster.stop().await;
}

#[tokio::test]
async fn a_paused_sandbox_whose_node_is_down_resumes_on_another_that_carries_its_labels() {
    let _turn = ENGINES.lock().await;
    let cluster = Cluster::start(0.5, &[]).await;
    let make = |labels: Value| json!({"labels": labels});
    let (status, lab) = cluster.server.post_json("/sandboxes", make(json!({"zone": "lab"}))).await;
    assert_eq!(status, 201, "{lab}");
    let (status, ssd) = cluster.server.post_json("/sandboxes", make(json!({"ssd": "yes"}))).await;
    assert_eq!((status, ssd["node"].as_str()), (201, Some(NODE_A)), "{ssd}");
    let lab_id = lab["sandbox_id"].as_str().unwrap().to_owned();
    let lab_node = lab["node"].as_str().unwrap().to_owned();
    let ssd_id = ssd["sandbox_id"].as_str().unwrap().to_owned();
    for id in [&lab_id, &ssd_id] {
        let (status, _) =
            cluster.server.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "echo moved > f"})).await;
        assert_eq!(status, 200);
        let (status, paused) = cluster.server.post_json(&format!("/sandboxes/{id}/pause"), json!({})).await;
        assert_eq!(status, 200, "{paused}");
    }
    // The lab sandbox's node goes down: it resumes on the other lab node, never on local.
    nodes_sh(&["stop", &lab_node]);
    cluster.wait_state(&lab_node, "down").await;
    let (status, resumed) = cluster.server.post_json(&format!("/sandboxes/{lab_id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{resumed}");
    let other = if lab_node == NODE_A { NODE_B } else { NODE_A };
    assert_eq!(resumed["node"], other, "{resumed}");
    let (status, read) =
        cluster.server.post_json(&format!("/sandboxes/{lab_id}/commands"), json!({"cmd": "cat f"})).await;
    assert_eq!((status, read["stdout"].as_str()), (200, Some("moved\n")), "{read}");
    nodes_sh(&["start", &lab_node]);
    cluster.wait_state(&lab_node, "up").await;

    // Only node-a carries ssd=yes: with it down, the resume waits (503), it does not break the pin.
    nodes_sh(&["stop", NODE_A]);
    cluster.wait_state(NODE_A, "down").await;
    let url = cluster.server.url(&format!("/sandboxes/{ssd_id}/resume"));
    let response = cluster.server.client.post(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"), "a node coming back is worth a retry");
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "node_down", "{refused}");
    nodes_sh(&["start", NODE_A]);
    cluster.wait_state(NODE_A, "up").await;
    let (status, resumed) = cluster.server.post_json(&format!("/sandboxes/{ssd_id}/resume"), json!({})).await;
    assert_eq!((status, resumed["node"].as_str()), (200, Some(NODE_A)), "{resumed}");
    for id in [&lab_id, &ssd_id] {
        let gone = cluster.server.client.delete(cluster.server.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
        assert_eq!(gone.status().as_u16(), 204);
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_sandbox_made_before_nodes_were_configured_is_found_on_the_node_its_engine_became() {
    // The main engine only: no turn of the extra engines needed.
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut before = TestServer::spawn_on(&data).await;
    let (status, made) = before.post_json("/sandboxes", json!({})).await;
    assert_eq!((status, made["node"].as_str()), (201, Some("local")), "{made}");
    let id = made["sandbox_id"].as_str().unwrap().to_owned();
    let (status, _) = before.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "echo kept > f"})).await;
    assert_eq!(status, 200);
    before.stop();
    // Its container is the next server's to find: no leak check on this one.
    std::mem::forget(before);

    let config = temp.path().join("tracebox.toml");
    std::fs::write(&config, "[[nodes]]\nname = \"main\"\ndocker_host = \"unix:///var/run/docker.sock\"\n").unwrap();
    let config = config.display().to_string();
    let after = TestServer::spawn_on_with(&data, &[("TRACEBOX_CONFIG", config.as_str())]).await;
    let (status, read) = after.post_json(&format!("/sandboxes/{id}/commands"), json!({"cmd": "cat f"})).await;
    assert_eq!((status, read["stdout"].as_str()), (200, Some("kept\n")), "{read}");
    let (_, view) = after.get_json(&format!("/sandboxes/{id}")).await;
    assert_eq!(view["node"], "main", "{view}");
    let gone = after.client.delete(after.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 204);
}

#[tokio::test]
async fn a_node_whose_engine_is_not_there_at_start_is_down_and_the_others_serve() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("tracebox.toml");
    let toml = "[[nodes]]\nname = \"local\"\ndocker_host = \"unix:///var/run/docker.sock\"\n\n\
                [[nodes]]\nname = \"gone\"\ndocker_host = \"unix:///nonexistent/docker.sock\"\n\
                labels = { zone = \"gone\" }\n";
    std::fs::write(&config, toml).unwrap();
    let config = config.display().to_string();
    let env = [("TRACEBOX_CONFIG", config.as_str()), ("TRACEBOX_NODE_HEARTBEAT_SECS", "0.5")];
    let server = TestServer::spawn_with(&env).await;
    let (_, nodes) = server.get_json("/nodes").await;
    let gone = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "gone").unwrap().clone();
    assert_eq!(gone["state"], "down", "{gone}");
    assert!(gone["error"].as_str().unwrap().contains("unix:///nonexistent/docker.sock"), "the admin sees why: {gone}");
    let (status, reply) = server.execute(json!({"code": "print(1)"})).await;
    assert_eq!((status, reply["node"].as_str()), (200, Some("local")), "{reply}");
    let (status, refused) = server.execute(json!({"code": "print(1)", "labels": {"zone": "gone"}})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("node_down")), "{refused}");
    let (_, health) = server.get_json("/health").await;
    assert_eq!((health["status"].as_str(), health["nodes"]["up"].as_u64()), (Some("ok"), Some(1)), "{health}");
}

#[tokio::test]
async fn a_node_over_tls_without_the_image_gets_it_copied_and_runs_there() {
    let _turn = ENGINES.lock().await;
    const PORT: &str = "23760";
    nodes_sh(&["tls-up", "node-tls", PORT]);
    let image = std::env::var("TRACEBOX_IMAGE").unwrap_or_else(|_| "tracebox-sandbox:latest".to_owned());
    let local = host_of("node-tls");
    // Whatever an earlier run left: the server must bring the image itself.
    let _ = Command::new("docker").args(["--host", &local, "rmi", "--force", &image]).output();
    let certs = "/var/lib/tracebox-nodes/certs";
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("tracebox.toml");
    let toml = format!(
        "[[nodes]]\nname = \"local\"\ndocker_host = \"unix:///var/run/docker.sock\"\n\n\
         [[nodes]]\nname = \"tls\"\ndocker_host = \"tcp://127.0.0.1:{PORT}\"\nlabels = {{ over = \"tls\" }}\n\
         tls_ca = \"{certs}/ca.pem\"\ntls_cert = \"{certs}/cert.pem\"\ntls_key = \"{certs}/key.pem\"\n"
    );
    std::fs::write(&path, toml).unwrap();
    let config_path = path.display().to_string();
    let mut server = TestServer::spawn_with(&[("TRACEBOX_CONFIG", config_path.as_str())]).await;
    assert!(server.logged().contains("copied"), "the image was copied to the TLS node at start");
    let (status, reply) = server.execute(json!({"code": "print('over tls')", "labels": {"over": "tls"}})).await;
    assert_eq!(
        (status, reply["node"].as_str(), reply["stdout"].as_str()),
        (200, Some("tls"), Some("over tls\n")),
        "{reply}"
    );
    let (_, nodes) = server.get_json("/nodes").await;
    let tls = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "tls").unwrap().clone();
    assert_eq!(tls["docker_host"], format!("tcp://127.0.0.1:{PORT}"), "{tls}");
    assert_eq!(tls["state"], "up", "{tls}");
    let instance = server.instance_id().await;
    server.stop();
    assert!(containers_on(&local, &instance).is_empty(), "the TLS node kept the server's containers");
    nodes_sh(&["down", "node-tls"]);
}

#[tokio::test]
async fn a_node_whose_engine_lacks_its_runtime_stays_down_saying_so() {
    let _turn = ENGINES.lock().await;
    nodes_sh(&["up", NODE_A]);
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("tracebox.toml");
    let toml = format!(
        "[[nodes]]\nname = \"local\"\ndocker_host = \"unix:///var/run/docker.sock\"\n\n\
         [[nodes]]\nname = \"{NODE_A}\"\ndocker_host = \"{}\"\nruntime = \"no-such-runtime\"\n",
        host_of(NODE_A)
    );
    std::fs::write(&config, toml).unwrap();
    let config = config.display().to_string();
    let server = TestServer::spawn_with(&[("TRACEBOX_CONFIG", config.as_str())]).await;
    let (_, nodes) = server.get_json("/nodes").await;
    let node = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == NODE_A).unwrap().clone();
    assert_eq!(node["state"], "down", "{node}");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("no-such-runtime") && error.contains("daemon.json"), "the fix is named: {error}");
    let (status, reply) = server.execute(json!({"code": "print(1)", "strategy": "round_robin"})).await;
    assert_eq!((status, reply["node"].as_str()), (200, Some("local")), "{reply}");
}
