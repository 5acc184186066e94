//! What MCP costs over the API it translates: the same sandbox command (`true`) timed in one
//! run as `POST /sandboxes/{id}/commands` and as MCP's `run_command` over streamable HTTP
//! (`/mcp`, rmcp's client, one session), alternating call by call so both meet the same
//! machine; p50 and p95 of each and the difference against the target (≤ 5 ms).
//!
//!     cargo build --release --bin tracebox --example mcp_bench
//!     target/release/examples/mcp_bench --tracebox target/release/tracebox --runs 200
//!
//! Self-contained (it starts and stops its own server on a data directory of its own).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The target: a tool call costs at most this much over the same request made directly.
const TARGET_MS: f64 = 5.0;

#[derive(Parser)]
struct Args {
    /// The tracebox binary to serve with (a release build)
    #[arg(long, default_value = "target/release/tracebox")]
    tracebox: String,
    /// Calls of each kind measured (after a few warm-up calls)
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

/// A `tracebox serve` of this benchmark's, stopped with SIGTERM (then SIGKILL) on drop, so a
/// benchmark that fails half-way leaves neither server nor container.
struct Server {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Server {
    fn start(binary: &str) -> Server {
        let data = tempfile::tempdir().expect("a data directory");
        let mut child = Command::new(binary)
            .arg("serve")
            .env("TRACEBOX_ADDR", "127.0.0.1:0")
            .env("TRACEBOX_DATA_DIR", data.path())
            .env("TRACEBOX_LOG_FORMAT", "json")
            .env("TRACEBOX_LOG", "warn,tracebox::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tracebox starts");
        let stderr = child.stderr.take().expect("a piped stderr");
        let (found, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(entry) if entry["fields"]["url"].is_string() => {
                        let _ = found.send(entry["fields"]["url"].as_str().unwrap_or_default().to_owned());
                    }
                    Ok(entry) if entry["level"] != "ERROR" => {}
                    _ => eprintln!("{line}"),
                }
            }
        });
        let url = url.recv_timeout(Duration::from_secs(300)).expect("tracebox listens within 5 minutes");
        Server { child, url, _data: data }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// p50 and p95 of `samples`, in milliseconds.
fn quantiles(samples: &[Duration]) -> (f64, f64) {
    let ms: Vec<f64> = samples.iter().map(|s| s.as_secs_f64() * 1000.0).collect();
    let at = |p| tracebox::stats::percentile(&ms, p).unwrap_or(0.0);
    (at(0.50), at(0.95))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server = Server::start(&args.tracebox);
    let http = tracebox::http_client::builder().build().expect("an HTTP client");
    let made: Value = http
        .post(format!("{}/sandboxes", server.url))
        .json(&json!({"on_timeout": "kill"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("a sandbox")
        .json()
        .await
        .expect("its view");
    let id = made["sandbox_id"].as_str().expect("a sandbox id").to_owned();

    let transport = StreamableHttpClientTransport::with_client(
        tracebox::http_client::builder().build().expect("an HTTP client"),
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.url)),
    );
    let mcp = ClientConfig::default().serve(transport).await.expect("an MCP session");

    let direct = || async {
        let start = Instant::now();
        let reply: Value = http
            .post(format!("{}/sandboxes/{id}/commands", server.url))
            .json(&json!({"cmd": "true"}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("a reply");
        assert_eq!(reply["exit_code"], 0, "{reply}");
        start.elapsed()
    };
    let via_mcp = || async {
        let arguments = json!({"sandbox_id": id, "command": "true"});
        let Value::Object(arguments) = arguments else { unreachable!() };
        let start = Instant::now();
        let result =
            mcp.call_tool(CallToolRequestParams::new("run_command").with_arguments(arguments)).await.expect("a result");
        assert_ne!(result.is_error, Some(true), "{result:?}");
        start.elapsed()
    };

    for _ in 0..10 {
        direct().await;
        via_mcp().await;
    }
    let (mut directly, mut over_mcp) = (Vec::new(), Vec::new());
    for round in 0..args.runs {
        // Alternate which goes first, so neither always meets a warmer machine.
        if round % 2 == 0 {
            directly.push(direct().await);
            over_mcp.push(via_mcp().await);
        } else {
            over_mcp.push(via_mcp().await);
            directly.push(direct().await);
        }
    }
    let _ = mcp.cancel().await;
    let _ = http.delete(format!("{}/sandboxes/{id}", server.url)).send().await;

    let (direct_p50, direct_p95) = quantiles(&directly);
    let (mcp_p50, mcp_p95) = quantiles(&over_mcp);
    println!("sandbox command `true`, {} calls each, alternating, one session, loopback\n", args.runs);
    println!("| path | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!("| POST /sandboxes/{{id}}/commands | {direct_p50:.2} | {direct_p95:.2} |");
    println!("| MCP run_command over /mcp | {mcp_p50:.2} | {mcp_p95:.2} |");
    let (cost_p50, cost_p95) = (mcp_p50 - direct_p50, mcp_p95 - direct_p95);
    let verdict = if cost_p50 <= TARGET_MS { "within" } else { "OVER" };
    println!(
        "\nMCP costs {cost_p50:+.2} ms at p50 and {cost_p95:+.2} ms at p95 over the direct call: {verdict} the target (≤ {TARGET_MS} ms)"
    );
}
