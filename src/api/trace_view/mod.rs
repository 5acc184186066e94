//! The trace page's view of a trace: what a person needs to read a run at a glance — why it
//! ended, in a sentence; the limits in units; output with its size, folded when long; the
//! timeline as offsets, steps and proportional bars. The JSON form stays the raw record.

mod batch;
mod claude;
mod handler;
mod pages;
mod sandbox;
mod schedule;
mod tool;

use askama::Template;
use serde_json::Value;
use tracebox_model::{
    Artifact, Execution, Omitted, PolicyHit, Record, Redaction, RunLimits, Status, TraceId, TraceKind, TraceStatus,
};

use batch::BatchView;
use claude::ClaudeView;
use handler::HandlerView;
use pages::{PageLink, children_pages};
pub use sandbox::STEPS_PAGE;
use sandbox::{SandboxView, StepOf};
use schedule::ScheduleView;

use tracebox_model::record::{DownloadInput, DownloadOutput, StoredFile, UploadInput, UploadOutput};
use tracebox_model::sandbox::{OpInput, OpOutput, SandboxStatus};

use super::units::{human_bytes, human_duration, short_time};
use crate::files::{artifact_preview_url, is_image};
use crate::runner::REFUSED_KEPT_BYTES;
use crate::trace::{EventView, StepPage, TraceDetail};

/// Output longer than this many lines, or characters, shows folded: its first part, and a
/// button that shows the rest. Long output otherwise buries everything below it.
const FOLD_LINES: usize = 40;
const FOLD_CHARS: usize = 6_000;

/// Why a run ended, in words: a headline, and the run's own message when it has one.
#[derive(Debug, PartialEq)]
pub struct Explanation {
    pub headline: String,
    pub detail: Option<String>,
}

/// The sentence for a run's end. `message` is the run's own (the runner's reason, with the
/// limit and the setting that raises it), shown under the headline.
pub fn explain(status: TraceStatus, exit_code: Option<i64>, message: &str) -> Explanation {
    let headline = match status {
        TraceStatus::Running => "Still running.".to_owned(),
        TraceStatus::Ended(Status::Success) => "Finished normally: the program exited with code 0.".to_owned(),
        TraceStatus::Ended(Status::Error) => match exit_code {
            Some(code @ 129..=159) => {
                format!("Ended by signal {} (exit code {code}): the program was stopped from inside.", code - 128)
            }
            Some(code) => format!("Failed: the program exited with code {code}."),
            None => "Failed without an exit code.".to_owned(),
        },
        TraceStatus::Ended(Status::Timeout) => {
            "Timed out: the program ran past its time limit, and its container was killed.".to_owned()
        }
        TraceStatus::Ended(Status::Oom) => {
            "Out of memory: the kernel killed the program for using more than its memory limit.".to_owned()
        }
        TraceStatus::Ended(Status::OutputLimit) => {
            "Output limit reached: the program printed more than allowed, so it was stopped and its output cut."
                .to_owned()
        }
        TraceStatus::Ended(Status::Killed) => "Killed: its client stopped the run before it finished.".to_owned(),
        TraceStatus::Ended(Status::Blocked) => {
            "Refused: the policy's screen blocked this code, so it never ran.".to_owned()
        }
        TraceStatus::Ended(Status::InternalError) => {
            "tracebox failed to run this program (not the program's fault).".to_owned()
        }
    };
    Explanation { headline, detail: detail(message) }
}

/// A message under a headline, as a sentence; none when it is blank.
fn detail(message: &str) -> Option<String> {
    Some(message.trim()).filter(|m| !m.is_empty()).map(sentence)
}

/// `text` with a capital first letter and a full stop, as the messages are written lowercase.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?', '…']) {
        out.push('.');
    }
    out
}

/// One output stream as the page shows it.
pub struct OutputPane {
    /// `stdout` or `stderr`: the element id, the download path and the label.
    pub name: &'static str,
    pub text: String,
    pub lines: usize,
    pub size: String,
    pub folded: bool,
}

impl OutputPane {
    fn of(name: &'static str, text: String) -> OutputPane {
        let lines = text.lines().count();
        let size = human_bytes(text.len() as u64);
        let folded = lines > FOLD_LINES || text.chars().count() > FOLD_CHARS;
        OutputPane { name, text, lines, size, folded }
    }
}

/// One row of the timeline: where the event sits, how long the step before it took, and a
/// bar (in percent of the whole run) from the previous event to this one.
pub struct TimelineRow {
    pub offset: String,
    pub step: String,
    pub name: String,
    pub detail: String,
    pub bar_start: String,
    pub bar_width: String,
}

/// The timeline, scaled to the run's duration (or to its last event, for a run still going).
fn timeline(events: &[EventView], duration_ms: Option<f64>) -> Vec<TimelineRow> {
    let last = events.iter().map(|e| e.offset_ms).fold(0.0, f64::max);
    let total = duration_ms.unwrap_or(0.0).max(last).max(f64::EPSILON);
    let mut previous: f64 = 0.0;
    events
        .iter()
        .map(|event| {
            let start = previous.min(event.offset_ms);
            let step = event.offset_ms - start;
            previous = event.offset_ms;
            TimelineRow {
                offset: format!("{:.1} ms", event.offset_ms),
                step: if step > 0.0 { format!("+{}", human_duration(step)) } else { String::new() },
                name: event.name.clone(),
                detail: describe(&event.detail),
                bar_start: format!("{:.2}", start / total * 100.0),
                // A step too short to see still gets a sliver, so every event has a mark.
                bar_width: format!("{:.2}", (step / total * 100.0).max(0.4)),
            }
        })
        .collect()
}

/// An event's detail as `key: value` pairs, strings unquoted: easier to read than JSON.
fn describe(detail: &Value) -> String {
    match detail {
        Value::Null => String::new(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => format!("{key}: {text}"),
                other => format!("{key}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The limits a run had, labelled and in units.
fn limits(limits: &RunLimits) -> Vec<(String, String)> {
    let RunLimits { timeout, memory_bytes, cpus, pids, output_bytes } = limits;
    [
        ("time", format!("{} s", timeout.as_secs_f64())),
        ("memory", human_bytes(*memory_bytes)),
        ("CPUs", format!("{cpus}")),
        ("processes and threads", format!("{pids}")),
        ("output (stdout + stderr)", human_bytes(*output_bytes)),
    ]
    .into_iter()
    .map(|(label, shown)| (label.to_owned(), shown))
    .collect()
}

/// Why the code and stdin shown are only their start, when they are.
fn input_cut(omitted_bytes: u64) -> Option<String> {
    (omitted_bytes > 0).then(|| {
        format!(
            "Only the start of this request's code and stdin was kept ({} of each): {} more were left out, as for \
             every request refused before it ran.",
            human_bytes(REFUSED_KEPT_BYTES as u64),
            human_bytes(omitted_bytes)
        )
    })
}

/// An artifact as the page lists it.
#[derive(Debug, PartialEq)]
pub struct ArtifactRow {
    name: String,
    size: String,
    sha256: String,
    /// The traced download.
    url: String,
    /// For an image: where the page shows it from.
    preview: Option<String>,
}

impl ArtifactRow {
    fn of(trace_id: TraceId, artifact: Artifact) -> ArtifactRow {
        let preview = is_image(&artifact.name).then(|| artifact_preview_url(trace_id, &artifact.name));
        ArtifactRow {
            size: human_bytes(artifact.size),
            name: artifact.name,
            sha256: artifact.sha256,
            url: artifact.url,
            preview,
        }
    }
}

/// What a run ran, as the page shows it.
struct Code {
    text: String,
    stdin: String,
    env_names: Vec<String>,
    hits: Vec<PolicyHit>,
    /// Bytes of code and stdin the record left out (a request refused before it ran).
    omitted_bytes: u64,
}

/// What a page shows besides the trace itself, read from the store by the handler.
#[derive(Debug, Default)]
pub struct Related {
    /// A sandbox's page of steps.
    pub steps: Option<StepPage>,
    /// A sandbox still running: running or paused, when its record is still kept.
    pub sandbox_state: Option<SandboxStatus>,
    /// A step of a sandbox: its place among the sandbox's steps (0-based); None for any other
    /// trace (a command a tool call ran included).
    pub position: Option<u64>,
    /// Where the window of `trace.children` starts (0-based).
    pub children_from: u64,
}

/// The trace page.
#[derive(Template)]
#[template(path = "trace.html")]
pub struct DetailPage<'a> {
    trace: &'a TraceDetail,
    /// The page offers to sign out.
    signed_in: bool,
    explanation: Explanation,
    code: String,
    /// highlight.js's name for the code's language.
    highlight: &'static str,
    stdin: String,
    /// For a request refused before it ran: that only the start of its code and stdin was kept.
    input_cut: Option<String>,
    outputs: [OutputPane; 2],
    hits: Vec<PolicyHit>,
    redactions: Vec<Redaction>,
    limits: Vec<(String, String)>,
    /// Where a run ran: its node, and the nodes that failed it before its program started.
    placement: Vec<(String, String)>,
    env_names: Vec<String>,
    flags: Vec<&'static str>,
    timeline: Vec<TimelineRow>,
    duration: Option<String>,
    /// For an upload or download: who moved which files (no code, output or limits then).
    transfer: Option<Transfer>,
    /// For a Claude call: the question, the reply, tokens and attempts.
    claude: Option<ClaudeView>,
    /// For a batch: its summary and items.
    batch: Option<BatchView>,
    schedule: Option<ScheduleView>,
    /// For a sandbox: its facts, where it stands, its steps.
    sandbox: Option<SandboxView>,
    /// For a step of a sandbox: the way back to it.
    step_of: Option<StepOf>,
    /// For an operation on a sandbox: what it was, in facts.
    details: Option<Details>,
    /// `Children 1–1,000 of 5,000` when they are more than a page shows, and links to the others.
    children_range: String,
    children_pages: Vec<PageLink>,
    artifacts: Vec<ArtifactRow>,
    artifacts_omitted: Vec<Omitted>,
    /// For a handler run: the call, its event, its result or error.
    handler: Option<HandlerView>,
}

/// A titled list of facts: an operation on a sandbox.
#[derive(Debug, PartialEq)]
pub struct Details {
    title: &'static str,
    facts: Vec<(&'static str, String)>,
}

/// An upload or download as shown: the client and the files, sizes in units.
#[derive(Debug, PartialEq)]
pub struct Transfer {
    client: String,
    files: Vec<TransferFile>,
    /// Why it was refused, when it was.
    refusal: Option<String>,
}

#[derive(Debug, PartialEq)]
struct TransferFile {
    name: String,
    size: String,
    sha256: String,
    /// The name asked for, when the file was stored under another.
    requested: String,
}

impl TransferFile {
    fn stored(file: &StoredFile) -> TransferFile {
        TransferFile {
            name: file.name.clone(),
            size: human_bytes(file.size),
            sha256: file.sha256.clone(),
            requested: file.requested_name.clone().unwrap_or_default(),
        }
    }

    fn named(name: &str) -> TransferFile {
        TransferFile { name: name.to_owned(), size: String::new(), sha256: String::new(), requested: String::new() }
    }
}

impl Transfer {
    fn upload(input: &UploadInput, output: Option<&UploadOutput>) -> Transfer {
        let (files, refusal) = match output {
            None => (Vec::new(), None),
            Some(UploadOutput::Stored { files }) => (files.iter().map(TransferFile::stored).collect(), None),
            Some(UploadOutput::Refused { error }) => (Vec::new(), Some(error.message.clone())),
        };
        Transfer { client: input.client.clone().unwrap_or_default(), files, refusal }
    }

    fn download(input: &DownloadInput, output: Option<&DownloadOutput>) -> Transfer {
        let (file, refusal) = match output {
            None => (TransferFile::named(&input.name), None),
            Some(DownloadOutput::Served { name, size, sha256, .. }) => {
                let file = TransferFile {
                    name: name.clone(),
                    size: human_bytes(*size),
                    sha256: sha256.clone().unwrap_or_default(),
                    requested: String::new(),
                };
                (file, None)
            }
            Some(DownloadOutput::Refused { error }) => (TransferFile::named(&input.name), Some(error.message.clone())),
        };
        Transfer { client: input.client.clone().unwrap_or_default(), files: vec![file], refusal }
    }

    /// Why it ended, in words.
    fn explain(&self, kind: TraceKind, status: TraceStatus) -> Explanation {
        let headline = match (status, &self.refusal) {
            (TraceStatus::Running, _) => "Still going.".to_owned(),
            (_, Some(_)) => {
                format!("Refused: nothing was {}.", if kind == TraceKind::Upload { "stored" } else { "sent" })
            }
            (_, None) if kind == TraceKind::Download => "Downloaded.".to_owned(),
            (_, None) => match self.files.len() {
                1 => "Uploaded 1 file.".to_owned(),
                n => format!("Uploaded {n} files."),
            },
        };
        Explanation { headline, detail: self.refusal.as_deref().and_then(detail) }
    }
}

impl<'a> DetailPage<'a> {
    pub fn of(trace: &'a TraceDetail, related: Related, signed_in: bool) -> DetailPage<'a> {
        let summary = &trace.summary;
        let (children_range, children_pages) = children_pages(trace, related.children_from);
        let mut page = DetailPage {
            trace,
            signed_in,
            explanation: explain(summary.status, summary.exit_code, ""),
            code: String::new(),
            highlight: match summary.language.as_deref() {
                Some("node") => "javascript",
                _ => "python",
            },
            stdin: String::new(),
            input_cut: None,
            outputs: [OutputPane::of("stdout", String::new()), OutputPane::of("stderr", String::new())],
            hits: Vec::new(),
            redactions: Vec::new(),
            limits: Vec::new(),
            placement: Vec::new(),
            env_names: Vec::new(),
            flags: Vec::new(),
            timeline: timeline(&trace.events, summary.duration_ms),
            duration: summary.duration_ms.map(human_duration),
            transfer: None,
            claude: None,
            batch: None,
            schedule: None,
            sandbox: None,
            step_of: None,
            details: None,
            children_range,
            children_pages,
            artifacts: Vec::new(),
            artifacts_omitted: Vec::new(),
            handler: None,
        };
        // Every kind is shown its own way: a new kind fails to compile here until it is.
        // A running trace has no output yet (the store keeps `{}` until it ends).
        let output = if summary.status == TraceStatus::Running { Value::Null } else { trace.output.clone() };
        match Record::decode(summary.kind, trace.input.clone(), output) {
            Ok(Record::Execution { input, output }) => {
                let outcome = output.as_ref().and_then(|output| output.handler.as_ref());
                page.handler = input.handler.map(|call| HandlerView::of(call, outcome));
                let code = Code {
                    text: input.code,
                    stdin: input.stdin,
                    env_names: input.env_names,
                    hits: input.policy_hits,
                    omitted_bytes: input.omitted_bytes,
                };
                page.show_run(code, &input.limits, output.map(|output| *output));
            }
            Ok(Record::Command { input, output }) => {
                page.highlight = "bash";
                page.step_of = StepOf::of(trace, &input.sandbox_id, related.position);
                let code = Code {
                    text: input.cmd,
                    stdin: input.stdin,
                    env_names: input.env_names,
                    hits: input.policy_hits,
                    omitted_bytes: input.omitted_bytes,
                };
                page.show_run(code, &input.limits, output.map(|output| *output));
            }
            Ok(Record::Cell { input, output }) => {
                page.step_of = StepOf::of(trace, &input.sandbox_id, related.position);
                let code = Code {
                    text: input.code,
                    stdin: String::new(),
                    env_names: Vec::new(),
                    hits: input.policy_hits,
                    omitted_bytes: input.omitted_bytes,
                };
                page.show_run(code, &input.limits, output.map(|output| *output));
            }
            Ok(Record::Sandbox { input, output }) => {
                let steps =
                    related.steps.unwrap_or(StepPage { steps: Vec::new(), from: 0, total: trace.children_total });
                let view = SandboxView::of(summary.id, input, steps, related.sandbox_state);
                page.explanation = view.explain(summary.status, output.as_ref());
                page.sandbox = Some(view);
            }
            Ok(Record::SandboxOp { input, output }) => {
                page.step_of = StepOf::of(trace, &input.sandbox_id, related.position);
                page.show_op(input, output);
            }
            Ok(Record::Tool { input, output }) => {
                page.step_of = StepOf::of(trace, &input.sandbox_id, related.position);
                page.show_tool(input, output);
            }
            Ok(Record::Replay { input, output }) => page.show_replay(input, output),
            Ok(Record::Claude { input, output }) => {
                let view = ClaudeView::of(&input, output.as_ref());
                let ran = usize::try_from(trace.children_total).unwrap_or(usize::MAX);
                page.explanation = view.explain(summary.status, output.as_ref(), ran);
                page.claude = Some(view);
            }
            Ok(Record::Upload { input, output }) => page.show_transfer(Transfer::upload(&input, output.as_ref())),
            Ok(Record::Download { input, output }) => page.show_transfer(Transfer::download(&input, output.as_ref())),
            Ok(Record::Batch { input, output }) => {
                let view = BatchView::of(&input, output.as_ref());
                page.explanation = view.explain(summary.status);
                page.batch = Some(view);
            }
            Ok(Record::Schedule { input, output }) => {
                let view = ScheduleView::of(&input, output.as_ref());
                page.explanation = view.explain(summary.status);
                page.schedule = Some(view);
            }
            Err(error) => {
                page.explanation = Explanation {
                    headline: "This trace's record could not be read; its raw JSON is linked above.".to_owned(),
                    detail: detail(&error.to_string()),
                };
            }
        }
        page
    }

    /// A run (a program, a command, a cell): its code and stdin, output, what the policy found,
    /// limits and artifacts.
    fn show_run(&mut self, code: Code, run_limits: &RunLimits, output: Option<Execution>) {
        self.input_cut = input_cut(code.omitted_bytes);
        self.code = code.text;
        self.stdin = code.stdin;
        self.limits = limits(run_limits);
        self.env_names = code.env_names;
        self.hits = code.hits;
        let Some(output) = output else { return };
        if let Some(node) = &output.node {
            self.placement.push(("node".to_owned(), node.clone()));
        }
        for (i, attempt) in output.attempts.iter().enumerate() {
            self.placement.push((format!("attempt {} failed on {}", i + 1, attempt.node), attempt.error.clone()));
        }
        let summary = &self.trace.summary;
        self.explanation = explain(summary.status, summary.exit_code, output.message.as_deref().unwrap_or_default());
        if let Some(handler) = &self.handler {
            // The run's own message says why when it was stopped; else, what the handler gave.
            self.explanation.detail = self.explanation.detail.take().or_else(|| handler.detail());
        }
        if let Some(cell) = &output.cell {
            self.explanation.detail = match (&cell.error, &cell.result) {
                (Some(error), _) => Some(format!("{}: {}", error.name, error.value)),
                (None, Some(result)) => Some(format!("Result: {result}")),
                (None, None) => self.explanation.detail.take(),
            };
        }
        if !output.policy_hits.is_empty() {
            self.hits = output.policy_hits;
        }
        let flags = [
            ("timed_out", output.timed_out),
            ("oom_killed", output.oom_killed),
            ("truncated", output.truncated),
            ("invalid_utf8", output.invalid_utf8),
        ];
        self.flags = flags.into_iter().filter(|(_, set)| *set).map(|(flag, _)| flag).collect();
        self.outputs = [OutputPane::of("stdout", output.stdout), OutputPane::of("stderr", output.stderr)];
        self.redactions = output.redactions;
        self.artifacts = output.artifacts.into_iter().map(|artifact| ArtifactRow::of(summary.id, artifact)).collect();
        self.artifacts_omitted = output.artifacts_omitted;
    }

    /// An operation on a sandbox: which, on what, and how it went.
    fn show_op(&mut self, input: OpInput, output: Option<OpOutput>) {
        let mut facts = vec![("sandbox", input.sandbox_id), ("operation", input.op.as_str().to_owned())];
        facts.extend(input.path.map(|path| ("path", path)));
        facts.extend(input.snapshot.map(|snapshot| ("snapshot", snapshot)));
        let output = output.unwrap_or_default();
        facts.extend(output.bytes.map(|bytes| ("bytes", human_bytes(bytes))));
        facts.extend(output.snapshot_id.map(|id| ("snapshot made", id)));
        if let Some(error) = output.error {
            self.explanation.detail = detail(&error.message);
        }
        self.details = Some(Details { title: "Operation", facts });
    }

    fn show_transfer(&mut self, transfer: Transfer) {
        self.explanation = transfer.explain(self.trace.summary.kind, self.trace.summary.status);
        self.transfer = Some(transfer);
    }

    fn started(&self) -> String {
        short_time(&self.trace.summary.started_at)
    }

    fn flag_text(&self, flag: &str) -> &'static str {
        match flag {
            "timed_out" => "hit its time limit",
            "oom_killed" => "killed for memory",
            "truncated" => "output cut at the limit",
            "invalid_utf8" => "output had bytes that are not UTF-8 (shown as �)",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended(status: Status) -> TraceStatus {
        TraceStatus::Ended(status)
    }

    #[test]
    fn every_ending_is_explained_in_words() {
        let timeout =
            explain(ended(Status::Timeout), None, "killed after its 2 s timeout (request `timeout` up to 60 s)");
        assert!(timeout.headline.starts_with("Timed out"));
        assert_eq!(timeout.detail.as_deref(), Some("Killed after its 2 s timeout (request `timeout` up to 60 s)."));
        assert!(explain(ended(Status::Oom), None, "").headline.contains("memory limit"));
        assert!(explain(ended(Status::OutputLimit), None, "").headline.contains("output cut"));
        assert!(explain(ended(Status::Killed), None, "").headline.contains("client stopped"));
        assert!(explain(ended(Status::Blocked), None, "").headline.contains("never ran"));
        assert_eq!(explain(ended(Status::Error), Some(2), "").headline, "Failed: the program exited with code 2.");
        assert!(explain(ended(Status::Error), Some(137), "").headline.starts_with("Ended by signal 9"));
        assert_eq!(explain(ended(Status::Success), Some(0), " ").detail, None);
    }

    #[test]
    fn the_timeline_shows_steps_and_bars_in_proportion() {
        let event = |offset_ms: f64, name: &str, detail: Value| EventView { offset_ms, name: name.into(), detail };
        let events = [
            event(0.0, "container.created", Value::Null),
            event(25.0, "container.started", json!({"id": "abc", "ms": 3})),
            event(100.0, "finished", Value::Null),
        ];
        let rows = timeline(&events, Some(200.0));
        assert_eq!(rows[1].step, "+25 ms");
        assert_eq!((rows[1].bar_start.as_str(), rows[1].bar_width.as_str()), ("0.00", "12.50"));
        assert_eq!((rows[2].bar_start.as_str(), rows[2].bar_width.as_str()), ("12.50", "37.50"));
        assert_eq!(rows[1].detail, "id: abc, ms: 3");
        assert_eq!(rows[0].step, "");
    }

    #[test]
    fn a_running_trace_reads_as_running_not_as_a_record_that_cannot_be_read() {
        let input = json!({
            "sandbox_id": "sbx_1", "language": "python", "memory_mb": 256, "cpus": 1.0, "disk_mb": 256,
            "env_names": [], "metadata": {}, "files": [], "timeout_secs": 300.0, "on_timeout": "pause",
        });
        let trace = TraceDetail {
            summary: crate::trace::TraceSummary {
                id: TraceId::new(),
                parent_id: None,
                kind: TraceKind::Sandbox,
                status: TraceStatus::Running,
                source: "http".into(),
                language: Some("python".into()),
                started_at: "2026-12-05T08:00:00Z".into(),
                ended_at: None,
                duration_ms: None,
                exit_code: None,
                tenant: None,
                preview: String::new(),
            },
            input,
            // What the store holds for a trace until it ends.
            output: json!({}),
            events: Vec::new(),
            children: Vec::new(),
            children_total: 0,
        };
        let page = DetailPage::of(&trace, Related::default(), false);
        assert!(page.explanation.headline.starts_with("Running"), "{:?}", page.explanation);
    }

    #[test]
    fn limits_read_in_units() {
        let shown = limits(&RunLimits {
            timeout: std::time::Duration::from_secs(7),
            memory_bytes: 268_435_456,
            cpus: 1.0,
            pids: 128,
            output_bytes: 1_048_576,
        });
        assert!(shown.contains(&("time".to_owned(), "7 s".to_owned())));
        assert!(shown.contains(&("memory".to_owned(), "256 MiB".to_owned())));
        assert!(shown.contains(&("output (stdout + stderr)".to_owned(), "1 MiB".to_owned())));
    }

    #[test]
    fn a_cut_request_says_how_much_was_left_out_and_a_whole_one_says_nothing() {
        assert_eq!(input_cut(0), None);
        let cut = input_cut(1_306_624).unwrap();
        assert!(cut.contains("4 KiB of each") && cut.contains("1.2 MiB more were left out"), "{cut}");
    }

    #[test]
    fn long_output_is_folded_and_short_output_is_not() {
        let long = "line\n".repeat(FOLD_LINES + 1);
        assert!(OutputPane::of("stdout", long).folded);
        assert!(!OutputPane::of("stdout", "hello\n".into()).folded);
        assert!(OutputPane::of("stdout", "x".repeat(FOLD_CHARS + 1)).folded);
    }

    #[test]
    fn a_transfer_shows_its_client_and_files_instead_of_code() {
        let input = UploadInput { client: Some("127.0.0.1:5555".into()), overwrite: false };
        let stored = |name: &str, size, requested: Option<&str>| StoredFile {
            name: name.into(),
            size,
            sha256: "ab".into(),
            requested_name: requested.map(str::to_owned),
        };
        let output =
            UploadOutput::Stored { files: vec![stored("a-1.csv", 2048, Some("a.csv")), stored("b.csv", 3, None)] };
        let transfer = Transfer::upload(&input, Some(&output));
        assert_eq!(transfer.client, "127.0.0.1:5555");
        assert_eq!(
            transfer.files[0],
            TransferFile {
                name: "a-1.csv".into(),
                size: "2 KiB".into(),
                sha256: "ab".into(),
                requested: "a.csv".into()
            }
        );
        assert_eq!(transfer.explain(TraceKind::Upload, ended(Status::Success)).headline, "Uploaded 2 files.");

        let refused: DownloadOutput = serde_json::from_value(
            json!({"error": {"code": "no_such_file", "message": "no file named \"x\" in uploads/"}}),
        )
        .unwrap();
        let input = DownloadInput { name: "x".into(), run: None, client: None, range: None };
        let download = Transfer::download(&input, Some(&refused));
        assert_eq!(download.files[0].name, "x");
        let explained = download.explain(TraceKind::Download, ended(Status::Error));
        assert_eq!(explained.headline, "Refused: nothing was sent.");
        assert_eq!(explained.detail.as_deref(), Some("No file named \"x\" in uploads/."));
    }
}
