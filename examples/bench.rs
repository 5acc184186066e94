//! Latency of a hello world, measured three ways in one run so the figures compare:
//! the interpreter started on the host (the floor), `docker run --rm` per program (the naive
//! baseline), and tracebox's `POST /execute` over real HTTP.
//!
//!     scripts/bench.sh            (starts a release server, runs this, stops it)
//!     cargo run --release --example bench -- --server http://127.0.0.1:5000 --runs 30

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// A running tracebox server
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    server: String,
    /// Runs per measurement (after one warm-up run each)
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// The sandbox image, for the `docker run` baseline
    #[arg(long, env = "TRACEBOX_IMAGE", default_value = "tracebox-sandbox:latest")]
    image: String,
}

struct Figures {
    name: String,
    samples: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        common::percentile_ms(&self.samples, p)
    }
}

fn measure(name: &str, runs: usize, mut once: impl FnMut()) -> Figures {
    once();
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    eprintln!("measured {name}");
    Figures { name: name.to_owned(), samples }
}

fn run_quietly(command: &mut Command) {
    let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("command runs");
    assert!(status.success(), "{command:?} failed");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(1)).build().expect("a client");
    let health: serde_json::Value = client
        .get(format!("{}/health", args.server))
        .send()
        .await
        .expect("a tracebox server answers at --server")
        .json()
        .await
        .expect("health is JSON");

    // The distribution's interpreter, like the sandbox's, and not a version manager's shim.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Command::new(p).arg("-V").output().is_ok())
        .expect("python3 on the host");
    let mut results = vec![
        measure(&format!("host {python} -c"), args.runs, || {
            run_quietly(Command::new(python).args(["-c", "print('hello')"]))
        }),
        measure("docker run --rm --network none (python)", args.runs, || {
            run_quietly(Command::new("docker").args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "python3",
                &args.image,
                "-c",
                "print('hello')",
            ]))
        }),
    ];
    let mut samples = Vec::with_capacity(args.runs);
    let mut steps: Vec<Figures> =
        STEPS.iter().map(|(_, name)| Figures { name: (*name).to_owned(), samples: Vec::new() }).collect();
    let mut outside = Figures {
        name: "trace commit, HTTP, JSON and the client (latency - trace duration)".into(),
        samples: Vec::new(),
    };
    for round in 0..=args.runs {
        let start = Instant::now();
        let reply: serde_json::Value = client
            .post(format!("{}/execute", args.server))
            .json(&json!({"code": "print('hello')"}))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON reply");
        let elapsed = start.elapsed();
        assert_eq!(reply["stdout"], "hello\n", "{reply}");
        if round > 0 {
            samples.push(elapsed);
            let trace: serde_json::Value = client
                .get(format!("{}/trace/{}?format=json", args.server, reply["trace_id"].as_str().unwrap_or_default()))
                .send()
                .await
                .expect("the trace is there")
                .json()
                .await
                .expect("a JSON trace");
            let offsets: Vec<(String, f64)> = trace["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (e["name"].as_str().unwrap_or_default().to_owned(), e["offset_ms"].as_f64().unwrap_or_default())
                })
                .collect();
            let mut previous = 0.0;
            for ((event, _), figures) in STEPS.iter().zip(&mut steps) {
                if let Some((_, at)) = offsets.iter().find(|(name, _)| name == event) {
                    figures.samples.push(Duration::from_secs_f64((at - previous).max(0.0) / 1000.0));
                    previous = *at;
                }
            }
            let traced = trace["duration_ms"].as_f64().unwrap_or_default() / 1000.0;
            outside.samples.push(elapsed.saturating_sub(Duration::from_secs_f64(traced)));
        }
    }
    eprintln!("measured tracebox /execute");
    results.push(Figures { name: "tracebox POST /execute (python)".into(), samples });

    let floor = results[0].percentile(0.5);
    let baseline = results[1].percentile(0.5);
    println!(
        "hello world, {} runs each, docker {}, {} cores",
        args.runs,
        health["docker"]["docker_version"].as_str().unwrap_or("?"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| approach | median ms | p90 ms | p99 ms | × host floor | × docker run |");
    println!("|---|---:|---:|---:|---:|---:|");
    for figures in &results {
        let median = figures.percentile(0.5);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            figures.name,
            median,
            figures.percentile(0.9),
            figures.percentile(0.99),
            median / floor,
            median / baseline
        );
    }

    println!();
    println!("where a tracebox /execute spends its time (median of {} runs, from each run's trace):", args.runs);
    println!("| step | median ms |");
    println!("|---|---:|");
    for figures in steps.iter().chain([&outside]) {
        println!("| {} | {:.1} |", figures.name, figures.percentile(0.5));
    }
}

/// The trace events that end each step of a run, and what the step is.
const STEPS: &[(&str, &str)] = &[
    ("container.created", "policy, trace start, create the container"),
    ("container.started", "attach and start it"),
    ("container.exited", "send the program; it runs; wait and inspect"),
    ("container.removed", "remove the container"),
    ("finished", "redact and build the reply"),
];
