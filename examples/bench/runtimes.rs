//! The Docker runtimes side by side (`--runtimes runc,runsc`): for each, `docker run --rm
//! --runtime` (its baseline) and tracebox servers whose containers run under it, fresh (paced,
//! as in the main table) and recycle (back to back), measured in alternating rounds of ten, so
//! that the machine's drift falls on every runtime alike; then each fresh server's throughput.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{Figures, Server, time_command};
use super::{Args, execute, throughput};

/// Smaller pools than the main table's: every runtime's servers are up at once.
const FRESH: &[(&str, &str)] = &[("TRACEBOX_POOL_SIZE", "4"), ("TRACEBOX_POOL_REFILL_CONCURRENCY", "4")];
const RECYCLE: &[(&str, &str)] =
    &[("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "4"), ("TRACEBOX_RECYCLE_MAX_RUNS", "1000")];

/// What was measured of one runtime.
struct Measured {
    docker: Figures,
    fresh_py: Vec<Duration>,
    fresh_js: Vec<Duration>,
    recycle_py: Vec<Duration>,
    fresh_c4: f64,
}

/// `runs` of `body` on each server, in rounds of ten per server in turn (after a few warm-up
/// runs each), paced at `rate` a second when given.
async fn alternating(
    servers: &[Server],
    client: &reqwest::Client,
    body: &Value,
    runs: usize,
    rate: Option<f64>,
) -> Vec<Vec<Duration>> {
    for server in servers {
        for _ in 0..3 {
            execute(client, &server.url, body).await;
        }
    }
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut samples = vec![Vec::with_capacity(runs); servers.len()];
    while samples[0].len() < runs {
        for (server, samples) in servers.iter().zip(&mut samples) {
            for _ in 0..10.min(runs - samples.len()) {
                let started = Instant::now();
                samples.push(execute(client, &server.url, body).await);
                if let Some(period) = period {
                    tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
                }
            }
        }
    }
    samples
}

async fn servers(args: &Args, runtimes: &[String], settings: &[(&str, &str)], client: &reqwest::Client) -> Vec<Server> {
    let mut servers = Vec::new();
    for runtime in runtimes {
        let mut env = settings.to_vec();
        env.push(("TRACEBOX_RUNTIME", runtime));
        let data = tempfile::tempdir().expect("a data directory");
        servers.push(Server::start(&args.tracebox, &env, data, client).await);
    }
    servers
}

/// Measure every runtime and print the comparison.
pub async fn compare(args: &Args, runtimes: &[String], client: &reqwest::Client, bodies: [&Value; 2]) {
    let [hello_py, hello_js] = bodies;
    let paced = Some(args.paced_rate);
    let docker: Vec<Figures> = runtimes
        .iter()
        .map(|runtime| {
            let image = args.image.clone();
            let runtime = runtime.clone();
            let name = format!("`docker run --rm --runtime {runtime}` (python)");
            time_command(&name, args.docker_runs, None, move || {
                let mut command = Command::new("docker");
                command.args(["run", "--rm", "--network", "none", "--runtime", &runtime, "--entrypoint", "python3"]);
                command.args([&image, "-c", "print('hello')"]);
                command
            })
        })
        .collect();
    let fresh = servers(args, runtimes, FRESH, client).await;
    let fresh_py = alternating(&fresh, client, hello_py, args.runs, paced).await;
    eprintln!("measured fresh python under {runtimes:?}");
    let fresh_js = alternating(&fresh, client, hello_js, args.runs, paced).await;
    eprintln!("measured fresh node under {runtimes:?}");
    let mut fresh_c4 = Vec::new();
    for server in &fresh {
        tokio::time::sleep(args.pause(3)).await; // the pool refills
        fresh_c4.push(throughput(server, client, hello_py, 4, args.requests).await.0);
    }
    let left: usize = fresh.into_iter().map(Server::stop).sum();
    let recycle = servers(args, runtimes, RECYCLE, client).await;
    let recycle_py = alternating(&recycle, client, hello_py, args.runs, None).await;
    eprintln!("measured recycle python under {runtimes:?}");
    let left = left + recycle.into_iter().map(Server::stop).sum::<usize>();

    let measured: Vec<Measured> = docker
        .into_iter()
        .zip(fresh_py)
        .zip(fresh_js)
        .zip(recycle_py)
        .zip(fresh_c4)
        .map(|((((docker, fresh_py), fresh_js), recycle_py), fresh_c4)| Measured {
            docker,
            fresh_py,
            fresh_js,
            recycle_py,
            fresh_c4,
        })
        .collect();
    print(args, runtimes, &measured);
    println!("containers left after the servers stopped: {left}");
}

fn print(args: &Args, runtimes: &[String], measured: &[Measured]) {
    let p = |samples: &[Duration], q| super::common::percentile_ms(samples, q);
    if args.smoke {
        println!("SMOKE RUN: every step ran, with too few runs for the figures to mean anything");
    }
    println!(
        "hello world under each Docker runtime; {} runs per latency (alternating rounds of 10), {} docker runs, {} requests at c=4; paced = {}/s",
        args.runs, args.docker_runs, args.requests, args.paced_rate
    );
    println!("servers: fresh {FRESH:?}; recycle {RECYCLE:?}");
    println!();
    println!(
        "| runtime | docker run --rm p50 ms | fresh python p50 / p90 ms | fresh node p50 / p90 ms | recycle python p50 / p90 ms | fresh c=4 runs/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (runtime, m) in runtimes.iter().zip(measured) {
        println!(
            "| {runtime} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} |",
            m.docker.p(0.5),
            p(&m.fresh_py, 0.5),
            p(&m.fresh_py, 0.9),
            p(&m.fresh_js, 0.5),
            p(&m.fresh_js, 0.9),
            p(&m.recycle_py, 0.5),
            p(&m.recycle_py, 0.9),
            m.fresh_c4
        );
    }
    let base = &measured[0];
    for (runtime, m) in runtimes.iter().zip(measured).skip(1) {
        println!();
        println!(
            "{runtime} ÷ {}: docker run ×{:.2}, fresh python ×{:.2}, fresh node ×{:.2}, recycle python ×{:.2}, fresh c=4 throughput ×{:.2}",
            runtimes[0],
            m.docker.p(0.5) / base.docker.p(0.5),
            p(&m.fresh_py, 0.5) / p(&base.fresh_py, 0.5),
            p(&m.fresh_js, 0.5) / p(&base.fresh_js, 0.5),
            p(&m.recycle_py, 0.5) / p(&base.recycle_py, 0.5),
            m.fresh_c4 / base.fresh_c4
        );
    }
    println!();
}
