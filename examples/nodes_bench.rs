//! Nodes, measured (issue 18's targets), in one run against release `tracebox serve`s it starts
//! over real engines: the main one and the two extra `dockerd` of `scripts/nodes.sh`.
//!
//! 1. placement's cost on a run: what each run's trace records of it (`node.placed`: the choice,
//!    then the wait for a slot), and `/execute` hello world on a one-node server beside a
//!    three-node one (alternating rounds, same pools), both over real HTTP;
//! 2. a schedule of N hello-world tasks on one engine and over three (alternating), its wall
//!    time: on one machine the engines share its cores, so the ratio is what it is;
//! 3. failover: an engine stopped, the time until `/nodes` says `down` (heartbeat H); started
//!    again, the time until `up`; a run placed on a stopped engine the server still believes up,
//!    the time it takes elsewhere;
//! 4. leaks: the servers' containers left on any engine after they stop.
//!
//! Targets are printed as met or not, never asserted; only a leak or a wrong answer fails it.
//!
//!     scripts/nodes-bench.sh                 (builds release binaries, starts the engines, runs this)
//!     scripts/nodes-bench.sh --smoke         (CI: every step in seconds, on debug builds)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Server, percentile_ms};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The tracebox binary to serve with (a release build)
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: String,
    /// `/execute` samples per server
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Tasks in each schedule
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Schedules per server (alternating)
    #[arg(long, default_value_t = 5)]
    schedules: usize,
    /// Engine stops for the failover timings
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Heartbeat of the failover server, seconds
    #[arg(long, default_value_t = 1.0)]
    heartbeat: f64,
    /// Runs each node takes at once (and the one-node server's max_concurrent_runs)
    #[arg(long, default_value_t = 8)]
    node_runs: usize,
    /// Every step with a handful of runs, in seconds: so that CI catches a broken benchmark
    #[arg(long)]
    smoke: bool,
}

const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";

fn nodes_sh(args: &[&str]) -> String {
    let output = Command::new("bash").arg("scripts/nodes.sh").args(args).output().expect("scripts/nodes.sh runs");
    assert!(output.status.success(), "scripts/nodes.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A TOML file of three nodes (local, node-a, node-b), `runs` each, heartbeats `heartbeat` apart.
fn three_nodes(dir: &std::path::Path, runs: usize, heartbeat: f64) -> String {
    let mut toml = format!("node_heartbeat_secs = {heartbeat}\n");
    for (name, host) in [
        ("local", "unix:///var/run/docker.sock".to_owned()),
        (NODE_A, nodes_sh(&["host", NODE_A])),
        (NODE_B, nodes_sh(&["host", NODE_B])),
    ] {
        toml += &format!("\n[[nodes]]\nname = \"{name}\"\ndocker_host = \"{host}\"\nmax_concurrent_runs = {runs}\n");
    }
    let path = dir.join("nodes.toml");
    std::fs::write(&path, toml).expect("the config file");
    path.display().to_string()
}

struct Bench {
    args: Args,
    client: reqwest::Client,
}

impl Bench {
    async fn server(&self, settings: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().expect("a data directory");
        Server::start(&self.args.tracebox, settings, data, &self.client).await
    }

    async fn post(&self, server: &Server, path: &str, body: &Value) -> Value {
        let response = self.client.post(format!("{}{path}", server.url)).json(body).send().await.expect("sent");
        let status = response.status();
        let reply: Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {reply}");
        reply
    }

    async fn get(&self, server: &Server, path: &str) -> Value {
        let url = format!("{}{path}", server.url);
        let response = self.client.get(url).header("accept", "application/json").send().await.expect("sent");
        response.json().await.expect("JSON")
    }

    async fn hello(&self, server: &Server) -> (Duration, Value) {
        let started = Instant::now();
        let reply = self.post(server, "/execute", &json!({"code": "print('hi')"})).await;
        let took = started.elapsed();
        assert_eq!(reply["stdout"], "hi\n", "{reply}");
        (took, reply)
    }

    async fn state_of(&self, server: &Server, node: &str) -> String {
        let nodes = self.get(server, "/nodes").await;
        let node = nodes["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == node).cloned();
        node.and_then(|n| n["state"].as_str().map(str::to_owned)).unwrap_or_default()
    }

    async fn until_state(&self, server: &Server, node: &str, state: &str) -> Duration {
        let started = Instant::now();
        while self.state_of(server, node).await != state {
            assert!(started.elapsed() < Duration::from_secs(120), "{node} never became {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

fn row(name: &str, samples: &[Duration]) {
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {} |",
        percentile_ms(samples, 0.5),
        percentile_ms(samples, 0.95),
        percentile_ms(samples, 1.0),
        samples.len()
    );
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.runs = 5;
        args.tasks = 6;
        args.schedules = 1;
        args.failovers = 1;
        args.heartbeat = 0.5;
    }
    nodes_sh(&["up", NODE_A, NODE_B]);
    let client = tracebox::http_client::builder().timeout(Duration::from_secs(300)).build().expect("a client");
    let bench = Bench { args, client };
    let config_dir = tempfile::tempdir().expect("a config directory");
    let runs = bench.args.node_runs.to_string();
    let config = three_nodes(config_dir.path(), bench.args.node_runs, bench.args.heartbeat);
    let one = bench.server(&[("TRACEBOX_MAX_CONCURRENT_RUNS", &runs), ("TRACEBOX_POOL_SIZE", "4")]).await;
    let three = bench.server(&[("TRACEBOX_CONFIG", &config), ("TRACEBOX_POOL_SIZE", "4")]).await;
    let mut left = Vec::new();

    // 1. Placement's cost.
    let (mut on_one, mut on_three, mut picks, mut waits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        bench.hello(&one).await;
        bench.hello(&three).await;
    }
    let rounds = bench.args.runs.div_ceil(10);
    for _ in 0..rounds {
        for _ in 0..10 {
            on_one.push(bench.hello(&one).await.0);
        }
        for _ in 0..10 {
            let (took, reply) = bench.hello(&three).await;
            on_three.push(took);
            let trace = bench.get(&three, &format!("/trace/{}", reply["trace_id"].as_str().expect("a trace"))).await;
            let placed =
                trace["events"].as_array().expect("events").iter().find(|e| e["name"] == "node.placed").cloned();
            let placed = placed.expect("every run's trace says where it was placed");
            picks.push(Duration::from_micros(placed["detail"]["pick_us"].as_u64().unwrap_or(0)));
            waits.push(Duration::from_micros(placed["detail"]["slot_wait_us"].as_u64().unwrap_or(0)));
        }
    }
    println!("\n## Placement (hello world, Python, fresh, pools of 4 per node)\n");
    println!("| what | p50 ms | p95 ms | max ms | n |\n|---|---|---|---|---|");
    row("/execute on a one-node server", &on_one);
    row("/execute on a three-node server", &on_three);
    row("placement: the choice (from the run's trace)", &picks);
    row("placement: the wait for a slot there", &waits);
    let cost = percentile_ms(&picks, 0.5) + percentile_ms(&waits, 0.5);
    println!("\nPlacement adds {cost:.3} ms p50 to a run (target ≤ 0.5 ms: {})", met(cost <= 0.5));
    println!(
        "End to end, three nodes − one node: {:+.2} ms p50 (the engines' pools differ; noise of a shared machine)",
        percentile_ms(&on_three, 0.5) - percentile_ms(&on_one, 0.5)
    );

    // 2. A schedule of hello-world tasks.
    let tasks: Vec<Value> = (0..bench.args.tasks).map(|i| json!({"code": format!("print({i})")})).collect();
    let (mut walls_one, mut walls_three) = (Vec::new(), Vec::new());
    let mut spread = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..bench.args.schedules {
        for (server, walls) in [(&one, &mut walls_one), (&three, &mut walls_three)] {
            let started = Instant::now();
            let reply = bench.post(server, "/schedule", &json!({"tasks": tasks})).await;
            walls.push(started.elapsed());
            for result in reply["results"].as_array().expect("results") {
                assert_eq!(result["status"], "success", "{result}");
                if std::ptr::eq(server, &three) {
                    *spread.entry(result["node"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
                }
            }
        }
    }
    println!(
        "\n## A schedule of {} hello-world tasks (least_loaded, {} runs per node)\n",
        bench.args.tasks, bench.args.node_runs
    );
    println!("| what | p50 ms | p95 ms | max ms | n |\n|---|---|---|---|---|");
    row("one engine", &walls_one);
    row("three engines", &walls_three);
    let ratio = percentile_ms(&walls_three, 0.5) / percentile_ms(&walls_one, 0.5).max(f64::EPSILON);
    println!(
        "\nThree engines take {ratio:.2}× the wall time of one (target ≤ 1: {}); tasks per node: {spread:?}",
        met(ratio <= 1.0)
    );
    left.push(("one-node server", one.instance.clone()));
    left.push(("three-node server", three.instance.clone()));
    let _ = (one.stop(), three.stop());

    // 3. Failover.
    let heartbeat = bench.args.heartbeat;
    let watched = bench.server(&[("TRACEBOX_CONFIG", &config), ("TRACEBOX_POOL_SIZE", "1")]).await;
    // The engine stops answering somewhere between the stop command's start (SIGTERM) and its
    // return (the process gone): both are measured, the true detection lies between.
    let (mut downs, mut downs_after_exit, mut ups, mut ups_after_answer) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..bench.args.failovers {
        let stopping = Instant::now();
        nodes_sh(&["stop", NODE_B]);
        let stopped = stopping.elapsed();
        let after = bench.until_state(&watched, NODE_B, "down").await;
        downs.push(stopped + after);
        downs_after_exit.push(after);
        let starting = Instant::now();
        nodes_sh(&["start", NODE_B]);
        let answered = starting.elapsed();
        let after = bench.until_state(&watched, NODE_B, "up").await;
        ups.push(answered + after);
        ups_after_answer.push(after);
    }
    left.push(("failover server", watched.instance.clone()));
    let _ = watched.stop();
    // A server that still believes the stopped engine up (heartbeats an hour apart).
    let blind_config = three_nodes(config_dir.path(), bench.args.node_runs, 3600.0);
    let blind = bench.server(&[("TRACEBOX_CONFIG", &blind_config), ("TRACEBOX_POOL_SIZE", "1")]).await;
    nodes_sh(&["stop", NODE_B]);
    let mut moved = Vec::new();
    for _ in 0..(3 * bench.args.failovers) {
        let started = Instant::now();
        let reply = bench.post(&blind, "/execute", &json!({"code": "print('hi')", "strategy": "round_robin"})).await;
        if reply["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            moved.push(started.elapsed());
        }
    }
    nodes_sh(&["start", NODE_B]);
    left.push(("blind server", blind.instance.clone()));
    let _ = blind.stop();
    println!("\n## Failover (heartbeat {heartbeat} s; three missed → down)\n");
    println!("| what | p50 ms | p95 ms | max ms | n |\n|---|---|---|---|---|");
    row("engine's stop begun (SIGTERM) → node `down` in /nodes", &downs);
    row("engine's process gone → node `down`", &downs_after_exit);
    row("engine's start begun → node `up` again", &ups);
    row("engine answering → node `up` again", &ups_after_answer);
    row("a run placed on a stopped engine, run elsewhere", &moved);
    let worst = percentile_ms(&downs, 1.0) / 1000.0;
    println!(
        "\nDetection within {worst:.2} s = {:.2} heartbeats (target ≤ 3 intervals + one probe: {})",
        worst / heartbeat,
        met(worst <= 3.0 * heartbeat + heartbeat.max(1.0))
    );

    // 4. Leaks.
    let mut leaked = 0;
    for (name, instance) in &left {
        for host in ["unix:///var/run/docker.sock".to_owned(), nodes_sh(&["host", NODE_A]), nodes_sh(&["host", NODE_B])]
        {
            let output = Command::new("docker")
                .args(["--host", &host, "ps", "-aq", "--filter", &format!("label=tracebox.instance={instance}")])
                .output()
                .expect("docker ps");
            let count = String::from_utf8_lossy(&output.stdout).lines().count();
            if count > 0 {
                eprintln!("{name} left {count} containers on {host}");
                leaked += count;
            }
        }
    }
    println!("\nContainers left on any engine after the servers stopped: {leaked}");
    nodes_sh(&["down", NODE_A, NODE_B]);
    assert_eq!(leaked, 0, "the servers left containers behind");
}
