//! The trace list at scale: seed a fresh store with many traces through the store's own API,
//! start a release `tracebox serve` on it, and time the list, filters, search, a deep page and
//! one trace over real HTTP. A second, small store (1,000 traces) measured in the same run is
//! the baseline, so the scaling shows. Prints figures; asserts only that answers are right.
//!
//!     scripts/trace-bench.sh                 (builds in release, runs this)
//!     cargo run --release --example trace_bench -- --traces 100000 --runs 50
//!     scripts/trace-bench.sh --smoke         (CI: every query in seconds, on debug builds)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

use tracebox_model::record::ExecutionInput;
use tracebox_model::{Execution, Language, RunLimits, Source, Status, TraceEvent, TraceId, TraceInput, TraceOutput};

use tracebox::trace::{FinishedTrace, NewTrace, TraceStore};
use uuid::{NoContext, Timestamp, Uuid};

#[derive(Parser)]
struct Args {
    /// Traces in the big store
    #[arg(long, default_value_t = 100_000)]
    traces: usize,
    /// Traces in the baseline store
    #[arg(long, default_value_t = 1_000)]
    baseline: usize,
    /// Timed requests per query (after the warm-up)
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// The release `tracebox` binary to serve the stores
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: PathBuf,
    /// Every query on small stores, in seconds, printing the table: so that CI catches a broken
    /// benchmark. Replaces the counts above; the figures mean nothing
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The counts of a smoke run, when asked for one: enough traces for children (one in a
    /// hundred) and for several pages of the list.
    fn smoked(self) -> Args {
        if !self.smoke {
            return self;
        }
        Args { traces: 400, baseline: 200, runs: 2, ..self }
    }
}

/// The one word in exactly one trace's stdout.
const NEEDLE: &str = "quixotically";
/// A word in many traces' output.
const COMMON: &str = "warning";
/// Pages followed before the deep page is timed.
const DEEP_PAGES: usize = 20;
/// Warm-up requests before each query is timed.
const WARM_UP: usize = 3;

/// Words for output, most common first (drawn with a skew, so some are everywhere and some rare).
const WORDS: &[&str] = &[
    "the",
    "value",
    "result",
    "ok",
    "done",
    "loading",
    "item",
    "count",
    "total",
    "step",
    "row",
    "user",
    "data",
    "warning",
    "request",
    "response",
    "parsed",
    "record",
    "batch",
    "cache",
    "hit",
    "miss",
    "retry",
    "index",
    "key",
    "token",
    "model",
    "score",
    "epoch",
    "loss",
    "accuracy",
    "matrix",
    "vector",
    "sum",
    "mean",
    "median",
    "sorted",
    "filtered",
    "mapped",
    "reduced",
    "queue",
    "worker",
    "thread",
    "async",
    "await",
    "promise",
    "resolved",
    "rejected",
    "buffer",
    "stream",
    "chunk",
    "file",
    "path",
    "json",
    "csv",
    "header",
    "column",
    "field",
    "invalid",
    "missing",
    "expected",
    "received",
    "timeout",
    "elapsed",
    "seconds",
    "milliseconds",
    "fibonacci",
    "prime",
    "factorial",
    "permutation",
    "graph",
    "node",
    "edge",
    "visited",
    "depth",
    "breadth",
    "heap",
    "stack",
    "tree",
    "leaf",
    "branch",
    "merge",
    "split",
    "join",
    "hello",
    "world",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "lambda",
    "sigma",
    "omega",
    "kappa",
    "zeta",
    "theta",
    "iota",
    "apricot",
    "blueberry",
    "cherry",
    "damson",
    "elderberry",
    "feijoa",
    "guava",
    "huckleberry",
    "jackfruit",
    "kumquat",
    "lychee",
    "mulberry",
    "nectarine",
    "olive",
    "papaya",
    "quince",
    "raspberry",
    "satsuma",
    "tamarind",
    "ugli",
    "vanilla",
    "watermelon",
    "yuzu",
];

/// A small deterministic random source (splitmix64): the same seed gives the same store.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Mostly the first words of `WORDS`, now and then a rare one.
    fn word(&mut self) -> &'static str {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        WORDS[((u * u * u) * WORDS.len() as f64) as usize % WORDS.len()]
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|i| if i % 7 == 6 { format!("{}", self.next() % 100_000) } else { self.word().to_owned() })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One seeded trace, begun and finished the way a run records it.
fn trace(
    rng: &mut Rng,
    n: usize,
    id: TraceId,
    parent: Option<TraceId>,
    started_at_us: i64,
) -> (NewTrace, FinishedTrace) {
    let node = rng.below(10) < 4;
    let roll = rng.below(100);
    let status = match roll {
        0..=84 => "success",
        85..=93 => "error",
        94..=97 => "timeout",
        _ => "blocked",
    };
    let (a, b) = (rng.below(1000), rng.below(1000));
    let code = if node {
        match n % 3 {
            0 => format!("const xs = [{a}, {b}, {n}];\nconsole.log(xs.map(x => x * 2).join(' '));\n"),
            1 => format!(
                "async function main() {{\n  const r = await Promise.resolve({a});\n  console.log('{}', r + {b});\n}}\nmain();\n",
                rng.word()
            ),
            _ => format!(
                "const {} = require('fs');\nconsole.error('{}');\nprocess.exit({});\n",
                rng.word(),
                rng.word(),
                b % 2
            ),
        }
    } else {
        match n % 3 {
            0 => format!("values = [{a}, {b}, {n}]\nprint(sum(values), '{}')\n", rng.word()),
            1 => format!(
                "import json\ndata = json.loads('{{\"{}\": {a}}}')\nfor k, v in data.items():\n    print(k, v * {b})\n",
                rng.word()
            ),
            _ => format!("def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)\nprint(f({}))\n", a % 20),
        }
    };
    let lines = 3 + rng.below(6);
    let mut stdout = String::new();
    for _ in 0..lines {
        let words = 6 + rng.below(8);
        stdout.push_str(&rng.words(words));
        stdout.push('\n');
    }
    if n == 0 {
        stdout.push_str(&format!("and then, {NEEDLE}, it ended\n"));
    }
    let stderr = match status {
        "error" if node => format!("Error: {}\n    at main (/workspace/main.js:{}:7)\n", rng.words(5), a % 40),
        "error" => format!(
            "Traceback (most recent call last):\n  File \"/workspace/main.py\", line {}, in <module>\nValueError: {}\n",
            a % 40,
            rng.words(4)
        ),
        _ if rng.below(5) == 0 => format!("{}\n", rng.words(8)),
        _ => String::new(),
    };
    let (stdout, stderr) = if status == "blocked" { (String::new(), String::new()) } else { (stdout, stderr) };
    let language = if node { "node" } else { "python" };
    let duration_us = 40_000 + rng.below(200_000) as i64 + if status == "timeout" { 10_000_000 } else { 0 };
    let mut events = Vec::new();
    if status == "blocked" {
        events.push(TraceEvent {
            at_us: started_at_us + 300,
            name: "policy.blocked".into(),
            detail: json!({"rules": ["python.subprocess"]}),
        });
    } else {
        for (step, name) in
            ["container.created", "container.started", "container.exited", "container.removed"].into_iter().enumerate()
        {
            let at_us = started_at_us + duration_us * (step as i64 + 1) / 5;
            let detail = if name == "container.exited" { json!({"exit_code": 0}) } else { Value::Null };
            events.push(TraceEvent { at_us, name: name.into(), detail });
        }
    }
    events.push(TraceEvent {
        at_us: started_at_us + duration_us,
        name: "finished".into(),
        detail: json!({"status": status}),
    });
    let exit_code = match status {
        "success" => Some(0),
        "error" => Some(1),
        "timeout" => Some(137),
        _ => None,
    };
    let language: Language = language.parse().expect("a language");
    let limits = RunLimits {
        timeout: Duration::from_secs(10),
        memory_bytes: 256 << 20,
        cpus: 1.0,
        pids: 128,
        output_bytes: 1 << 20,
    };
    let new = NewTrace {
        id,
        parent_id: parent,
        source: if n.is_multiple_of(5) { Source::Cli } else { Source::Http },
        language: Some(language),
        boot_id: "bench-boot".into(),
        started_at_us,
        tenant: None,
        input: TraceInput::Execution(ExecutionInput {
            language,
            code,
            stdin: String::new(),
            env_names: Vec::new(),
            files: Vec::new(),
            limits,
            policy_hits: Vec::new(),
            omitted_bytes: 0,
            handler: None,
        }),
    };
    let status: Status = serde_json::from_value(json!(status)).expect("a status");
    let message = (status == Status::Blocked).then(|| "the security policy refused this code".to_owned());
    let output = Execution {
        exit_code,
        stdout,
        stderr,
        duration_ms: (duration_us / 1000) as u64,
        timed_out: status == Status::Timeout,
        message,
        ..Execution::empty(id, status)
    };
    let finished = FinishedTrace {
        id,
        status,
        ended_at_us: started_at_us + duration_us,
        exit_code,
        output: TraceOutput::Execution(Box::new(output)),
        events,
    };
    (new, finished)
}

/// A UUIDv7 trace id made at `us` (Unix microseconds), so ids and start times agree.
fn id_at(us: i64) -> TraceId {
    let ts = Timestamp::from_unix(NoContext, (us / 1_000_000) as u64, ((us % 1_000_000) * 1000) as u32);
    Uuid::new_v7(ts).to_string().parse().expect("a UUIDv7 is a trace id")
}

struct Seeded {
    dir: tempfile::TempDir,
    /// A trace with children, for the detail query.
    parent: TraceId,
    elapsed: Duration,
}

/// Seed a fresh data directory with `count` traces spread over the last 30 days, through
/// `TraceStore::begin` and `finish` (the server's own write path), many finishes in flight at
/// once so the writer commits them in batches.
async fn seed(count: usize) -> Seeded {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let started = Instant::now();
    let store = TraceStore::open(&dir.path().join("traces")).expect("the store opens");
    let mut rng = Rng(0x5EED);
    let span_us: i64 = 30 * 24 * 3600 * 1_000_000;
    let first_us = tracebox_model::now_us() - span_us;
    let step_us = span_us / count.max(1) as i64;
    let mut parent = None;
    let mut recent: Vec<TraceId> = Vec::new();
    let progress = indicatif::ProgressBar::new(count as u64).with_style(
        indicatif::ProgressStyle::with_template("  seeding {bar:40} {pos}/{len} traces, {per_sec}, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for chunk in (0..count).collect::<Vec<_>>().chunks(1024) {
        let mut finishes = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let at = first_us + n as i64 * step_us + rng.below(step_us.max(2) as usize / 2) as i64;
            let id = id_at(at);
            // Every hundredth trace is a child of one a few traces back.
            let parent_id = (n % 100 == 50).then(|| recent[recent.len() - 3]);
            if let Some(p) = parent_id {
                parent = Some(p);
            }
            let (new, finished) = trace(&mut rng, n, id, parent_id, at);
            store.begin(new);
            finishes.push(store.finish(finished));
            recent.push(id);
            if recent.len() > 8 {
                recent.remove(0);
            }
        }
        for result in futures_util::future::join_all(finishes).await {
            result.expect("a seeded trace commits");
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    store.close();
    Seeded { dir, parent: parent.unwrap_or_else(|| recent[0]), elapsed: started.elapsed() }
}

fn database_bytes(dir: &Path) -> u64 {
    ["traces.db", "traces.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join("traces").join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// A `tracebox serve` on a data directory, on a free port, with no warm pool (nothing runs
/// code here; warm containers would only be noise). Stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(tracebox: &Path, data_dir: &Path) -> Server {
        let mut child = Command::new(tracebox)
            .arg("serve")
            .env("TRACEBOX_DATA_DIR", data_dir)
            .env("TRACEBOX_ADDR", "127.0.0.1:0")
            .env("TRACEBOX_LOG_FORMAT", "json")
            .env("TRACEBOX_LOG", "info")
            .env("TRACEBOX_POOL_SIZE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", tracebox.display()));
        let Some(url) = common::listening_url(&mut child) else {
            common::stop(&mut child);
            panic!("tracebox did not start listening (its log above says why; is Docker up?)");
        };
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        common::stop(&mut self.child);
    }
}

struct Figures {
    name: String,
    rows: usize,
    samples: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        common::percentile_ms(&self.samples, p)
    }
}

/// The body of `GET path`, which must answer 200.
async fn get(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("the server answers");
    let status = response.status();
    let body = response.text().await.expect("a body");
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// How many traces a reply shows: list entries in JSON, table rows in a page, 1 for a trace.
fn rows(body: &str) -> usize {
    match serde_json::from_str::<Value>(body) {
        Ok(json) => json["traces"].as_array().map_or(1, Vec::len),
        Err(_) => body.matches("<tr data-trace-id=").count(),
    }
}

async fn measure(client: &reqwest::Client, base: &str, name: &str, path: &str, runs: usize) -> Figures {
    let url = format!("{base}{path}");
    for _ in 0..WARM_UP {
        get(client, &url).await;
    }
    let mut samples = Vec::with_capacity(runs);
    let mut count = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let body = get(client, &url).await;
        samples.push(start.elapsed());
        count = rows(&body);
    }
    Figures { name: name.to_owned(), rows: count, samples }
}

/// Every query, timed against one server.
async fn measure_all(client: &reqwest::Client, base: &str, parent: TraceId, runs: usize) -> Vec<Figures> {
    // The cursor of the page DEEP_PAGES pages down.
    let mut cursor = String::new();
    for _ in 0..DEEP_PAGES {
        let page: Value =
            serde_json::from_str(&get(client, &format!("{base}/traces?format=json{cursor}")).await).expect("JSON");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let queries = [
        ("first page, JSON", "/traces?format=json".to_owned()),
        ("first page, HTML", "/traces".to_owned()),
        ("status=error", "/traces?format=json&status=error".to_owned()),
        ("language=node", "/traces?format=json&language=node".to_owned()),
        ("status=error&language=node", "/traces?format=json&status=error&language=node".to_owned()),
        (&format!("page {} (cursor)", DEEP_PAGES + 1), format!("/traces?format=json{cursor}")),
        ("search the unique word", format!("/traces?format=json&q={NEEDLE}")),
        ("search a common word", format!("/traces?format=json&q={COMMON}")),
        ("search a common word, status=error", format!("/traces?format=json&status=error&q={COMMON}")),
        ("search 2 characters (scan)", "/traces?format=json&q=yu".to_owned()),
        ("one trace, JSON", format!("/trace/{parent}?format=json")),
    ];
    let mut figures = Vec::new();
    for (name, path) in queries {
        figures.push(measure(client, base, name, &path, runs).await);
        eprintln!("measured {name}");
    }
    figures
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse().smoked();
    let client = tracebox::http_client::builder().pool_idle_timeout(Duration::from_secs(30)).build().expect("a client");

    eprintln!("seeding {} traces (baseline)", args.baseline);
    let small = seed(args.baseline).await;
    eprintln!("seeding {} traces", args.traces);
    let big = seed(args.traces).await;

    let mut tables = Vec::new();
    for store in [&small, &big] {
        let server = Server::start(&args.tracebox, store.dir.path());
        // The needle is in exactly one trace, whatever the store's size.
        let found: Value =
            serde_json::from_str(&get(&client, &format!("{}/traces?format=json&q={NEEDLE}", server.url)).await)
                .expect("JSON");
        assert_eq!(found["traces"].as_array().map(Vec::len), Some(1), "the needle is found once: {found}");
        tables.push(measure_all(&client, &server.url, store.parent, args.runs).await);
    }

    if args.smoke {
        println!("SMOKE RUN: every query ran, on stores too small for the figures to mean anything");
    }
    println!(
        "trace store at scale: {} traces, baseline {} traces; {} timed requests per query after {WARM_UP} warm-ups; {} cores",
        args.traces,
        args.baseline,
        args.runs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    for (store, count) in [(&small, args.baseline), (&big, args.traces)] {
        let bytes = database_bytes(store.dir.path());
        println!(
            "seeded {count} traces in {:.1} s ({:.0} traces/s); database {:.1} MiB ({:.1} KiB a trace)",
            store.elapsed.as_secs_f64(),
            count as f64 / store.elapsed.as_secs_f64(),
            bytes as f64 / (1024.0 * 1024.0),
            bytes as f64 / 1024.0 / count.max(1) as f64,
        );
    }
    println!();
    println!(
        "| query | rows | {} traces: median ms | {} traces: median ms | p90 ms | p99 ms | max ms |",
        args.baseline, args.traces
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (baseline, figures) in tables[0].iter().zip(&tables[1]) {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            figures.name,
            figures.rows,
            baseline.percentile(0.5),
            figures.percentile(0.5),
            figures.percentile(0.9),
            figures.percentile(0.99),
            figures.percentile(1.0),
        );
    }
}
