//! Stateful sandboxes, measured (issue 14's targets), in one run against release `tracebox
//! serve`s it starts on fresh data directories, over real HTTP (reqwest, keep-alive):
//!
//! 0. the same-run baselines: a one-shot `POST /execute` hello world on a recycle-mode server
//!    (every row is also given as a multiple of it, so that runs on different machines compare),
//!    and the Docker CLI on the sandbox image (`docker run --rm`, `docker exec`, `docker cp`);
//! 1. creating a default Python sandbox (`POST /sandboxes {}`): paced so that the warm shelf is
//!    full again before each (a warm container adopted), back to back (the shelf runs dry), and
//!    on a server without a shelf (`TRACEBOX_SANDBOX_POOL_SIZE=0`, cold); deleting one;
//! 2. a command (`echo hi`), a Python cell (`x + 1`, `x` set by an earlier cell), and 1 MiB
//!    written then read back;
//! 3. pausing and resuming a sandbox holding 10 MB of random files, then snapshotting it and
//!    resetting it to that snapshot after its files were removed: the files must come back whole;
//! 4. many idle sandboxes at once: the memory each costs the host, the server's RSS, and the
//!    creation latency with them present;
//! 5. leaks: the containers and snapshot files left after deleting every sandbox and stopping,
//!    and after a `kill -9` with sandboxes running and paused, a restart and the same.
//!
//! Targets are printed as met or not, never asserted: only wrong answers (files that did not
//! come back, a leak) fail the program. Every container of every server it started is removed
//! when it ends, a failure (a panic) included.
//!
//!     scripts/sandbox-bench.sh                 (builds release binaries, runs this)
//!     cargo run --release --example sandbox_bench -- --tracebox target/release/tracebox
//!     scripts/sandbox-bench.sh --smoke         (CI: every step in seconds, on debug builds)

mod common;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use common::{Figures, Server, time_command};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The tracebox binary to serve with (a release build)
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: String,
    /// Samples per latency row (after a few warm-ups)
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Runs of each Docker CLI baseline (slow)
    #[arg(long, default_value_t = 20)]
    docker_runs: usize,
    /// Pause-and-resume cycles of the sandbox holding 10 MB (each pause's snapshot replaces the
    /// one before)
    #[arg(long, default_value_t = 20)]
    pause_runs: usize,
    /// Snapshot-and-reset cycles of the sandbox holding 10 MB. Each snapshot is kept until the
    /// sandbox goes, and a sandbox's snapshots may hold 1 GiB (TRACEBOX_SNAPSHOT_MAX_BYTES):
    /// keep it under 100
    #[arg(long, default_value_t = 20)]
    snapshot_runs: usize,
    /// Idle sandboxes at once, for the memory readings and the creation with them present
    #[arg(long, default_value_t = 100)]
    idle: usize,
    /// Warm sandbox containers per language on the bench server (TRACEBOX_SANDBOX_POOL_SIZE)
    #[arg(long, default_value_t = 4)]
    pool_size: usize,
    /// Most paced creations a second (each also waits until the warm shelf is full again)
    #[arg(long, default_value_t = 2.0)]
    paced_rate: f64,
    /// The sandbox image, for the Docker baselines
    #[arg(long, env = "TRACEBOX_IMAGE", default_value = "tracebox-sandbox:latest")]
    image: String,
    /// Every step with a handful of runs and short pauses, in seconds, printing every table: so
    /// that CI catches a broken benchmark. Replaces the counts above; the figures mean nothing
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The counts of a smoke run, when asked for one.
    fn smoked(self) -> Args {
        if !self.smoke {
            return self;
        }
        Args {
            runs: 3,
            docker_runs: 2,
            pause_runs: 2,
            snapshot_runs: 2,
            idle: 5,
            pool_size: 1,
            paced_rate: 20.0,
            ..self
        }
    }

    /// A pause that lets the machine settle before a reading; a smoke run barely pauses.
    fn pause(&self, secs: u64) -> Duration {
        if self.smoke { Duration::from_millis(200) } else { Duration::from_secs(secs) }
    }

    fn warm_ups(&self) -> usize {
        if self.smoke { 1 } else { 3 }
    }
}

/// Sandboxes of the `kill -9` step: running ones (one of them mid-command) and paused ones.
const CRASH_RUNNING: usize = 3;
const CRASH_PAUSED: usize = 3;
/// Files of the paused-and-resumed sandbox: 10 × 1,000,000 random bytes.
const PAUSE_FILES: usize = 10;
const PAUSE_FILE_BYTES: usize = 1_000_000;
/// Requests in flight while many sandboxes are made or deleted (not timed).
const SETUP_CONCURRENCY: usize = 4;
/// How long the warm shelf may take to fill again before the benchmark gives up on it.
const SHELF_WAIT: Duration = Duration::from_secs(180);

/// The sandbox API of one server.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    fn of(server: &Server, client: &reqwest::Client) -> Api {
        Api { client: client.clone(), url: server.url.clone() }
    }

    /// Send `request`; its reply when its status is `want`, else a panic saying what came.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str, want: u16) -> reqwest::Response {
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: the server did not answer: {e}"));
        if response.status().as_u16() != want {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            panic!("{what}: {status} where {want} was expected: {body}");
        }
        response
    }

    async fn json(&self, request: reqwest::RequestBuilder, what: &str, want: u16) -> Value {
        let response = self.send(request, what, want).await;
        response.json().await.unwrap_or_else(|e| panic!("{what}: the reply is not JSON: {e}"))
    }

    /// `POST /sandboxes {}`: a default Python sandbox's id.
    async fn create(&self) -> String {
        let request = self.client.post(format!("{}/sandboxes", self.url)).json(&json!({}));
        let reply = self.json(request, "POST /sandboxes", 201).await;
        reply["sandbox_id"].as_str().unwrap_or_else(|| panic!("POST /sandboxes: no sandbox_id in {reply}")).to_owned()
    }

    async fn delete(&self, id: &str) {
        let request = self.client.delete(format!("{}/sandboxes/{id}", self.url));
        self.send(request, "DELETE /sandboxes/{id}", 204).await;
    }

    /// A command run to its end, with a timeout of `timeout` s; its stdout (it must succeed).
    async fn command(&self, id: &str, cmd: &str, timeout: f64) -> String {
        let request = self
            .client
            .post(format!("{}/sandboxes/{id}/commands", self.url))
            .json(&json!({"cmd": cmd, "timeout": timeout}));
        let reply = self.json(request, "POST /sandboxes/{id}/commands", 200).await;
        assert!(reply["status"] == "success" && reply["exit_code"] == 0, "the command {cmd:?} failed: {reply}");
        reply["stdout"].as_str().unwrap_or_default().to_owned()
    }

    /// A code cell; its `result` (it must succeed).
    async fn cell(&self, id: &str, code: &str) -> Value {
        let request = self.client.post(format!("{}/sandboxes/{id}/code", self.url)).json(&json!({"code": code}));
        let reply = self.json(request, "POST /sandboxes/{id}/code", 200).await;
        assert_eq!(reply["status"], "success", "the cell {code:?} failed: {reply}");
        reply["result"].clone()
    }

    /// `path`: a plain relative path (it goes into the query as it is).
    async fn put(&self, id: &str, path: &str, bytes: Bytes) {
        let request = self.client.put(format!("{}/sandboxes/{id}/files/content?path={path}", self.url));
        self.send(request.body(bytes), "PUT /sandboxes/{id}/files/content", 200).await;
    }

    async fn get(&self, id: &str, path: &str) -> Bytes {
        let request = self.client.get(format!("{}/sandboxes/{id}/files/content?path={path}", self.url));
        let response = self.send(request, "GET /sandboxes/{id}/files/content", 200).await;
        response.bytes().await.unwrap_or_else(|e| panic!("GET /sandboxes/{id}/files/content: {e}"))
    }

    async fn pause(&self, id: &str) {
        let request = self.client.post(format!("{}/sandboxes/{id}/pause", self.url));
        self.send(request, "POST /sandboxes/{id}/pause", 200).await;
    }

    async fn resume(&self, id: &str) {
        let request = self.client.post(format!("{}/sandboxes/{id}/resume", self.url));
        self.send(request, "POST /sandboxes/{id}/resume", 200).await;
    }

    /// `POST /sandboxes/{id}/snapshots`: the new snapshot's id.
    async fn snapshot(&self, id: &str) -> String {
        let request = self.client.post(format!("{}/sandboxes/{id}/snapshots", self.url)).json(&json!({}));
        let reply = self.json(request, "POST /sandboxes/{id}/snapshots", 201).await;
        let snapshot = reply["snapshot_id"].as_str();
        snapshot.unwrap_or_else(|| panic!("POST /sandboxes/{id}/snapshots: no snapshot_id in {reply}")).to_owned()
    }

    /// `POST /sandboxes/{id}/reset` to `snapshot`.
    async fn reset(&self, id: &str, snapshot: &str) {
        let request =
            self.client.post(format!("{}/sandboxes/{id}/reset", self.url)).json(&json!({"snapshot_id": snapshot}));
        self.send(request, "POST /sandboxes/{id}/reset", 200).await;
    }

    /// `POST /execute` of a Python hello world (one-shot, the server's isolation mode).
    async fn hello(&self) {
        let request = self.client.post(format!("{}/execute", self.url)).json(&json!({"code": "print('hello')"}));
        let reply = self.json(request, "POST /execute", 200).await;
        assert_eq!(reply["stdout"], "hello\n", "POST /execute of a hello world: {reply}");
    }

    /// `GET /sandboxes`: (id, status) of each.
    async fn sandboxes(&self) -> Vec<(String, String)> {
        let reply = self.json(self.client.get(format!("{}/sandboxes", self.url)), "GET /sandboxes", 200).await;
        let listed = reply["sandboxes"].as_array().cloned().unwrap_or_default();
        let field = |sandbox: &Value, name: &str| sandbox[name].as_str().unwrap_or_default().to_owned();
        listed.iter().map(|sandbox| (field(sandbox, "sandbox_id"), field(sandbox, "status"))).collect()
    }

    /// Python sandbox containers waiting on the warm shelf (`/metrics`).
    async fn shelf(&self) -> usize {
        let request = self.client.get(format!("{}/metrics", self.url));
        let text = self.send(request, "GET /metrics", 200).await.text().await.unwrap_or_default();
        let line = text.lines().find_map(|line| line.strip_prefix("tracebox_sandbox_pool_idle{language=\"python\"}"));
        line.and_then(|value| value.trim().parse::<f64>().ok()).map_or(0, |value| value as usize)
    }

    /// Wait until the Python shelf holds `want` containers again.
    async fn wait_shelf(&self, want: usize) {
        let deadline = Instant::now() + SHELF_WAIT;
        while self.shelf().await < want {
            assert!(Instant::now() < deadline, "the warm shelf did not fill up to {want} within {SHELF_WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Delete every sandbox the server lists, a few at a time.
    async fn delete_all(&self) {
        let ids: Vec<String> = self.sandboxes().await.into_iter().map(|(id, _)| id).collect();
        stream::iter(ids).for_each_concurrent(SETUP_CONCURRENCY, |id| async move { self.delete(&id).await }).await;
    }
}

/// How long `work` took.
async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = work.await;
    (value, started.elapsed())
}

/// `runs` creations of a default sandbox, one at a time: each waits until the warm shelf holds
/// `shelf` containers again, and they go at most `rate` a second. Each sandbox is deleted once
/// the shelf has filled up again behind it, so that the deletion (timed too) does not share the
/// machine with a container starting. The creations', then the deletions' figures.
async fn create_paced(
    api: &Api,
    name: &str,
    runs: usize,
    warm_ups: usize,
    rate: f64,
    shelf: usize,
) -> (Figures, Figures) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let (mut creates, mut deletes) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for n in 0..warm_ups + runs {
        let started = Instant::now();
        let (id, create) = timed(api.create()).await;
        api.wait_shelf(shelf).await;
        let ((), delete) = timed(api.delete(&id)).await;
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
        if n >= warm_ups {
            creates.push(create);
            deletes.push(delete);
        }
    }
    eprintln!("measured {name}");
    let deleted = "delete a sandbox (`DELETE /sandboxes/{id}`)".to_owned();
    (Figures { name: name.to_owned(), samples: creates }, Figures { name: deleted, samples: deletes })
}

/// `runs` creations one right after the other, the sandboxes kept until all are made: the shelf
/// runs dry after its first few, and the rest start containers of their own.
async fn create_back_to_back(api: &Api, name: &str, runs: usize, shelf: usize) -> Figures {
    api.wait_shelf(shelf).await;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(timed(api.create()).await.1);
    }
    api.delete_all().await;
    eprintln!("measured {name}");
    Figures { name: name.to_owned(), samples }
}

/// `runs` of `step` back to back, after `warm_ups` of them.
async fn repeat<F: Future<Output = ()>>(name: &str, runs: usize, warm_ups: usize, step: impl Fn() -> F) -> Figures {
    for _ in 0..warm_ups {
        step().await;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(timed(step()).await.1);
    }
    eprintln!("measured {name}");
    Figures { name: name.to_owned(), samples }
}

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// A container of the image left running (`sleep infinity`) for the `docker exec` and `docker
/// cp` baselines; removed when dropped. It carries no tracebox label: no server counts it.
struct Helper {
    id: String,
}

impl Helper {
    fn start(image: &str) -> Helper {
        let output = Command::new("docker")
            .args(["run", "-d", "--network", "none", "--label", "tracebox-bench=sandbox_bench", "--entrypoint"])
            .args(["sleep", image, "infinity"])
            .output()
            .expect("docker runs");
        assert!(output.status.success(), "docker run -d {image}: {}", String::from_utf8_lossy(&output.stderr));
        Helper { id: String::from_utf8_lossy(&output.stdout).trim().to_owned() }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ =
            Command::new("docker").args(["rm", "-f", &self.id]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn docker(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.args(args);
    command
}

/// Bytes of memory a container's cgroup holds: cgroup v1's `memory.usage_in_bytes` (page cache
/// included, the files of its tmpfs `/workspace` with it) or v2's `memory.current`, with the
/// cgroupfs or the systemd driver.
fn cgroup_memory(id: &str) -> Option<u64> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current"),
        format!("/sys/fs/cgroup/docker/{id}/memory.current"),
    ];
    candidates.iter().find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

/// `12.5MiB` (a `docker stats` figure) in bytes.
fn parse_size(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(number.trim().parse::<f64>().ok()? * scale)
}

/// The running containers of `instance`: their full ids.
fn running_containers(instance: &str) -> Vec<String> {
    let output = docker(&["ps", "-q", "--no-trunc", "--filter", &format!("label=tracebox.instance={instance}")])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// The memory `ids` hold in all, MiB (their cgroups; `docker stats` where a cgroup cannot be
/// read), and where the figure came from.
fn containers_memory(ids: &[String]) -> (f64, &'static str) {
    let from_cgroups: Option<Vec<u64>> = ids.iter().map(|id| cgroup_memory(id)).collect();
    if let Some(bytes) = from_cgroups {
        let source = if Path::new("/sys/fs/cgroup/memory").is_dir() { "cgroup v1" } else { "cgroup v2" };
        return (bytes.iter().sum::<u64>() as f64 / 1048576.0, source);
    }
    let mut stats = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}"]);
    let output = stats.args(ids).output().expect("docker runs");
    let bytes: f64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| parse_size(line.split(" / ").next()?.trim()))
        .sum();
    (bytes / 1048576.0, "docker stats")
}

/// `field` (`Pss:`, `VmRSS:`, …, in kB) of a `/proc/PID/…` file, MiB.
fn proc_kib_field(path: &str, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let kib: f64 =
        text.lines().find_map(|line| line.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The memory of the `containerd-shim` processes that keep `ids` (one per container, outside
/// its cgroup), MiB: their proportional set size (shared pages split between them), their RSS
/// where that cannot be read.
fn shims_memory(ids: &[String]) -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut mib = 0.0;
    for process in processes.filter_map(Result::ok) {
        let pid = process.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let argv: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if !argv.first().is_some_and(|a| a.contains("containerd-shim")) {
            continue;
        }
        let keeps = argv.windows(2).any(|pair| pair[0] == "-id" && ids.contains(&pair[1]));
        if keeps {
            mib += proc_kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
                .or_else(|| proc_kib_field(&format!("/proc/{pid}/status"), "VmRSS:"))
                .unwrap_or(0.0);
        }
    }
    mib
}

/// The resident memory of the engine's daemons (`dockerd`, `containerd`), MiB: what they hold
/// for each container counts as the container's too.
fn daemons_memory() -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut mib = 0.0;
    for process in processes.filter_map(Result::ok) {
        let pid = process.file_name().to_string_lossy().into_owned();
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        if matches!(comm.trim(), "dockerd" | "containerd") {
            mib += proc_kib_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0.0);
        }
    }
    mib
}

/// The host's MemAvailable, MiB.
fn mem_available_mib() -> f64 {
    proc_kib_field("/proc/meminfo", "MemAvailable:").unwrap_or(0.0)
}

/// What the host holds at one moment, with one server up.
struct Reading {
    rss_mib: f64,
    containers: usize,
    containers_mib: f64,
    shims_mib: f64,
    daemons_mib: f64,
    source: &'static str,
    available_mib: f64,
}

impl Reading {
    /// What the containers cost the host: their cgroups, their shims, and the engine's daemons.
    fn host_mib(&self) -> f64 {
        self.containers_mib + self.shims_mib + self.daemons_mib
    }
}

fn read_memory(server: &Server) -> Reading {
    let ids = running_containers(&server.instance);
    let (containers_mib, source) = containers_memory(&ids);
    Reading {
        rss_mib: server.rss_mib(),
        containers: ids.len(),
        containers_mib,
        shims_mib: shims_memory(&ids),
        daemons_mib: daemons_memory(),
        source,
        available_mib: mem_available_mib(),
    }
}

/// Removes, when dropped, every container of the data directories it was told of: the last
/// word on cleaning up, whether the benchmark ended well or panicked half-way (each [`Server`]
/// removes its own on drop too, but a crashed one is no longer there to, until restarted).
/// Made first in `main`, so dropped last, once every server is stopped.
#[derive(Default)]
struct Sweep {
    instances: std::sync::Mutex<Vec<String>>,
}

impl Sweep {
    fn watch(&self, server: &Server) {
        self.instances.lock().expect("not poisoned").push(server.instance.clone());
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let instances = self.instances.lock().map(|i| i.clone()).unwrap_or_default();
        for instance in instances.iter().filter(|i| !i.is_empty()) {
            let removed = common::remove_containers(instance);
            if removed > 0 {
                eprintln!("removed {removed} containers left by the server of instance {instance}");
            }
        }
    }
}

/// Sandbox containers of `instance` that are not waiting on a warm shelf (an adopted one is
/// renamed after its sandbox).
fn sandbox_containers(instance: &str) -> usize {
    let output = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=tracebox.instance={instance}"),
        "--filter",
        "label=tracebox.sandbox",
        "--format",
        "{{.Names}}",
    ])
    .output()
    .expect("docker runs");
    String::from_utf8_lossy(&output.stdout).lines().filter(|name| !name.starts_with("tracebox-sandbox-warm-")).count()
}

/// Files under a data directory's `snapshots/` (a half-written one included).
fn snapshot_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("snapshots")).map(|dir| dir.filter_map(Result::ok).count()).unwrap_or(0)
}

/// What one server left behind.
struct Leaks {
    server: String,
    /// Sandboxes `GET /sandboxes` still listed after they were all deleted.
    listed: usize,
    /// Sandbox containers, besides the warm shelves, with the server still up.
    up: usize,
    /// Containers of its data directory after it stopped.
    containers: usize,
    snapshot_files: usize,
}

impl Leaks {
    fn total(&self) -> usize {
        self.listed + self.up + self.containers + self.snapshot_files
    }
}

/// Delete every sandbox, count what is left with the server up, stop it, count again.
async fn settle(server: Server, api: &Api, name: &str) -> Leaks {
    api.delete_all().await;
    let listed = api.sandboxes().await.len();
    let up = sandbox_containers(&server.instance);
    let (data, containers) = server.stop_keeping_data();
    Leaks { server: name.to_owned(), listed, up, containers, snapshot_files: snapshot_files(data.path()) }
}

/// A target, as printed next to its figure.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// A ratio, with a third decimal below 0.1 (a warm creation is a few thousandths of `docker run`).
fn times(ratio: f64) -> String {
    if ratio < 0.1 { format!("{ratio:.3}") } else { format!("{ratio:.2}") }
}

/// A latency row: n, p50, p95, the ratio to the same-run `/execute` baseline, the like-for-like
/// baseline's median and the ratio to it, and issue 14's target with its verdict.
fn row(figures: &Figures, execute: f64, baseline: Option<(&str, f64)>, target: Option<(&str, bool)>) -> String {
    let median = figures.p(0.5);
    let (base, ratio) = match baseline {
        Some((name, p50)) => (format!("{name} ({p50:.1})"), times(median / p50)),
        None => ("—".to_owned(), "—".to_owned()),
    };
    let (rule, met) = target.map_or(("—", ""), |(rule, met)| (rule, verdict(met)));
    format!(
        "| {} | {} | {median:.1} | {:.1} | {} | {base} | {ratio} | {rule} | {met} |",
        figures.name,
        figures.samples.len(),
        figures.p(0.95),
        times(median / execute)
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    // First made, so last dropped: after every server below has stopped, whatever happened.
    let sweep = Sweep::default();
    let args = Args::parse().smoked();
    let client = tracebox::http_client::builder().pool_max_idle_per_host(16).build().expect("a client");
    let warm_ups = args.warm_ups();
    let image = args.image.clone();

    // 0. The baselines. The Docker CLI on the same image...
    let docker_run = time_command("`docker run --rm --network none` `/bin/true`", args.docker_runs, None, || {
        docker(&["run", "--rm", "--network", "none", "--entrypoint", "/bin/true", &image])
    });
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let blob_path = scratch.path().join("blob");
    std::fs::write(&blob_path, random_bytes(1 << 20, 1)).expect("a 1 MiB file");
    let (exec_echo, exec_python, docker_cp) = {
        let helper = Helper::start(&image);
        let exec_echo = time_command("`docker exec` `echo hi`", args.docker_runs, None, || {
            docker(&["exec", &helper.id, "echo", "hi"])
        });
        let exec_python = time_command("`docker exec` `python3 -c`", args.docker_runs, None, || {
            docker(&["exec", &helper.id, "python3", "-c", "x = 1; print(x + 1)"])
        });
        let copy = format!(
            "docker cp {blob} {id}:/tmp/blob && docker cp {id}:/tmp/blob {back}",
            blob = blob_path.display(),
            id = helper.id,
            back = scratch.path().join("back").display()
        );
        let docker_cp = time_command("`docker cp` 1 MiB in, then out", args.docker_runs, None, || {
            let mut command = Command::new("sh");
            command.args(["-c", &copy]);
            command
        });
        (exec_echo, exec_python, docker_cp)
    };

    // ...and tracebox's own one-shot run, a Python hello world through `POST /execute` in
    // recycle mode (examples/bench.rs measures it at length): every row is also given as a
    // multiple of it, which travels between machines better than milliseconds do.
    let recycle_settings = [
        ("TRACEBOX_ISOLATION", "recycle"),
        ("TRACEBOX_POOL_SIZE", "2"),
        ("TRACEBOX_RECYCLE_MAX_RUNS", "1000"),
        ("TRACEBOX_SANDBOX_POOL_SIZE", "0"),
    ];
    let recycle =
        Server::start(&args.tracebox, &recycle_settings, tempfile::tempdir().expect("a data directory"), &client).await;
    sweep.watch(&recycle);
    let recycle_api = Api::of(&recycle, &client);
    let execute = repeat("`POST /execute` hello world, recycle", args.runs, warm_ups, || recycle_api.hello()).await;
    let mut leaks = vec![settle(recycle, &recycle_api, "recycle `/execute` (the baseline)").await];
    let execute_p50 = execute.p(0.5);

    // The bench server: a warm shelf of `pool_size` a language, room for every sandbox made, and
    // an idle timeout longer than the run (idle sandboxes are paused at it). /execute's own pool
    // is not used here: its warm containers would only be noise.
    let pool = args.pool_size.to_string();
    let max = (args.idle.max(args.runs) + 16).to_string();
    let settings = [
        ("TRACEBOX_SANDBOX_POOL_SIZE", pool.as_str()),
        ("TRACEBOX_SANDBOX_MAX", max.as_str()),
        ("TRACEBOX_SANDBOX_TIMEOUT_SECS", "86400"),
        ("TRACEBOX_POOL_SIZE", "0"),
    ];
    let server =
        Server::start(&args.tracebox, &settings, tempfile::tempdir().expect("a data directory"), &client).await;
    sweep.watch(&server);
    let api = Api::of(&server, &client);
    api.wait_shelf(args.pool_size).await;
    // The server's RSS after each phase: where its memory went.
    let mut rss_phases = vec![("started, its shelf full", server.rss_mib())];

    // 1. Creation, a warm container adopted (the shelf full each time), then back to back.
    let rate = args.paced_rate;
    let (paced, deletes) =
        create_paced(&api, "create, warm container adopted (paced)", args.runs, warm_ups, rate, args.pool_size).await;
    let burst_name = format!("create, back to back (a shelf of {} refilling behind)", args.pool_size);
    let burst = create_back_to_back(&api, &burst_name, args.runs, args.pool_size).await;
    rss_phases.push(("after the creations", server.rss_mib()));

    // 2. Steps in one sandbox.
    api.wait_shelf(args.pool_size).await;
    let id = api.create().await;
    let echo = repeat("command `echo hi` (`POST …/commands`)", args.runs, warm_ups, || async {
        assert_eq!(api.command(&id, "echo hi", 10.0).await, "hi\n");
    })
    .await;
    api.cell(&id, "x = 1").await;
    let cell = repeat("Python cell `x + 1`, `x` from an earlier cell (`POST …/code`)", args.runs, warm_ups, || async {
        assert_eq!(api.cell(&id, "x + 1").await, "2");
    })
    .await;
    let blob = Bytes::from(random_bytes(1 << 20, 2));
    let (mut writes, mut reads, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..warm_ups + args.runs {
        let ((), write) = timed(api.put(&id, "bench/blob.bin", blob.clone())).await;
        let (back, read) = timed(api.get(&id, "bench/blob.bin")).await;
        assert!(back == blob, "the 1 MiB read back is not what was written ({} bytes came)", back.len());
        if n >= warm_ups {
            writes.push(write);
            reads.push(read);
            both.push(write + read);
        }
    }
    eprintln!("measured 1 MiB written and read");
    rss_phases.push(("after the commands, cells and 1 MiB files", server.rss_mib()));
    let writes = Figures { name: "write 1 MiB (`PUT …/files/content`)".into(), samples: writes };
    let reads = Figures { name: "read 1 MiB (`GET …/files/content`)".into(), samples: reads };
    let both = Figures { name: "write then read 1 MiB".into(), samples: both };
    api.delete(&id).await;

    // 3. Pause and resume with 10 MB of random files, then snapshot and reset: the files must
    // come back whole each time.
    api.wait_shelf(args.pool_size).await;
    let id = api.create().await;
    let fill = format!(
        "mkdir -p /workspace/data && for i in $(seq 1 {PAUSE_FILES}); do head -c {PAUSE_FILE_BYTES} /dev/urandom > /workspace/data/f$i; done"
    );
    api.command(&id, &fill, 60.0).await;
    let check = "cd /workspace/data && sha256sum f* && cat f* | wc -c";
    let before = api.command(&id, check, 60.0).await;
    let total: usize = before.lines().last().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert_eq!(total, PAUSE_FILES * PAUSE_FILE_BYTES, "the files were not written whole: {before}");
    let (mut pauses, mut resumes, mut cycles) = (Vec::new(), Vec::new(), Vec::new());
    for cycle in 0..args.pause_runs {
        api.wait_shelf(args.pool_size).await;
        let ((), pause) = timed(api.pause(&id)).await;
        let ((), resume) = timed(api.resume(&id)).await;
        let after = api.command(&id, check, 60.0).await;
        if after != before {
            eprintln!("before the pause:\n{before}\nafter resume {}:\n{after}", cycle + 1);
            panic!("the sandbox's files did not come back whole after resume {}", cycle + 1);
        }
        pauses.push(pause);
        resumes.push(resume);
        cycles.push(pause + resume);
    }
    eprintln!("measured pause and resume");
    rss_phases.push(("after pause and resume", server.rss_mib()));
    let pauses = Figures { name: "pause, 10 MB of files".into(), samples: pauses };
    let resumes = Figures { name: "resume, 10 MB of files".into(), samples: resumes };
    let cycles = Figures { name: "pause then resume".into(), samples: cycles };
    let (mut snapshots, mut resets, mut restores) = (Vec::new(), Vec::new(), Vec::new());
    let spoil = "rm -rf /workspace/data && echo spoilt > /workspace/spoilt.txt";
    let spoilt = "if [ -e /workspace/spoilt.txt ]; then echo spoilt; else echo clean; fi";
    for cycle in 0..args.snapshot_runs {
        api.wait_shelf(args.pool_size).await;
        let (snapshot, took) = timed(api.snapshot(&id)).await;
        api.command(&id, spoil, 10.0).await;
        let ((), reset) = timed(api.reset(&id, &snapshot)).await;
        let after = api.command(&id, check, 60.0).await;
        if after != before {
            eprintln!("before the snapshot:\n{before}\nafter reset {}:\n{after}", cycle + 1);
            panic!("the sandbox's files did not come back whole after reset {}", cycle + 1);
        }
        let left = api.command(&id, spoilt, 10.0).await;
        assert_eq!(left, "clean\n", "a file written after snapshot {} is still there after the reset to it", cycle + 1);
        snapshots.push(took);
        resets.push(reset);
        restores.push(took + reset);
    }
    eprintln!("measured snapshot and reset");
    rss_phases.push(("after snapshot and reset", server.rss_mib()));
    let snapshots = Figures { name: "snapshot, 10 MB of files (`POST …/snapshots`)".into(), samples: snapshots };
    let resets =
        Figures { name: "reset to that snapshot, the files removed (`POST …/reset`)".into(), samples: resets };
    let restores = Figures { name: "snapshot then reset".into(), samples: restores };
    api.delete(&id).await;

    // 4. Many idle sandboxes at once.
    api.wait_shelf(args.pool_size).await;
    tokio::time::sleep(args.pause(5)).await;
    let empty = read_memory(&server);
    let made: Vec<String> = stream::iter(0..args.idle)
        .map(|_| api.create())
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<String>>()
        .await;
    api.wait_shelf(args.pool_size).await;
    tokio::time::sleep(args.pause(10)).await;
    let idle = read_memory(&server);
    let listed = api.sandboxes().await;
    let running = listed.iter().filter(|(_, status)| status == "running").count();
    assert_eq!(running, made.len(), "{} sandboxes made, {running} listed running", made.len());
    eprintln!("measured {} idle sandboxes", made.len());
    let crowded = format!("create, warm container adopted (paced), with {} idle sandboxes", made.len());
    let (crowded, _) = create_paced(&api, &crowded, args.runs, warm_ups, rate, args.pool_size).await;
    // The same sandboxes once each has run a cell: its Python kernel started (on the first cell).
    stream::iter(&made)
        .for_each_concurrent(SETUP_CONCURRENCY, |id| async {
            assert_eq!(api.cell(id, "x = 1; x + 1").await, "2");
        })
        .await;
    api.wait_shelf(args.pool_size).await;
    tokio::time::sleep(args.pause(10)).await;
    let kernels = read_memory(&server);
    eprintln!("measured {} idle sandboxes with their kernels", made.len());

    // 5. Leaks: everything deleted, then the server stopped.
    leaks.push(settle(server, &api, &format!("bench (shelf of {})", args.pool_size)).await);
    eprintln!("measured the bench server's leaks");

    // Creation without a warm shelf.
    let cold_settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|&(name, value)| if name == "TRACEBOX_SANDBOX_POOL_SIZE" { (name, "0") } else { (name, value) })
        .collect();
    let cold_server =
        Server::start(&args.tracebox, &cold_settings, tempfile::tempdir().expect("a data directory"), &client).await;
    sweep.watch(&cold_server);
    let cold_api = Api::of(&cold_server, &client);
    let cold_name = "create, cold: no warm shelf (pool size 0), paced";
    let (cold, _) = create_paced(&cold_api, cold_name, args.runs, warm_ups, rate, 0).await;
    leaks.push(settle(cold_server, &cold_api, "cold (no shelf)").await);

    // kill -9 with sandboxes running (one mid-command) and paused, a restart on the same data
    // directory, everything deleted, a stop.
    let crashing =
        Server::start(&args.tracebox, &settings, tempfile::tempdir().expect("a data directory"), &client).await;
    sweep.watch(&crashing);
    let crash_api = Api::of(&crashing, &client);
    let mut kept = Vec::new();
    for n in 0..CRASH_RUNNING + CRASH_PAUSED {
        let id = crash_api.create().await;
        crash_api.command(&id, &format!("echo kept-{n} > /workspace/note.txt"), 10.0).await;
        if n >= CRASH_RUNNING {
            crash_api.pause(&id).await;
        }
        kept.push((id, n));
    }
    let busy = {
        let (api, id) = (crash_api.clone(), kept[0].0.clone());
        tokio::spawn(async move {
            let request = api
                .client
                .post(format!("{}/sandboxes/{id}/commands", api.url))
                .json(&json!({"cmd": "sleep 30", "timeout": 60}));
            let _ = request.send().await;
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (data, left_by_crash) = crashing.crash();
    busy.abort();
    let snapshots_after_crash = snapshot_files(data.path());
    let restarted = Server::start(&args.tracebox, &settings, data, &client).await;
    let restart_api = Api::of(&restarted, &client);
    let found = restart_api.sandboxes().await;
    let found_running = found.iter().filter(|(_, status)| status == "running").count();
    let found_paused = found.iter().filter(|(_, status)| status == "paused").count();
    assert!(
        found_running == CRASH_RUNNING && found_paused == CRASH_PAUSED,
        "after the kill -9 and a restart: {found_running} sandboxes running and {found_paused} paused, not {CRASH_RUNNING} and {CRASH_PAUSED}"
    );
    for (id, n) in &kept {
        if *n >= CRASH_RUNNING {
            restart_api.resume(id).await;
        }
        let note = restart_api.command(id, "cat /workspace/note.txt", 10.0).await;
        assert_eq!(note, format!("kept-{n}\n"), "sandbox {id}'s file after the kill -9 and a restart");
    }
    leaks.push(settle(restarted, &restart_api, "kill -9, restarted on its data directory").await);
    eprintln!("measured kill -9 and a restart");

    // The tables.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    if args.smoke {
        println!("SMOKE RUN: every step ran, with too few runs for the figures to mean anything");
    }
    println!(
        "stateful sandboxes; {} samples per row after {warm_ups} warm-ups, {} per Docker CLI baseline, {} pause-resume and {} snapshot-reset cycles, {cores} cores; image {}",
        args.runs, args.docker_runs, args.pause_runs, args.snapshot_runs, args.image
    );
    println!("baseline server: {recycle_settings:?}");
    println!("bench server: {settings:?}; cold server: {cold_settings:?}");
    println!(
        "paced = at most {rate}/s, each creation once the warm shelf is full again; each sandbox deleted (timed) once the shelf has refilled behind it"
    );
    println!(
        "× `/execute` = p50 / the p50 of a one-shot `POST /execute` hello world, recycle mode, same run ({execute_p50:.1} ms)"
    );
    println!();
    println!(
        "| operation | n | p50 ms | p95 ms | × `/execute` | like-for-like baseline (p50 ms) | × it | target (issue 14) | |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---|---|");
    println!("{}", row(&execute, execute_p50, None, None));
    println!("{}", row(&docker_run, execute_p50, None, None));
    let run_p50 = docker_run.p(0.5);
    let docker_base = Some(("`docker run`", run_p50));
    let create_rule = "p50 ≤ 50 ms and ≤ 0.25× `docker run`";
    let create_met = |figures: &Figures| figures.p(0.5) <= 50.0 && figures.p(0.5) <= 0.25 * run_p50;
    println!("{}", row(&paced, execute_p50, docker_base, Some((create_rule, create_met(&paced)))));
    println!("{}", row(&burst, execute_p50, docker_base, Some((create_rule, create_met(&burst)))));
    println!("{}", row(&cold, execute_p50, docker_base, Some((create_rule, create_met(&cold)))));
    let (alone, crowd) = (paced.p(0.5), crowded.p(0.5));
    let crowd_met = crowd <= (alone * 1.25).max(alone + 5.0);
    let crowd_rule = "unchanged: ≤ 1.25× or + 5 ms";
    println!("{}", row(&crowded, execute_p50, Some(("none idle", alone)), Some((crowd_rule, crowd_met))));
    println!("{}", row(&deletes, execute_p50, None, None));
    println!("{}", row(&exec_echo, execute_p50, None, None));
    let exec = Some(("`docker exec`", exec_echo.p(0.5)));
    println!("{}", row(&echo, execute_p50, exec, Some(("p50 ≤ 10 ms", echo.p(0.5) <= 10.0))));
    println!("{}", row(&exec_python, execute_p50, None, None));
    let python = Some(("`docker exec python3 -c`", exec_python.p(0.5)));
    println!("{}", row(&cell, execute_p50, python, Some(("p50 ≤ 5 ms", cell.p(0.5) <= 5.0))));
    println!("{}", row(&docker_cp, execute_p50, None, None));
    println!("{}", row(&writes, execute_p50, None, None));
    println!("{}", row(&reads, execute_p50, None, None));
    let cp = Some(("`docker cp` in and out", docker_cp.p(0.5)));
    println!("{}", row(&both, execute_p50, cp, Some(("p50 ≤ 30 ms", both.p(0.5) <= 30.0))));
    println!("{}", row(&pauses, execute_p50, None, None));
    println!("{}", row(&resumes, execute_p50, None, None));
    let cycle_met = cycles.p(0.95) <= 1000.0;
    println!("{}", row(&cycles, execute_p50, None, Some(("≤ 1 s, judged at p95", cycle_met))));
    println!("{}", row(&snapshots, execute_p50, None, None));
    println!("{}", row(&resets, execute_p50, None, None));
    println!("{}", row(&restores, execute_p50, None, None));
    println!();
    let own = burst.samples.iter().filter(|took| took.as_millis() > 50).count();
    println!(
        "back to back, {own} of {} creations took over 50 ms (the shelf was empty: each started a container of its own, while the shelf refilled)",
        burst.samples.len()
    );
    println!(
        "the files came back whole after each of {} resumes and {} resets ({PAUSE_FILES} files, {} bytes, sha256 of each the same; a file written after the snapshot gone)",
        args.pause_runs,
        args.snapshot_runs,
        PAUSE_FILES * PAUSE_FILE_BYTES
    );
    println!();

    let n = made.len();
    println!(
        "{n} idle sandboxes at once (a new sandbox is its supervisor; its Python kernel starts with its first cell)"
    );
    println!();
    println!(
        "| state | server RSS MiB | containers | their cgroups MiB ({}) | their shims MiB (PSS) | dockerd + containerd MiB (RSS) | host MemAvailable MiB |",
        idle.source
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (state, reading) in [
        ("no sandboxes (the warm shelf only)".to_owned(), &empty),
        (format!("{n} idle sandboxes"), &idle),
        (format!("{n} idle sandboxes, each after one cell"), &kernels),
    ] {
        println!(
            "| {state} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            reading.rss_mib,
            reading.containers,
            reading.containers_mib,
            reading.shims_mib,
            reading.daemons_mib,
            reading.available_mib
        );
    }
    println!();
    let per = |reading: &Reading| {
        let n = n.max(1) as f64;
        ((reading.host_mib() - empty.host_mib()) / n, (empty.available_mib - reading.available_mib) / n)
    };
    let (idle_host, idle_available) = per(&idle);
    let (kernel_host, kernel_available) = per(&kernels);
    let memory_met = idle_host <= 15.0;
    println!(
        "per idle sandbox: {idle_host:.1} MiB (its cgroup, its shim, its share of the daemons' growth; the host's MemAvailable fell by {idle_available:.1} MiB a sandbox); once its kernel ran a cell: {kernel_host:.1} MiB ({kernel_available:.1}); target ≤ 15 MiB idle: {}",
        verdict(memory_met)
    );
    let rss = idle.rss_mib.max(kernels.rss_mib);
    let rss_met = rss * 1048576.0 < 100e6;
    println!(
        "server RSS: {:.1} MiB with no sandboxes, {:.1} MiB with {n} idle, {:.1} MiB after their cells; target < 100 MB: {}",
        empty.rss_mib,
        idle.rss_mib,
        kernels.rss_mib,
        verdict(rss_met)
    );
    let phases: Vec<String> = rss_phases.iter().map(|(phase, mib)| format!("{phase} {mib:.1}")).collect();
    println!("server RSS along the way, MiB: {}", phases.join("; "));
    println!(
        "create p50 with {n} idle sandboxes: {crowd:.1} ms against {alone:.1} ms with none ({:.2}×); target unchanged (≤ 1.25× or + 5 ms): {}",
        crowd / alone,
        verdict(crowd_met)
    );
    println!();

    println!("leaks: every sandbox deleted, then the server stopped (SIGTERM)");
    println!();
    println!(
        "| server | sandboxes still listed | sandbox containers with it up (besides the warm shelf) | containers after its stop | snapshot files after its stop |"
    );
    println!("|---|---:|---:|---:|---:|");
    for leak in &leaks {
        println!("| {} | {} | {} | {} | {} |", leak.server, leak.listed, leak.up, leak.containers, leak.snapshot_files);
    }
    println!();
    println!(
        "kill -9 with {CRASH_RUNNING} sandboxes running (one mid-command) and {CRASH_PAUSED} paused left {left_by_crash} containers and {snapshots_after_crash} snapshot files; the restart found {found_running} running and {found_paused} paused, each with its file (the paused ones resumed)"
    );
    let leaked: usize = leaks.iter().map(Leaks::total).sum();
    println!();

    println!("issue 14's targets");
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    let targets = [
        (
            "create a default sandbox p50 ≤ 50 ms and ≤ 0.25× `docker run`: a warm container adopted".to_owned(),
            format!("{:.1} ms = {}× `docker run` ({run_p50:.1} ms)", paced.p(0.5), times(paced.p(0.5) / run_p50)),
            create_met(&paced),
        ),
        (
            "the same, back to back (the shelf empties now and then)".to_owned(),
            format!("{:.1} ms = {}×", burst.p(0.5), times(burst.p(0.5) / run_p50)),
            create_met(&burst),
        ),
        (
            "the same, cold (`TRACEBOX_SANDBOX_POOL_SIZE=0`)".to_owned(),
            format!("{:.1} ms = {}×", cold.p(0.5), times(cold.p(0.5) / run_p50)),
            create_met(&cold),
        ),
        ("`commands` `echo hi` p50 ≤ 10 ms".to_owned(), format!("{:.1} ms", echo.p(0.5)), echo.p(0.5) <= 10.0),
        ("Python cell `x + 1` p50 ≤ 5 ms".to_owned(), format!("{:.1} ms", cell.p(0.5)), cell.p(0.5) <= 5.0),
        ("write then read 1 MiB p50 ≤ 30 ms".to_owned(), format!("{:.1} ms", both.p(0.5)), both.p(0.5) <= 30.0),
        (
            "pause then resume, 10 MB of files, ≤ 1 s (judged at p95)".to_owned(),
            format!("p50 {:.0} ms, p95 {:.0} ms", cycles.p(0.5), cycles.p(0.95)),
            cycle_met,
        ),
        (format!("{n} idle sandboxes: ≤ 15 MiB each"), format!("{idle_host:.1} MiB"), memory_met),
        (format!("{n} idle sandboxes: server RSS < 100 MB"), format!("{rss:.1} MiB"), rss_met),
        (
            format!("{n} idle sandboxes: create latency unchanged"),
            format!("{crowd:.1} ms against {alone:.1} ms"),
            crowd_met,
        ),
        (
            "no container or snapshot file left, also after `kill -9` and a restart".to_owned(),
            format!("{leaked} left in all"),
            leaked == 0,
        ),
    ];
    for (target, measured, met) in &targets {
        println!("| {target} | {measured} | {} |", verdict(*met));
    }
    if leaked > 0 {
        println!();
        println!("LEAKS: {leaked} sandboxes, containers or snapshot files were left behind (the table above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
