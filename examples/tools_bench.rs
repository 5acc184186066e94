//! Agent tools, measured (issue 15's targets), in one run against a release `tracebox serve` it
//! starts on a fresh data directory, over real HTTP (reqwest, keep-alive):
//!
//! 0. the same-run baselines: a one-shot `POST /execute` hello world (recycle mode) and a
//!    sandbox command (`POST /sandboxes/{id}/commands`, `true`), which every tool row is also
//!    given as a multiple of;
//! 1. each tool's round trip in a sandbox made from a small repository (a 100-line file, and a
//!    tree of 1,000 files for `search`): `file_read`, `file_write`, `shell`, `search`, `git
//!    status`, `git diff`;
//! 2. creating a sandbox from a local repository whose checkout holds 50 MB (and its `.git`);
//! 3. a 50-step trajectory replayed: its wall time against the time its steps took when they
//!    were first called (both as the client saw them), on the creation state put back by a reset
//!    made beforehand (not timed), and with the replay's own reset (timed).
//!
//! Targets are printed as met or not, never asserted; only wrong answers (a tool that failed, a
//! replay that diverged) fail the program. Every container of the server is removed when it
//! ends, a failure (a panic) included.
//!
//!     scripts/tools-bench.sh                 (builds release binaries, runs this)
//!     cargo run --release --example tools_bench -- --tracebox target/release/tracebox
//!     scripts/tools-bench.sh --smoke         (CI: every step in seconds, on debug builds)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Figures, Server};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The tracebox binary to serve with (a release build)
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: String,
    /// Samples per latency row (after a few warm-ups)
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Sandboxes made from the 50 MB repository
    #[arg(long, default_value_t = 5)]
    big_runs: usize,
    /// MB in the big repository's checkout
    #[arg(long, default_value_t = 50)]
    big_mb: usize,
    /// Steps of the replayed trajectory
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Every step in seconds, the figures meaningless (CI: the program must not rot)
    #[arg(long)]
    smoke: bool,
}

/// The targets of issue 15.
const TOOL_P50_MS: f64 = 10.0;
const SEARCH_P50_MS: f64 = 50.0;
const BIG_CREATE_S: f64 = 2.0;
const REPLAY_RATIO: f64 = 1.2;

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.smoke {
        (args.runs, args.big_runs, args.big_mb, args.steps) = (3, 1, 2, 5);
    }
    let client = tracebox::http_client::builder().build().expect("an HTTP client");
    let data = tempfile::tempdir().expect("a data directory");
    let settings = [
        ("TRACEBOX_ISOLATION", "recycle"),
        ("TRACEBOX_POOL_SIZE", "2"),
        ("TRACEBOX_SANDBOX_POOL_SIZE", "2"),
        ("TRACEBOX_SANDBOX_DISK_MB", "512"),
        ("TRACEBOX_SANDBOX_MAX_QUEUED_STEPS", "64"),
    ];
    let server = Server::start(&args.tracebox, &settings, data, &client).await;
    let api = Api { client: &client, url: server.url.clone() };
    let repos = tempfile::tempdir().expect("a directory for the repositories");
    let small = small_repo(&repos.path().join("small"));
    let big = big_repo(&repos.path().join("big"), args.big_mb);
    eprintln!("[tools] repositories made: {} and {} ({} MB checkout)", small.display(), big.display(), args.big_mb);

    let mut rows: Vec<(String, Figures, Option<f64>)> = Vec::new();
    let hello = api.time(args.runs, || api.post("/execute", json!({"code": "print('hello')"}))).await;
    rows.push(("one-shot `POST /execute` hello world (recycle)".into(), hello, None));

    let made = api.post("/sandboxes", json!({"repo": {"url": small.display().to_string()}})).await;
    let id = made["sandbox_id"].as_str().expect("a sandbox").to_owned();
    let tool = |name: &'static str, params: Value| {
        let (api, id) = (&api, id.clone());
        move || {
            let (params, id) = (params.clone(), id.clone());
            async move { api.tool(&id, name, params).await }
        }
    };
    let command = {
        let path = format!("/sandboxes/{id}/commands");
        api.time(args.runs, || api.post(&path, json!({"cmd": "true"}))).await
    };
    rows.push(("sandbox command `true` (the step baseline)".into(), command, None));
    for (name, params, target) in [
        ("file_read", json!({"path": "src/app.py"}), TOOL_P50_MS),
        ("file_write", json!({"path": "notes.txt", "content": "a note\n"}), TOOL_P50_MS),
        ("shell", json!({"command": "true"}), TOOL_P50_MS),
        ("search", json!({"pattern": "needle_7[0-9]\\b", "path": "tree"}), SEARCH_P50_MS),
        ("git", json!({"args": ["status", "--short"]}), TOOL_P50_MS),
        ("git", json!({"args": ["diff"]}), TOOL_P50_MS),
    ] {
        let label = format!("tool `{name}` {}", params_label(&params));
        eprintln!("[tools] {label}");
        let figures = api.time(args.runs, tool(name, params)).await;
        rows.push((label, figures, Some(target)));
    }

    eprintln!("[tools] creating sandboxes from the {} MB repository", args.big_mb);
    let mut creates = Vec::new();
    for _ in 0..args.big_runs {
        let started = Instant::now();
        let made = api.post("/sandboxes", json!({"repo": {"url": big.display().to_string()}})).await;
        creates.push(started.elapsed());
        let id = made["sandbox_id"].as_str().expect("a sandbox");
        api.delete(&format!("/sandboxes/{id}")).await;
    }
    let big_create = Figures { name: "create from the big repository".into(), samples: creates };

    eprintln!("[tools] a {}-step trajectory, then its replay", args.steps);
    let fresh = api.post("/sandboxes", json!({"repo": {"url": small.display().to_string()}})).await;
    let fresh = fresh["sandbox_id"].as_str().expect("a sandbox").to_owned();
    let mut first_calls = Duration::ZERO;
    for step in 0..args.steps {
        let (name, params) = match step % 5 {
            0 => ("file_read", json!({"path": "src/app.py", "start_line": step + 1, "end_line": step + 5})),
            1 => ("search", json!({"pattern": format!("needle_{step}\\b"), "path": "tree"})),
            2 => ("file_write", json!({"path": format!("out/{step}.txt"), "content": format!("step {step}\n")})),
            3 => ("shell", json!({"command": format!("ls out | wc -l; echo {step}")})),
            _ => ("git", json!({"args": ["status", "--short"]})),
        };
        let started = Instant::now();
        api.tool(&fresh, name, params).await;
        first_calls += started.elapsed();
    }
    let trajectory = api.get(&format!("/sandboxes/{fresh}/trajectory")).await;
    let mut replays = Vec::new();
    for reset in [false, true] {
        if !reset {
            // The state the steps were first called in; the reset itself is not timed.
            api.post(&format!("/sandboxes/{fresh}/reset"), json!({})).await;
        }
        let started = Instant::now();
        let report =
            api.post(&format!("/sandboxes/{fresh}/replay"), json!({"trajectory": trajectory, "reset": reset})).await;
        replays.push(started.elapsed());
        assert_eq!(report["divergence_step"], -1, "the replay (reset {reset}) agrees with the trajectory: {report}");
    }
    api.delete(&format!("/sandboxes/{id}")).await;
    api.delete(&format!("/sandboxes/{fresh}")).await;
    let left = server.stop();

    let baseline = rows[0].1.p(0.5);
    println!(
        "agent tools; {} runs per row after 3 warm-ups, 2 cores{}",
        args.runs,
        if args.smoke { " (SMOKE: figures meaningless)" } else { "" }
    );
    println!();
    println!("| what | p50 ms | p95 ms | × one-shot hello | target p50 | met |");
    println!("|---|---:|---:|---:|---:|---|");
    for (label, figures, target) in &rows {
        let (p50, p95) = (figures.p(0.5), figures.p(0.95));
        let (target, met) = match target {
            Some(target) => (format!("≤ {target}"), verdict(p50 <= *target)),
            None => ("—".to_owned(), "".to_owned()),
        };
        println!("| {label} | {p50:.1} | {p95:.1} | {:.2} | {target} | {met} |", p50 / baseline);
    }
    println!();
    let create_p50 = big_create.p(0.5) / 1000.0;
    println!(
        "sandbox from a local repository with a {} MB checkout: p50 {create_p50:.2} s, max {:.2} s over {} (target ≤ {BIG_CREATE_S} s: {})",
        args.big_mb,
        big_create.p(1.0) / 1000.0,
        args.big_runs,
        verdict(create_p50 <= BIG_CREATE_S)
    );
    let (without, with) = (replays[0].as_secs_f64(), replays[1].as_secs_f64());
    let ratio = without / first_calls.as_secs_f64();
    println!(
        "replay of {} steps: the calls took {:.0} ms first; the replay {:.0} ms ({ratio:.2}×, target ≤ {REPLAY_RATIO}×: {}), {:.0} ms with the reset first ({:.2}×)",
        args.steps,
        first_calls.as_secs_f64() * 1000.0,
        without * 1000.0,
        verdict(ratio <= REPLAY_RATIO),
        with * 1000.0,
        with / first_calls.as_secs_f64()
    );
    println!("containers left after the server stopped: {left}");
    assert_eq!(left, 0, "a stopped server with no sandbox left leaves no container");
}

fn verdict(met: bool) -> String {
    if met { "met".to_owned() } else { "NOT met".to_owned() }
}

fn params_label(params: &Value) -> String {
    let text = params.to_string();
    if text.len() > 48 { format!("`{}…`", &text[..47]) } else { format!("`{text}`") }
}

/// The server's API, as the benchmark calls it: every reply must be a success.
struct Api<'a> {
    client: &'a reqwest::Client,
    url: String,
}

impl Api<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response =
            self.client.post(format!("{}{path}", self.url)).json(&body).send().await.expect("the server answers");
        let status = response.status();
        let reply: Value = response.json().await.expect("a JSON reply");
        assert!(status.is_success(), "POST {path} {body}: {status} {reply}");
        reply
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.url)).send().await.expect("the server answers");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("a JSON reply")
    }

    async fn delete(&self, path: &str) {
        let response = self.client.delete(format!("{}{path}", self.url)).send().await.expect("the server answers");
        assert!(response.status().is_success(), "DELETE {path}: {}", response.status());
    }

    async fn tool(&self, id: &str, name: &str, params: Value) -> Value {
        let reply = self.post(&format!("/sandboxes/{id}/tools/{name}"), params.clone()).await;
        assert_eq!(reply["success"], true, "{name} {params}: {reply}");
        reply
    }

    /// `runs` calls of `call`, one at a time, after 3 warm-ups.
    async fn time<F, Fut>(&self, runs: usize, mut call: F) -> Figures
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        for _ in 0..3 {
            call().await;
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            call().await;
            samples.push(started.elapsed());
        }
        Figures { name: String::new(), samples }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"])
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A repository with a 100-line `src/app.py` and `tree/`, 1,000 files of 20 lines, each with
/// one `needle_N` line.
fn small_repo(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("src")).expect("a directory");
    git(dir, &["init", "--quiet"]);
    let app: String = (1..=100).map(|n| format!("value_{n} = {n}  # line {n}\n")).collect();
    std::fs::write(dir.join("src/app.py"), app).expect("a file");
    for n in 0..1000 {
        let sub = dir.join(format!("tree/d{}", n / 100));
        std::fs::create_dir_all(&sub).expect("a directory");
        let text: String = (0..20)
            .map(|line| if line == 10 { format!("needle_{n}\n") } else { format!("hay {n} {line}\n") })
            .collect();
        std::fs::write(sub.join(format!("f{n}.txt")), text).expect("a file");
    }
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "small"]);
    dir.to_owned()
}

/// A repository whose checkout holds `mb` MB of text that compresses as source code does not
/// (hex of a hash chain), in 1 MB files.
fn big_repo(dir: &Path, mb: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("a directory");
    git(dir, &["init", "--quiet"]);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for file in 0..mb {
        let mut text = String::with_capacity(1 << 20);
        while text.len() < (1 << 20) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(&format!("{state:016x}{:016x}\n", state.rotate_left(29)));
        }
        std::fs::write(dir.join(format!("blob{file:03}.txt")), text).expect("a file");
    }
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "big"]);
    dir.to_owned()
}
