//! What the benchmark programs share (not an example itself: Cargo only builds
//! `examples/*.rs` and `examples/*/main.rs`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to start listening (its first start may build the image).
const START_WAIT: Duration = Duration::from_secs(300);
/// How long a stopped server may take to sweep its containers and exit before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// The `p` quantile (0.0–1.0) of `samples`, nearest rank, in milliseconds (0 for none).
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let ms: Vec<f64> = samples.iter().map(|s| s.as_secs_f64() * 1000.0).collect();
    tracebox::stats::percentile(&ms, p).unwrap_or(0.0)
}

/// Stop a `tracebox serve` as an operator would: SIGTERM, so that it removes its containers,
/// then SIGKILL if it is still there after [`STOP_WAIT`]. The benchmarks' servers are stopped
/// this way on drop too, so a benchmark that fails half-way (CI runs them) leaves neither
/// servers nor containers behind. Does nothing to a server that has already exited.
pub fn stop(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The URL a `tracebox serve` started with `TRACEBOX_LOG_FORMAT=json` and a piped stderr listens
/// on, once it does; `None` if it exits first or takes longer than [`START_WAIT`]. Its log is
/// read to the end, so the server never blocks on a full pipe; its errors, and what is not JSON
/// (the last words of a failed start), are passed on to this program's stderr, so a benchmark
/// that fails in CI says why.
pub fn listening_url(child: &mut Child) -> Option<String> {
    let stderr = child.stderr.take()?;
    let (found, url) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                eprintln!("{line}");
                continue;
            };
            if entry["level"] == "ERROR" {
                eprintln!("{line}");
            }
            if let Some(url) = entry["fields"]["url"].as_str() {
                let _ = found.send(url.to_owned());
            }
        }
    });
    url.recv_timeout(START_WAIT).ok()
}
