//! What the benchmark programs share (not an example itself: Cargo only builds
//! `examples/*.rs` and `examples/*/main.rs`). Each uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// Latencies of one approach.
pub struct Figures {
    pub name: String,
    pub samples: Vec<Duration>,
}

impl Figures {
    pub fn p(&self, quantile: f64) -> f64 {
        percentile_ms(&self.samples, quantile)
    }
}

/// Run `command` to its end, its output dropped; panics when it fails.
pub fn run_quietly(command: &mut Command) {
    let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("the command runs");
    assert!(status.success(), "{command:?} failed");
}

/// `runs` of a command one at a time, after 3 warm-ups; paced at `rate` a second when given,
/// else back to back.
pub fn time_command(name: &str, runs: usize, rate: Option<f64>, mut make: impl FnMut() -> Command) -> Figures {
    for _ in 0..3 {
        run_quietly(&mut make());
    }
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let samples = (0..runs)
        .map(|_| {
            let started = Instant::now();
            run_quietly(&mut make());
            let took = started.elapsed();
            if let Some(period) = period {
                std::thread::sleep(period.saturating_sub(took));
            }
            took
        })
        .collect();
    eprintln!("measured {name}");
    Figures { name: name.to_owned(), samples }
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

/// A release `tracebox serve` on a data directory of its own, on a free port. Dropped without
/// [`Server::stop`] or [`Server::crash`] (a benchmark failed half-way), it is stopped (SIGTERM)
/// and the containers of its data directory still there are removed: sandboxes outlive a stop
/// by design, and CI runs the benchmarks.
pub struct Server {
    child: Child,
    pub url: String,
    /// Taken by [`Server::crash`] and [`Server::stop_keeping_data`], for a restart on it or a
    /// look into it.
    data: Option<tempfile::TempDir>,
    /// Its data directory's instance id (`/health`): its containers carry it as a label.
    pub instance: String,
    /// Stopped or crashed on purpose: the containers left are the benchmark's to count.
    settled: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
        if !self.settled && !self.instance.is_empty() {
            remove_containers(&self.instance);
        }
    }
}

impl Server {
    /// Serve on `data` with `settings`; it listens once its pool is warm.
    pub async fn start(
        tracebox: &str,
        settings: &[(&str, &str)],
        data: tempfile::TempDir,
        client: &reqwest::Client,
    ) -> Server {
        let mut child = Command::new(tracebox)
            .arg("serve")
            .env("TRACEBOX_DATA_DIR", data.path())
            .env("TRACEBOX_ADDR", "127.0.0.1:0")
            .env("TRACEBOX_LOG_FORMAT", "json")
            .env("TRACEBOX_LOG", "info")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tracebox starts");
        let Some(url) = listening_url(&mut child) else {
            stop(&mut child);
            panic!("tracebox did not start listening (its log above says why; is Docker up?)");
        };
        let mut server = Server { child, url, data: Some(data), instance: String::new(), settled: false };
        let health: Value =
            client.get(format!("{}/health", server.url)).send().await.expect("health").json().await.expect("JSON");
        server.instance = health["docker"]["instance_id"].as_str().unwrap_or_default().to_owned();
        server
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.as_ref().expect("a server has its data directory until it stops or crashes").path()
    }

    /// Its resident memory (VmRSS), MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// The containers of its data directory, running or not.
    pub fn containers(&self) -> usize {
        count_containers(&format!("tracebox.instance={}", self.instance))
    }

    /// `kill -9`: the containers it leaves, and its data directory for a restart.
    pub fn crash(mut self) -> (tempfile::TempDir, usize) {
        self.settled = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let left = self.containers();
        (self.data.take().expect("a server has its data directory until it crashes"), left)
    }

    /// SIGTERM, as an operator would stop it: the containers it leaves.
    pub fn stop(self) -> usize {
        self.stop_keeping_data().1
    }

    /// [`Server::stop`], and its data directory, to look into.
    pub fn stop_keeping_data(mut self) -> (tempfile::TempDir, usize) {
        self.settled = true;
        stop(&mut self.child);
        let left = self.containers();
        (self.data.take().expect("a server has its data directory until it stops"), left)
    }
}

/// How many containers carry `label` (`key=value`), running or not.
pub fn count_containers(label: &str) -> usize {
    let output = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label={label}")]).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).lines().count()).unwrap_or(0)
}

/// Remove every container of the data directory `instance` (`docker rm -f`); how many there were.
pub fn remove_containers(instance: &str) -> usize {
    let output =
        Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=tracebox.instance={instance}")]).output();
    let ids: Vec<String> =
        output.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()).unwrap_or_default();
    if !ids.is_empty() {
        let _ =
            Command::new("docker").arg("rm").arg("-f").args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    ids.len()
}
