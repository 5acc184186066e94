//! `tracebox batch PROMPTSET`: check the prompt set (exit 2 naming the line when it cannot run),
//! run it — in this process, or as a client of a running server (`--server`) — with a progress
//! bar, write the results file, and end with the summary table.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use tracebox_model::record::BatchSummary;
use tracebox_model::{Source, TraceId};

use tracebox::batch::{self, BatchOptions, BatchReport, Defaults, ItemResult, SummaryTable};
use tracebox::config::Config;
use tracebox::services::Services;

use super::super::BatchArgs;

/// Exit code of a prompt set that cannot run.
const INVALID: u8 = 2;

pub fn run(config: Config, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let name = args.promptset.display().to_string();
    let invalid = |error: &dyn std::fmt::Display| {
        eprintln!("tracebox: the prompt set {name} cannot run: {error}");
        Ok(ExitCode::from(INVALID))
    };
    let text = match std::fs::read_to_string(&args.promptset) {
        Ok(text) => text,
        Err(error) => return invalid(&format!("cannot read it: {error}")),
    };
    let parsed = match batch::parse(&text) {
        Ok(parsed) => parsed,
        Err(error) => return invalid(&error),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    // A server checks the items against its own limits; here they are checked against ours.
    if let Some(server) = &args.server {
        let mut progress = Progress::new(parsed.len(), args.out.as_deref())?;
        let report = match runtime.block_on(remote(server, &name, &text, &args, &mut progress))? {
            Remote::Report(report) => report,
            Remote::Invalid(message) => return invalid(&message),
        };
        progress.finish(&report)?;
        return Ok(ExitCode::from(report.exit_code()));
    }
    let defaults = Defaults { model: args.model.clone(), timeout: args.timeout };
    let (allowed, calls) = (config.request_limits(), config.claude_settings().calls);
    let checked = match batch::check(parsed, &allowed, &calls, &defaults, Source::Batch) {
        Ok(checked) => checked,
        Err(error) => return invalid(&error),
    };
    if batch::asks_claude(&checked) && config.anthropic_api_key.is_none() {
        anyhow::bail!(
            "the prompt set {name} has prompt items, which need Claude: set ANTHROPIC_API_KEY (or run the fake: see \"Without a key\" in docs/api.md)"
        );
    }
    let mut progress = Progress::new(checked.len(), args.out.as_deref())?;
    let options = BatchOptions { name, concurrency: usize::from(args.concurrency), source: Source::Batch, owner: None };
    let services = Services::open(config, runtime.handle().clone())?;
    let report = runtime.block_on(async {
        services.recover().await?;
        services.sandbox.check_runtime().await?;
        services.sandbox.ensure_image(false, &mut |line| tracing::info!(target: "tracebox::image", "{line}")).await?;
        let announce = progress.announce();
        let report = batch::run_batch(&services, checked, &options, announce, |item| progress.item(item)).await;
        // The pool's containers, and anything else of this process, go with it.
        services.shutdown().await;
        Ok::<_, anyhow::Error>(report?)
    });
    let report = report?;
    progress.finish(&report)?;
    Ok(ExitCode::from(report.exit_code()))
}

/// What a server made of the prompt set.
enum Remote {
    Report(BatchReport),
    /// It refused the set (400 invalid_prompt_set), saying why.
    Invalid(String),
}

/// Send the prompt set to a server's `POST /batch` and follow its stream of results.
async fn remote(
    server: &str,
    name: &str,
    promptset: &str,
    args: &BatchArgs,
    progress: &mut Progress,
) -> anyhow::Result<Remote> {
    let url = format!("{}/batch", server.trim_end_matches('/'));
    let body = json!({"promptset": promptset, "name": name, "concurrency": args.concurrency, "model": args.model, "timeout": args.timeout});
    let client = tracebox::http_client::builder().connect_timeout(Duration::from_secs(10)).build()?;
    let request = client.post(&url).json(&body);
    let request = match args.api_key.as_deref().filter(|key| !key.is_empty()) {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let error: Value = response.json().await.unwrap_or_default();
        let message = error["error"]["message"].as_str().unwrap_or("no message").to_owned();
        if error["error"]["code"] == "invalid_prompt_set" {
            return Ok(Remote::Invalid(message));
        }
        anyhow::bail!("{url} answered {status}: {message}");
    }
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    let mut results = Vec::new();
    let mut batch_id = None;
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.with_context(|| format!("the stream from {url} broke off"))?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let message: Value = serde_json::from_slice(&line).context("the server sent a line that is not JSON")?;
            match message["type"].as_str() {
                Some("started") => {
                    let id: TraceId = serde_json::from_value(message["batch_id"].clone())?;
                    batch_id = Some(id);
                    progress.started(id);
                }
                Some("item") => {
                    let item: ItemResult = serde_json::from_value(message["item"].clone())?;
                    progress.item(&item);
                    results.push(item);
                }
                Some("done") => {
                    let summary: BatchSummary = serde_json::from_value(message["summary"].clone())?;
                    let batch_id = batch_id.context("the server never said which batch this is")?;
                    return Ok(Remote::Report(BatchReport { batch_id, summary, items: results }));
                }
                Some("error") => anyhow::bail!("the batch failed on the server: {}", message["error"]["message"]),
                // `ping` (the server is alive) and kinds added later.
                _ => {}
            }
        }
    }
    anyhow::bail!("the stream from {url} ended before the batch did")
}

/// The progress bar (or, off a terminal, a line per item) and the results file.
struct Progress {
    bar: ProgressBar,
    terminal: bool,
    out: Option<BufWriter<std::fs::File>>,
    done: usize,
    total: usize,
}

impl Progress {
    fn new(total: usize, out: Option<&Path>) -> anyhow::Result<Progress> {
        let terminal = std::io::stderr().is_terminal();
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")?;
        bar.set_style(style);
        if terminal {
            bar.enable_steady_tick(Duration::from_millis(120));
        } else {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let out = out
            .map(|path| {
                std::fs::File::create(path).with_context(|| format!("cannot write the results to {}", path.display()))
            })
            .transpose()?
            .map(BufWriter::new);
        Ok(Progress { bar, terminal, out, done: 0, total })
    }

    fn started(&self, batch_id: TraceId) {
        (self.announce())(batch_id)
    }

    /// What says the batch started, apart from `self` (the run borrows both at once).
    fn announce(&self) -> impl FnOnce(TraceId) + use<> {
        let (bar, total, terminal) = (self.bar.clone(), self.total, self.terminal);
        move |batch_id| {
            let line = format!("batch {batch_id}: {total} items");
            if terminal { bar.println(line) } else { eprintln!("{line}") }
        }
    }

    fn item(&mut self, item: &ItemResult) {
        self.done += 1;
        let line = format!(
            "{} {} {} ({:.0} ms){}",
            item.id,
            item.outcome.as_str(),
            item.status,
            item.duration_ms,
            item.failures.first().map(|f| format!(": {f}")).unwrap_or_default()
        );
        if self.terminal {
            self.bar.set_message(line);
        } else {
            eprintln!("[{}/{}] {line}", self.done, self.total);
        }
        self.bar.inc(1);
        if let Some(out) = &mut self.out
            && let Err(error) =
                serde_json::to_writer(&mut *out, item).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"))
        {
            self.bar.println(format!("tracebox: writing the results failed: {error}"));
        }
    }

    fn finish(mut self, report: &BatchReport) -> anyhow::Result<()> {
        self.bar.finish_and_clear();
        if let Some(mut out) = self.out.take() {
            out.flush().context("cannot write the results")?;
        }
        let mut failing: Vec<&ItemResult> = report.items.iter().filter(|i| !i.passed).collect();
        failing.sort_by_key(|item| batch::position(&item.at));
        for item in &failing {
            let why = if item.failures.is_empty() { item.status.clone() } else { item.failures.join("; ") };
            eprintln!("{}: {} ({}): {why}", item.outcome.as_str(), item.id, item.at);
        }
        eprintln!("\n{}\n\nbatch trace: /trace/{}", SummaryTable(&report.summary), report.batch_id);
        Ok(())
    }
}
