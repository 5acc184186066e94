//! The trace page's view of a trace: what a person needs to read a run at a glance — why it
//! ended, in a sentence; the limits in units; output with its size, folded when long; the
//! timeline as offsets, steps and proportional bars. The JSON form stays the raw record.

mod batch;
mod claude;

use askama::Template;
use serde_json::Value;

use batch::BatchView;
use claude::ClaudeView;

use super::traces::{human_duration, short_time};
use crate::files::{Artifact, Omitted, artifact_preview_url, is_image};
use crate::policy::{PolicyHit, Redaction};
use crate::trace::{EventView, TraceDetail};

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

/// The sentence for a trace's end. `message` is the trace's `output.message` (the runner's
/// reason, with the limit and the setting that raises it), shown under the headline.
pub fn explain(status: &str, exit_code: Option<i64>, message: &str) -> Explanation {
    let headline = match status {
        "running" => "Still running.".to_owned(),
        "success" => "Finished normally: the program exited with code 0.".to_owned(),
        "error" => match exit_code {
            Some(code @ 129..=159) => {
                format!("Ended by signal {} (exit code {code}): the program was stopped from inside.", code - 128)
            }
            Some(code) => format!("Failed: the program exited with code {code}."),
            None => "Failed without an exit code.".to_owned(),
        },
        "timeout" => "Timed out: the program ran past its time limit, and its container was killed.".to_owned(),
        "oom" => "Out of memory: the kernel killed the program for using more than its memory limit.".to_owned(),
        "output_limit" => {
            "Output limit reached: the program printed more than allowed, so it was stopped and its output cut."
                .to_owned()
        }
        "killed" => "Killed: its client stopped the run before it finished.".to_owned(),
        "blocked" => "Refused: the security policy blocked this code, so it never ran.".to_owned(),
        "internal_error" => "tracebox failed to run this program (not the program's fault).".to_owned(),
        other => format!("Ended with status {other}."),
    };
    let detail = Some(message.trim()).filter(|m| !m.is_empty()).map(sentence);
    Explanation { headline, detail }
}

/// `text` with a capital first letter and a full stop, as the messages are written lowercase.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// One output stream as the page shows it.
pub struct OutputPane<'a> {
    /// `stdout` or `stderr`: the element id, the download path and the label.
    pub name: &'static str,
    pub text: &'a str,
    pub lines: usize,
    pub size: String,
    pub folded: bool,
}

impl<'a> OutputPane<'a> {
    fn of(name: &'static str, text: &'a str) -> OutputPane<'a> {
        let lines = text.lines().count();
        OutputPane {
            name,
            text,
            lines,
            size: human_bytes(text.len() as u64),
            folded: lines > FOLD_LINES || text.chars().count() > FOLD_CHARS,
        }
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

/// `1048576` as `1 MiB`: limits and sizes in the units people think in.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The limits a run had, labelled and in units.
fn limits(input: &Value) -> Vec<(String, String)> {
    let Some(limits) = input.get("limits").and_then(Value::as_object) else {
        return Vec::new();
    };
    limits
        .iter()
        .map(|(key, value)| {
            let number = value.as_f64();
            let (label, shown) = match (key.as_str(), number) {
                ("timeout", Some(secs)) => ("time", format!("{secs} s")),
                ("memory_bytes", Some(bytes)) => ("memory", human_bytes(bytes as u64)),
                ("cpus", Some(cpus)) => ("CPUs", format!("{cpus}")),
                ("pids", Some(pids)) => ("processes and threads", format!("{pids}")),
                ("output_bytes", Some(bytes)) => ("output (stdout + stderr)", human_bytes(bytes as u64)),
                (other, _) => (other, value.to_string()),
            };
            (label.to_owned(), shown)
        })
        .collect()
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
    fn of(trace_id: crate::trace::TraceId, artifact: Artifact) -> ArtifactRow {
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

/// The trace page.
#[derive(Template)]
#[template(path = "trace.html")]
pub struct DetailPage<'a> {
    trace: &'a TraceDetail,
    explanation: Explanation,
    code: &'a str,
    /// highlight.js's name for the code's language.
    highlight: &'static str,
    stdin: &'a str,
    outputs: [OutputPane<'a>; 2],
    hits: Vec<PolicyHit>,
    redactions: Vec<Redaction>,
    limits: Vec<(String, String)>,
    env_names: Vec<&'a str>,
    flags: Vec<&'static str>,
    timeline: Vec<TimelineRow>,
    duration: Option<String>,
    /// For an upload or download: who moved which files (no code, output or limits then).
    transfer: Option<Transfer>,
    /// For a Claude call: the question, the reply, tokens and attempts.
    claude: Option<ClaudeView>,
    /// For a batch: its summary and items.
    batch: Option<BatchView>,
    artifacts: Vec<ArtifactRow>,
    artifacts_omitted: Vec<Omitted>,
}

/// An upload or download as shown: the client and the files, sizes in units.
#[derive(Debug, PartialEq)]
pub struct Transfer {
    client: String,
    files: Vec<TransferFile>,
}

#[derive(Debug, PartialEq)]
struct TransferFile {
    name: String,
    size: String,
    sha256: String,
    /// The name asked for, when the file was stored under another.
    requested: String,
}

impl Transfer {
    /// The transfer a trace of kind `upload` or `download` records; None for other kinds.
    fn of(kind: &str, input: &Value, output: &Value) -> Option<Transfer> {
        let file = |record: &Value| TransferFile {
            name: str_at(record, "name").to_owned(),
            size: record.get("size").and_then(Value::as_u64).map(human_bytes).unwrap_or_default(),
            sha256: str_at(record, "sha256").to_owned(),
            requested: str_at(record, "requested_name").to_owned(),
        };
        let files = match kind {
            "upload" => output.get("files").and_then(Value::as_array).into_iter().flatten().map(file).collect(),
            "download" if output.get("name").is_some() => vec![file(output)],
            "download" => vec![file(input)],
            _ => return None,
        };
        Some(Transfer { client: str_at(input, "client").to_owned(), files })
    }

    /// Why it ended, in words.
    fn explain(&self, kind: &str, status: &str, output: &Value) -> Explanation {
        let message = output.get("error").map(|error| str_at(error, "message")).unwrap_or_default();
        let headline = match (kind, status) {
            (_, "running") => "Still going.".to_owned(),
            ("upload", "success") => match self.files.len() {
                1 => "Uploaded 1 file.".to_owned(),
                n => format!("Uploaded {n} files."),
            },
            ("download", "success") => "Downloaded.".to_owned(),
            (_, "error") => format!("Refused: nothing was {}.", if kind == "upload" { "stored" } else { "sent" }),
            (_, other) => format!("Ended with status {other}."),
        };
        let detail = Some(message.trim()).filter(|m| !m.is_empty()).map(sentence);
        Explanation { headline, detail }
    }
}

impl<'a> DetailPage<'a> {
    pub fn of(trace: &'a TraceDetail) -> DetailPage<'a> {
        let (input, output) = (&trace.input, &trace.output);
        let hits = decode::<Vec<PolicyHit>>(output.get("policy_hits"))
            .filter(|hits| !hits.is_empty())
            .or_else(|| decode(input.get("policy_hits")))
            .unwrap_or_default();
        let flags = ["timed_out", "oom_killed", "truncated", "invalid_utf8"]
            .into_iter()
            .filter(|flag| output.get(*flag).and_then(Value::as_bool) == Some(true))
            .collect();
        let summary = &trace.summary;
        let transfer = Transfer::of(&summary.kind, input, output);
        let claude = ClaudeView::of(&summary.kind, input, output);
        let batch = BatchView::of(&summary.kind, input, output);
        let explanation = match (&transfer, &claude, &batch) {
            (Some(transfer), _, _) => transfer.explain(&summary.kind, &summary.status, output),
            (_, Some(claude), _) => claude.explain(&summary.status, output, trace.children.len()),
            (_, _, Some(batch)) => batch.explain(&summary.status),
            _ => explain(&summary.status, summary.exit_code, str_at(output, "message")),
        };
        DetailPage {
            trace,
            explanation,
            code: str_at(input, "code"),
            highlight: match summary.language.as_deref() {
                Some("node") => "javascript",
                _ => "python",
            },
            stdin: str_at(input, "stdin"),
            outputs: [
                OutputPane::of("stdout", str_at(output, "stdout")),
                OutputPane::of("stderr", str_at(output, "stderr")),
            ],
            hits,
            redactions: decode(output.get("redactions")).unwrap_or_default(),
            limits: limits(input),
            env_names: input
                .get("env_names")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
            flags,
            timeline: timeline(&trace.events, summary.duration_ms),
            duration: summary.duration_ms.map(human_duration),
            transfer,
            claude,
            batch,
            artifacts: decode::<Vec<Artifact>>(output.get("artifacts"))
                .unwrap_or_default()
                .into_iter()
                .map(|artifact| ArtifactRow::of(summary.id, artifact))
                .collect(),
            artifacts_omitted: decode(output.get("artifacts_omitted")).unwrap_or_default(),
        }
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

fn decode<T: serde::de::DeserializeOwned>(value: Option<&Value>) -> Option<T> {
    value.and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn str_at<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_ending_is_explained_in_words() {
        let timeout = explain("timeout", None, "killed after its 2 s timeout (request `timeout` up to 60 s)");
        assert!(timeout.headline.starts_with("Timed out"));
        assert_eq!(timeout.detail.as_deref(), Some("Killed after its 2 s timeout (request `timeout` up to 60 s)."));
        assert!(explain("oom", None, "").headline.contains("memory limit"));
        assert!(explain("output_limit", None, "").headline.contains("output cut"));
        assert!(explain("killed", None, "").headline.contains("client stopped"));
        assert!(explain("blocked", None, "").headline.contains("never ran"));
        assert_eq!(explain("error", Some(2), "").headline, "Failed: the program exited with code 2.");
        assert!(explain("error", Some(137), "").headline.starts_with("Ended by signal 9"));
        assert_eq!(explain("success", Some(0), " ").detail, None);
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
    fn limits_read_in_units() {
        let input =
            json!({"limits": {"timeout": 7.0, "memory_bytes": 268_435_456, "output_bytes": 1_048_576, "pids": 128}});
        let shown = limits(&input);
        assert!(shown.contains(&("time".to_owned(), "7 s".to_owned())));
        assert!(shown.contains(&("memory".to_owned(), "256 MiB".to_owned())));
        assert!(shown.contains(&("output (stdout + stderr)".to_owned(), "1 MiB".to_owned())));
        assert_eq!(human_bytes(1_536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }

    #[test]
    fn long_output_is_folded_and_short_output_is_not() {
        let long = "line\n".repeat(FOLD_LINES + 1);
        assert!(OutputPane::of("stdout", &long).folded);
        assert!(!OutputPane::of("stdout", "hello\n").folded);
        assert!(OutputPane::of("stdout", &"x".repeat(FOLD_CHARS + 1)).folded);
    }

    #[test]
    fn a_transfer_shows_its_client_and_files_instead_of_code() {
        let input = json!({"client": "127.0.0.1:5555", "overwrite": false});
        let output = json!({"files": [
            {"name": "a-1.csv", "size": 2048, "sha256": "ab", "requested_name": "a.csv"},
            {"name": "b.csv", "size": 3, "sha256": "cd"},
        ]});
        let transfer = Transfer::of("upload", &input, &output).unwrap();
        assert_eq!(transfer.client, "127.0.0.1:5555");
        assert_eq!(
            transfer.files[0],
            TransferFile {
                name: "a-1.csv".into(),
                size: "2 KiB".into(),
                sha256: "ab".into(),
                requested: "a.csv".into(),
            }
        );
        assert_eq!(transfer.explain("upload", "success", &output).headline, "Uploaded 2 files.");
        assert!(Transfer::of("execution", &input, &output).is_none());

        let refused = json!({"error": {"code": "no_such_file", "message": "no file named \"x\" in uploads/"}});
        let download = Transfer::of("download", &json!({"name": "x"}), &refused).unwrap();
        assert_eq!(download.files[0].name, "x");
        let explained = download.explain("download", "error", &refused);
        assert_eq!(explained.headline, "Refused: nothing was sent.");
        assert_eq!(explained.detail.as_deref(), Some("No file named \"x\" in uploads/."));
    }
}
