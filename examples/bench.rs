//! The warm pool, measured: in one run, the host floor (`python3 -c`, `node -e`, back to back and
//! paced), the naive baseline (`docker run --rm` per program), the rate at which this Docker
//! engine starts and removes containers, and tracebox's `POST /execute` over real HTTP against
//! release servers in both isolation modes — latency at concurrency 1, throughput and p50 at 1,
//! 2, 4 and 8 — with the ratios, the server's memory before and after many runs, and the
//! containers left after a stop, and after a `kill -9` and a restart. Handler mode is measured
//! against plain runs in one interleaved series per server and language (a hello handler, a
//! hello world), so that both see the same machine.
//!
//!     scripts/bench.sh                 (builds release binaries, runs this)
//!     cargo run --release --example bench -- --tracebox target/release/tracebox --runs 100
//!     scripts/bench.sh --smoke         (CI: every step in seconds, on debug builds)
//!     scripts/bench.sh --runtimes runc,runsc   (only the Docker runtimes side by side: bench/runtimes.rs)

mod common;
#[path = "bench/runtimes.rs"]
mod runtimes;

use common::{Figures, Server, run_quietly, time_command};

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The tracebox binary to serve with (a release build)
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: String,
    /// Runs per latency measurement (after a few warm-up runs)
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Requests per throughput measurement, at each concurrency
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Runs of the `docker run --rm` baseline (slow)
    #[arg(long, default_value_t = 20)]
    docker_runs: usize,
    /// Runs between the two memory readings of the recycling server
    #[arg(long, default_value_t = 10_000)]
    rss_runs: usize,
    /// Paced rate for fresh-mode latency, requests per second
    #[arg(long, default_value_t = 4.0)]
    paced_rate: f64,
    /// The sandbox image, for the docker baselines
    #[arg(long, env = "TRACEBOX_IMAGE", default_value = "tracebox-sandbox:latest")]
    image: String,
    /// Only the cost of API keys (the last table), for measuring it again on its own
    #[arg(long)]
    access_only: bool,
    /// Only the Docker runtimes side by side (comma-separated, the first is the reference; e.g.
    /// runc,runsc): servers under each, in alternating rounds, and each one's `docker run`
    #[arg(long, value_delimiter = ',')]
    runtimes: Vec<String>,
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
        Args { runs: 3, requests: 8, docker_runs: 2, rss_runs: 16, paced_rate: 20.0, ..self }
    }

    /// A pause that lets the machine settle between measurements (a fresh pool refills, memory
    /// is read); a smoke run, whose figures mean nothing, barely pauses.
    fn pause(&self, secs: u64) -> Duration {
        if self.smoke { Duration::from_millis(200) } else { Duration::from_secs(secs) }
    }
}

/// How many commands per second `concurrency` threads complete, `total` in all.
fn command_rate(concurrency: usize, total: usize, make: impl Fn() -> Command + Sync) -> f64 {
    let left = AtomicUsize::new(total);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    run_quietly(&mut make());
                }
            });
        }
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// The servers' settings: a pool deep enough for the throughput runs (the defaults keep 2).
const FRESH: &[(&str, &str)] = &[("TRACEBOX_POOL_SIZE", "8"), ("TRACEBOX_POOL_REFILL_CONCURRENCY", "4")];
const RECYCLE: &[(&str, &str)] =
    &[("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "8"), ("TRACEBOX_RECYCLE_MAX_RUNS", "1000")];

/// One at a time, `runs` of them; paced at `rate` a second when given (so a fresh pool
/// can refill), else back to back.
async fn latency(
    server: &Server,
    client: &reqwest::Client,
    name: &str,
    body: &Value,
    runs: usize,
    rate: Option<f64>,
) -> Figures {
    for _ in 0..3 {
        execute(client, &server.url, body).await;
    }
    let mut samples = Vec::with_capacity(runs);
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    for _ in 0..runs {
        let started = Instant::now();
        samples.push(execute(client, &server.url, body).await);
        if let Some(period) = period {
            tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
        }
    }
    eprintln!("measured {name}");
    Figures { name: name.to_owned(), samples }
}

/// `total` requests by `concurrency` clients back to back: runs per second, and latencies.
async fn throughput(
    server: &Server,
    client: &reqwest::Client,
    body: &Value,
    concurrency: usize,
    total: usize,
) -> (f64, Figures) {
    let left = Arc::new(AtomicUsize::new(total));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (left, client, body) = (Arc::clone(&left), client.clone(), body.clone());
            let url = server.url.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    samples.push(execute(&client, &url, &body).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.expect("a worker"));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, Figures { name: format!("c={concurrency}"), samples })
}

fn print_access(open: &Figures, keyed: &Figures) {
    println!();
    println!("API keys: the same hello world on two recycle servers alike but for a key (with a rate limit),");
    println!("in alternating rounds; what authentication and rate limiting add to a run:");
    println!();
    println!("| server | median ms | p90 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for figures in [open, keyed] {
        println!("| {} | {:.2} | {:.2} | {:.2} |", figures.name, figures.p(0.5), figures.p(0.9), figures.p(0.99));
    }
    println!("keys add {:+.2} ms at the median (target ≤ 0.2 ms)", keyed.p(0.5) - open.p(0.5));
    println!();
}

/// Two recycle servers alike but for an API key (with a rate limit far above what is sent, so
/// the limiter runs on every request): `runs` hello worlds on each, in alternating rounds of ten
/// so that the machine's drift falls on both. The open server's runs name the tenant the key's
/// are recycled under, so both servers keep their containers alike (a tenant's own, recycled,
/// rather than the stocked default pool). The open server's figures, then the keyed one's.
async fn access_cost(args: &Args, client: &reqwest::Client, hello: &Value) -> (Figures, Figures) {
    let mut tenant_body = hello.clone();
    tenant_body["tenant"] = json!("bench");
    let body = &tenant_body;
    const SMALL: &[(&str, &str)] = &[("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "2")];
    let open = Server::start(&args.tracebox, SMALL, tempfile::tempdir().expect("a data directory"), client).await;
    let data = tempfile::tempdir().expect("a data directory");
    let made = Command::new(&args.tracebox)
        .args(["keys", "create", "--name", "bench", "--rate", "1000000"])
        .env("TRACEBOX_DATA_DIR", data.path())
        .output()
        .expect("tracebox keys runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout).expect("a key").trim().to_owned();
    let keyed = Server::start(&args.tracebox, SMALL, data, client).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().expect("a header"));
    let with_key = tracebox::http_client::builder().default_headers(headers).build().expect("a client");
    for _ in 0..5 {
        execute(client, &open.url, body).await;
        execute(&with_key, &keyed.url, hello).await;
    }
    let (mut open_samples, mut keyed_samples) = (Vec::new(), Vec::new());
    while open_samples.len() < args.runs {
        for _ in 0..10 {
            open_samples.push(execute(client, &open.url, body).await);
        }
        for _ in 0..10 {
            keyed_samples.push(execute(&with_key, &keyed.url, hello).await);
        }
    }
    eprintln!("measured the cost of API keys");
    open.stop();
    keyed.stop();
    (
        Figures { name: "recycle, no key (open)".into(), samples: open_samples },
        Figures { name: "recycle, with a key and a rate limit".into(), samples: keyed_samples },
    )
}

/// Plain runs and handler runs, alternating, `runs` of each (after a few warm-up runs of
/// each); paced at `rate` a second when given.
async fn interleaved(
    server: &Server,
    client: &reqwest::Client,
    bodies: [&Value; 2],
    runs: usize,
    rate: Option<f64>,
) -> [Vec<Duration>; 2] {
    for _ in 0..3 {
        for body in bodies {
            execute(client, &server.url, body).await;
        }
    }
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut samples = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    for run in 0..2 * runs {
        // Each kind goes first in turn, so neither always follows the other.
        let which = (run + run / 2) % 2;
        let started = Instant::now();
        samples[which].push(execute(client, &server.url, bodies[which]).await);
        if let Some(period) = period {
            tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
        }
    }
    samples
}

/// A row of the handler table: plain and handler p50 and p90, and the difference of the p50s.
fn handler_row(label: &str, [plain, handler]: &[Vec<Duration>; 2]) -> String {
    let p = |samples: &[Duration], q| common::percentile_ms(samples, q);
    let (plain_p50, handler_p50) = (p(plain, 0.5), p(handler, 0.5));
    format!(
        "| {label} | {plain_p50:.2} | {handler_p50:.2} | {:+.2} | {:.2} | {:.2} |",
        handler_p50 - plain_p50,
        p(plain, 0.9),
        p(handler, 0.9)
    )
}

/// One `POST /execute` of a hello world (or a hello handler), and how long it took.
async fn execute(client: &reqwest::Client, url: &str, body: &Value) -> Duration {
    let started = Instant::now();
    let reply: Value = client
        .post(format!("{url}/execute"))
        .json(body)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON reply");
    match body.get("handler") {
        Some(_) => assert_eq!(reply["result"], "hello", "{reply}"),
        None => assert_eq!(reply["stdout"], "hello\n", "{reply}"),
    }
    started.elapsed()
}

fn row(figures: &Figures, floor: f64, baseline: f64) -> String {
    let median = figures.p(0.5);
    format!(
        "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
        figures.name,
        median,
        figures.p(0.9),
        figures.p(0.99),
        median / floor,
        median / baseline
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse().smoked();
    let client = tracebox::http_client::builder().pool_max_idle_per_host(16).build().expect("a client");
    let python = ["/usr/bin/python3", "python3"].into_iter().find(|p| Command::new(p).arg("-V").output().is_ok());
    let python = python.expect("python3 on the host");
    let node = ["/usr/bin/node", "node"].into_iter().find(|p| Command::new(p).arg("-v").output().is_ok());
    let node = node.expect("node on the host");
    let hello_py = json!({"code": "print('hello')"});
    let hello_js = json!({"language": "node", "code": "console.log('hello')"});
    if !args.runtimes.is_empty() {
        runtimes::compare(&args, &args.runtimes, &client, [&hello_py, &hello_js]).await;
        return;
    }
    if args.access_only {
        let (open_py, keyed_py) = access_cost(&args, &client, &hello_py).await;
        print_access(&open_py, &keyed_py);
        return;
    }
    let event = json!({"name": "world", "n": [1, 2, 3]});
    let handler_py =
        json!({"code": "def handler(event, context):\n    return 'hello'\n", "handler": "handler", "event": event});
    let handler_js = json!({
        "language": "node", "code": "exports.handler = async (event, context) => 'hello';",
        "handler": "handler", "event": event,
    });

    // The floors — back to back, and paced like the fresh runs they are compared with (an idle
    // machine between runs makes everything slower to wake) — and what Docker itself costs.
    let paced = Some(args.paced_rate);
    let host = |program: &'static str, flag: &'static str, code: &'static str| {
        move || {
            let mut command = Command::new(program);
            command.args([flag, code]);
            command
        }
    };
    let host_py = time_command(&format!("host `{python} -c`"), args.runs, None, host(python, "-c", "print('hello')"));
    let host_py_paced =
        time_command(&format!("host `{python} -c`, paced"), args.runs, paced, host(python, "-c", "print('hello')"));
    let host_js = time_command(&format!("host `{node} -e`"), args.runs, None, host(node, "-e", "console.log('hello')"));
    let host_js_paced =
        time_command(&format!("host `{node} -e`, paced"), args.runs, paced, host(node, "-e", "console.log('hello')"));
    let docker = |entry: &'static str, code: &'static str| {
        let image = args.image.clone();
        move || {
            let mut command = Command::new("docker");
            command.args(["run", "--rm", "--network", "none", "--entrypoint", entry, &image, "-c", code]);
            command
        }
    };
    let docker_py = time_command(
        "`docker run --rm --network none` (python)",
        args.docker_runs,
        None,
        docker("python3", "print('hello')"),
    );
    let docker_js = {
        let image = args.image.clone();
        time_command("`docker run --rm --network none` (node)", args.docker_runs, None, move || {
            let mut command = Command::new("docker");
            command.args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "node",
                &image,
                "-e",
                "console.log('hello')",
            ]);
            command
        })
    };
    let engine_rate = {
        let image = args.image.clone();
        command_rate(4, args.docker_runs * 2, move || {
            let mut command = Command::new("docker");
            command.args(["run", "--rm", "--network", "none", "--entrypoint", "/bin/true", &image]);
            command
        })
    };
    eprintln!("measured the engine's start-and-remove rate");
    let host_rate = command_rate(4, args.requests, host(python, "-c", "print('hello')"));
    eprintln!("measured bare python3 -c processes at c=4");

    // tracebox, fresh: a container per run, from a pool kept warm.
    let fresh = Server::start(&args.tracebox, FRESH, tempfile::tempdir().expect("a data directory"), &client).await;
    let fresh_py = latency(&fresh, &client, "tracebox fresh (python, paced)", &hello_py, args.runs, paced).await;
    let fresh_js = latency(&fresh, &client, "tracebox fresh (node, paced)", &hello_js, args.runs, paced).await;
    let fresh_handler_py = interleaved(&fresh, &client, [&hello_py, &handler_py], args.runs, paced).await;
    let fresh_handler_js = interleaved(&fresh, &client, [&hello_js, &handler_js], args.runs, paced).await;
    eprintln!("measured fresh handler runs against plain ones");
    let mut fresh_load = Vec::new();
    for concurrency in [1, 2, 4, 8] {
        tokio::time::sleep(args.pause(3)).await; // the pool refills
        fresh_load.push(throughput(&fresh, &client, &hello_py, concurrency, args.requests).await);
        eprintln!("measured fresh at c={concurrency}");
    }
    let fresh_left = fresh.stop();
    // A crash cannot clean up: its warm containers stay until the next start on its data
    // directory sweeps them.
    let crashed = Server::start(&args.tracebox, FRESH, tempfile::tempdir().expect("a data directory"), &client).await;
    let (data, left_by_crash) = crashed.crash();
    let restarted = Server::start(&args.tracebox, FRESH, data, &client).await;
    let restart_left = restarted.stop();
    eprintln!("measured kill -9 and a restart");

    // tracebox, recycle: a container serves runs of its tenant, wiped between them.
    let recycle = Server::start(&args.tracebox, RECYCLE, tempfile::tempdir().expect("a data directory"), &client).await;
    let recycle_py = latency(&recycle, &client, "tracebox recycle (python)", &hello_py, args.runs, None).await;
    let recycle_js = latency(&recycle, &client, "tracebox recycle (node)", &hello_js, args.runs, None).await;
    let recycle_handler_py = interleaved(&recycle, &client, [&hello_py, &handler_py], args.runs, None).await;
    let recycle_handler_js = interleaved(&recycle, &client, [&hello_js, &handler_js], args.runs, None).await;
    eprintln!("measured recycle handler runs against plain ones");
    let mut recycle_load = Vec::new();
    for concurrency in [1, 2, 4, 8] {
        recycle_load.push(throughput(&recycle, &client, &hello_py, concurrency, args.requests).await);
        eprintln!("measured recycle at c={concurrency}");
    }
    tokio::time::sleep(args.pause(2)).await;
    let rss_idle = recycle.rss_mib();
    let (_, during) = throughput(&recycle, &client, &hello_py, 4, args.rss_runs).await;
    tokio::time::sleep(args.pause(2)).await;
    let rss_after = recycle.rss_mib();
    eprintln!("ran {} more runs for the memory readings", during.samples.len());
    let recycle_left = recycle.stop();
    let (open_py, keyed_py) = access_cost(&args, &client, &hello_py).await;

    let (floor_py, paced_floor_py) = (host_py.p(0.5), host_py_paced.p(0.5));
    let (floor_js, paced_floor_js) = (host_js.p(0.5), host_js_paced.p(0.5));
    let base_py = docker_py.p(0.5);
    let base_js = docker_js.p(0.5);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    if args.smoke {
        println!("SMOKE RUN: every step ran, with too few runs for the figures to mean anything");
    }
    println!(
        "hello world; {} runs per latency, {} requests per throughput, {cores} cores; paced = {}/s",
        args.runs, args.requests, args.paced_rate
    );
    println!("servers: fresh {FRESH:?}; recycle {RECYCLE:?}");
    println!();
    println!("| approach | median ms | p90 ms | p99 ms | × host floor (paced alike) | × docker run |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (figures, floor, base) in [
        (&host_py, floor_py, base_py),
        (&host_py_paced, paced_floor_py, base_py),
        (&docker_py, floor_py, base_py),
        (&fresh_py, paced_floor_py, base_py),
        (&recycle_py, floor_py, base_py),
        (&host_js, floor_js, base_js),
        (&host_js_paced, paced_floor_js, base_js),
        (&docker_js, floor_js, base_js),
        (&fresh_js, paced_floor_js, base_js),
        (&recycle_js, floor_js, base_js),
    ] {
        println!("{}", row(figures, floor, base));
    }
    println!();
    println!("Handler mode: a hello handler (returns 'hello'; event {event}) against a hello world, interleaved");
    println!();
    println!("| server (language) | plain p50 ms | handler p50 ms | Δ p50 ms | plain p90 ms | handler p90 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, samples) in [
        ("fresh, paced (python)", &fresh_handler_py),
        ("fresh, paced (node)", &fresh_handler_js),
        ("recycle (python)", &recycle_handler_py),
        ("recycle (node)", &recycle_handler_js),
    ] {
        println!("{}", handler_row(label, samples));
    }
    println!();
    println!("Python, back to back: runs/s (and p50 ms) at each concurrency");
    println!();
    println!("| mode | c=1 | c=2 | c=4 | c=8 |");
    println!("|---|---:|---:|---:|---:|");
    for (mode, load) in [("fresh", &fresh_load), ("recycle", &recycle_load)] {
        let cells: Vec<String> = load.iter().map(|(rate, f)| format!("{rate:.1} ({:.0})", f.p(0.5))).collect();
        println!("| {mode} | {} |", cells.join(" | "));
    }
    println!();
    let fresh_c4 = fresh_load[2].0;
    let recycle_c4 = recycle_load[2].0;
    println!("the engine starts and removes `docker run --rm` containers at {engine_rate:.1}/s (c=4)");
    println!("bare `python3 -c` processes on the host: {host_rate:.1}/s (c=4)");
    println!(
        "fresh c=4: {fresh_c4:.1} runs/s = {:.2} × the engine's rate; recycle c=4: {recycle_c4:.1} runs/s = {:.2} × bare processes",
        fresh_c4 / engine_rate,
        recycle_c4 / host_rate
    );
    println!(
        "server RSS: {rss_idle:.1} MiB idle, {rss_after:.1} MiB after {} more runs ({:+.1} MiB)",
        during.samples.len(),
        rss_after - rss_idle
    );
    print_access(&open_py, &keyed_py);
    println!("containers left after each server stopped: fresh {fresh_left}, recycle {recycle_left}");
    println!(
        "kill -9 of a fresh server left {left_by_crash} warm containers; after a restart on its data directory and a stop: {restart_left}"
    );
}
