//! A sandbox as its trace page shows it: what it was made with, where it stands (running,
//! paused, ended and why), and its steps in order, a page at a time: each with its offset from
//! the sandbox's start, how long it took, what it ran (a command, code, an agent's tool call as
//! it would be typed) and what came out (excerpts the store cut), and a link to the step's own
//! page.

use tracebox_model::sandbox::{SandboxInput, SandboxOp, SandboxOutput, SandboxStatus};
use tracebox_model::{Language, TraceId, TraceKind, TraceStatus};

use super::Explanation;
use super::pages::PageLink;
use super::tool::call_text;
use crate::api::units::{grouped, human_bytes, human_duration};
use crate::trace::{Excerpt, StepExcerpt, StepPage, ToolCallExcerpt, TraceDetail};

/// Steps on one page of a sandbox's trace page.
pub const STEPS_PAGE: u64 = 200;

/// The parts of a sandbox's trace people read.
#[derive(Debug, PartialEq)]
pub struct SandboxView {
    pub facts: Vec<(&'static str, String)>,
    pub steps: Vec<StepRow>,
    /// `Steps 201–400 of 1,000`; empty when it has none.
    pub range: String,
    /// Steps in all.
    pub total: u64,
    /// Links to the other pages of steps.
    pub pages: Vec<PageLink>,
    /// Where it stands, when it runs: running or paused (None: ended, or not known).
    state: Option<SandboxStatus>,
}

/// One step as the timeline lists it.
#[derive(Debug, PartialEq)]
pub struct StepRow {
    /// Its place among the sandbox's steps, from 1.
    pub number: u64,
    pub id: String,
    /// `command`, `cell`, the operation (`write`, `snapshot`, …), the tool (`tool: shell`) or
    /// `replay`.
    pub badge: String,
    pub status: String,
    /// `+12.40 s`: from the sandbox's start.
    pub offset: String,
    /// Empty while it runs.
    pub duration: String,
    pub exit_code: Option<i64>,
    /// `Command`, `Code` or `Call`.
    pub source_label: &'static str,
    /// highlight.js's name for a cell's language; empty for a command or a call (not
    /// highlighted).
    pub highlight: &'static str,
    pub source: Option<Shown>,
    /// stdout and stderr, or a tool call's output and diff: those with something on them.
    pub outputs: Vec<(&'static str, Shown)>,
    pub result: Option<Shown>,
    /// What a cell raised: `ZeroDivisionError: division by zero`.
    pub raised: Option<String>,
    pub traceback: Option<Shown>,
    /// Why it ended as it did, or why an operation failed.
    pub message: Option<String>,
    /// An operation's path, bytes and snapshots; a replay's steps and where it diverged.
    pub facts: Vec<(&'static str, String)>,
}

/// A step's way back to its sandbox: the page of steps it is on.
#[derive(Debug, PartialEq)]
pub struct StepOf {
    pub sandbox_id: String,
    /// The sandbox's page that lists the step, at the step.
    pub url: String,
    /// Its number among the steps, from 1.
    pub number: u64,
}

impl StepOf {
    /// A step's way back to its sandbox's page: the page of steps that lists it, at it. None
    /// unless it is a step of a sandbox (`position`, its place among the steps, is known): a
    /// command a tool call ran links to its call as any child to its parent.
    pub fn of(trace: &TraceDetail, sandbox_id: &str, position: Option<u64>) -> Option<StepOf> {
        let (parent, position) = (trace.summary.parent_id?, position?);
        let page = position / STEPS_PAGE * STEPS_PAGE;
        Some(StepOf {
            sandbox_id: sandbox_id.to_owned(),
            url: format!("{}#step-{}", page_url(parent, page), trace.summary.id),
            number: position + 1,
        })
    }
}

/// An excerpt as shown: its text, and when it is only part of the whole, what part.
#[derive(Debug, PartialEq)]
pub struct Shown {
    pub text: String,
    /// `the first 2,000 characters of 3.4 MiB`.
    pub cut: Option<String>,
}

impl Shown {
    /// The start of a text.
    fn head(excerpt: Excerpt) -> Shown {
        Shown::of(excerpt, "first")
    }

    /// The end of a text (a traceback's last frames and its error).
    fn tail(excerpt: Excerpt) -> Shown {
        Shown::of(excerpt, "last")
    }

    fn of(excerpt: Excerpt, part: &str) -> Shown {
        let cut = excerpt.is_cut().then(|| {
            let chars = grouped(excerpt.text.chars().count() as u64);
            format!("the {part} {chars} characters of {}", human_bytes(excerpt.bytes))
        });
        Shown { text: excerpt.text, cut }
    }
}

/// An excerpt's text, with `…` when it goes on: for a line in a sentence.
fn inline(excerpt: Excerpt) -> String {
    let cut = excerpt.is_cut();
    let mut text = excerpt.text;
    if cut {
        text.push('…');
    }
    text
}

impl SandboxView {
    /// The view of a sandbox's trace `id`: its facts, `page` of its steps, and `state` (running
    /// or paused) while it lives.
    pub fn of(id: TraceId, input: SandboxInput, page: StepPage, state: Option<SandboxStatus>) -> SandboxView {
        let language = input.language;
        let StepPage { steps, from, total } = page;
        let steps: Vec<StepRow> = (from + 1..).zip(steps).map(|(n, step)| StepRow::of(n, step, language)).collect();
        let range = match steps.len() as u64 {
            0 => String::new(),
            1 if total == 1 => "1 step".to_owned(),
            shown => format!("Steps {}–{} of {}", grouped(from + 1), grouped(from + shown), grouped(total)),
        };
        SandboxView { facts: facts(input), pages: pages(id, from, total), steps, range, total, state }
    }

    /// Where it stands, in words.
    pub fn explain(&self, status: TraceStatus, output: Option<&SandboxOutput>) -> Explanation {
        let steps = match self.total {
            1 => "1 step".to_owned(),
            n => format!("{} steps", grouped(n)),
        };
        let headline = match (status, output, self.state) {
            (TraceStatus::Running, _, Some(SandboxStatus::Paused)) => {
                format!("Paused after {steps}: its /workspace is kept on the server's disk until it is resumed.")
            }
            (TraceStatus::Running, _, _) => format!("Running: {steps} so far."),
            (_, Some(output), _) => format!("Ended ({}) after {steps}.", output.ended),
            (_, None, _) => format!("Ended after {steps}."),
        };
        Explanation { headline, detail: None }
    }
}

/// What a sandbox was made with.
fn facts(input: SandboxInput) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("sandbox", input.sandbox_id),
        ("language", input.language.to_string()),
        ("memory", human_bytes(input.memory_mb << 20)),
        ("CPUs", input.cpus.to_string()),
        ("disk", human_bytes(input.disk_mb << 20)),
        ("idle timeout", format!("{} s, then {:?}", input.timeout_secs, input.on_timeout).to_lowercase()),
    ];
    if !input.env_names.is_empty() {
        facts.push(("environment (names only)", input.env_names.join(", ")));
    }
    facts.extend(input.metadata.into_iter().map(|(key, value)| ("metadata", format!("{key} = {value}"))));
    if !input.files.is_empty() {
        facts.push(("files copied in", input.files.join(", ")));
    }
    facts.extend(input.repo.map(|repo| ("repository", format!("{} at {}", without_userinfo(&repo.url), repo.commit))));
    if !input.setup.is_empty() {
        let commands = match input.setup.len() {
            1 => "1 command: its first step".to_owned(),
            n => format!("{n} commands: its first {n} steps"),
        };
        facts.push(("setup", commands));
    }
    facts
}

/// A repository's URL without what may stand before its host (`https://TOKEN@host/…`): a page
/// anyone with the link reads is no place for a credential someone put in a URL.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://…{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The page of steps from the `from`th (0-based).
pub fn page_url(id: TraceId, from: u64) -> String {
    match from {
        0 => format!("/trace/{id}"),
        from => format!("/trace/{id}?steps_from={from}"),
    }
}

/// Links to the first, previous, next and last pages, those that are not this one.
fn pages(id: TraceId, from: u64, total: u64) -> Vec<PageLink> {
    let link = |label: String, from: u64| PageLink { label, url: page_url(id, from) };
    let mut links = Vec::new();
    let last = total.saturating_sub(1) / STEPS_PAGE * STEPS_PAGE;
    if from > 0 {
        links.push(link("← First steps".to_owned(), 0));
        let previous = from.saturating_sub(STEPS_PAGE);
        if previous > 0 {
            links.push(link(format!("← Previous {STEPS_PAGE}"), previous));
        }
    }
    let next = from + STEPS_PAGE;
    if next < total {
        links.push(link(format!("Next {} →", (total - next).min(STEPS_PAGE)), next));
        if last > next {
            links.push(link("Last steps →".to_owned(), last));
        }
    }
    links
}

impl StepRow {
    /// Has it anything to list under its head?
    pub fn has_details(&self) -> bool {
        self.source.is_some()
            || !self.outputs.is_empty()
            || self.result.is_some()
            || self.raised.is_some()
            || self.traceback.is_some()
            || !self.facts.is_empty()
    }

    fn of(number: u64, step: StepExcerpt, language: Language) -> StepRow {
        let StepExcerpt {
            id,
            kind,
            status,
            offset_us,
            duration_us,
            exit_code,
            source,
            call,
            stdout,
            stderr,
            output,
            diff,
            result,
            error_name,
            error_value,
            traceback,
            message,
            op,
            path,
            snapshot,
            bytes,
            snapshot_id,
            replayed_steps,
            divergence_step,
        } = step;
        let badge = match (kind, op, &call) {
            (TraceKind::SandboxOp, Some(op), _) => op.as_str().to_owned(),
            (TraceKind::Tool, _, Some(call)) => format!("tool: {}", call.tool),
            (kind, _, _) => kind.as_str().to_owned(),
        };
        let (source_label, source) = match call {
            Some(call) => ("Call", Some(call_shown(call))),
            None => (if kind == TraceKind::Command { "Command" } else { "Code" }, source.map(Shown::head)),
        };
        let outputs = [("stdout", stdout), ("stderr", stderr), ("output", output), ("diff", diff)]
            .into_iter()
            .filter_map(|(name, text)| text.filter(|text| text.bytes > 0).map(|text| (name, Shown::head(text))))
            .collect();
        let raised = match (error_name, error_value) {
            (Some(name), Some(value)) if !value.text.is_empty() => Some(format!("{}: {}", inline(name), inline(value))),
            (Some(name), _) => Some(inline(name)),
            (None, _) => None,
        };
        let mut facts = Vec::new();
        facts.extend(path.map(|path| ("path", inline(path))));
        facts.extend(snapshot.map(|snapshot| {
            (if op == Some(SandboxOp::Reset) { "back to snapshot" } else { "label" }, inline(snapshot))
        }));
        facts.extend(bytes.map(|bytes| ("size", human_bytes(bytes))));
        facts.extend(snapshot_id.map(|id| ("snapshot made", id)));
        facts.extend(replayed_steps.map(|steps| ("steps replayed", grouped(steps))));
        // `divergence_step` counts from 0, as the replay's answer and its trajectory's steps do.
        facts.extend(divergence_step.map(|step| match step {
            -1 => ("diverged", "at no step".to_owned()),
            step => ("diverged", format!("first at steps[{step}]")),
        }));
        StepRow {
            number,
            id: id.to_string(),
            badge,
            status: status.to_string(),
            offset: format!("+{}", human_duration(offset_us as f64 / 1000.0)),
            duration: duration_us.map(|us| human_duration(us as f64 / 1000.0)).unwrap_or_default(),
            exit_code,
            source_label,
            highlight: match (kind, language) {
                (TraceKind::Cell, Language::Node) => "javascript",
                (TraceKind::Cell, Language::Python) => "python",
                _ => "",
            },
            source,
            outputs,
            result: result.map(Shown::head),
            raised,
            traceback: traceback.filter(|text| text.bytes > 0).map(Shown::tail),
            message: message.map(inline).filter(|text| !text.trim().is_empty()).map(|text| super::sentence(&text)),
            facts,
        }
    }
}

/// A tool call as it would be typed, as its own page shows it; when the store cut its params,
/// said so as of any excerpt (its start shown, the whole's size).
fn call_shown(call: ToolCallExcerpt) -> Shown {
    let (text, _) = call_text(call.tool, &call.params);
    let bytes = text.len() as u64 + call.omitted_bytes;
    Shown::head(Excerpt { text, bytes })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use tracebox_model::Status;
    use tracebox_model::sandbox::{OnTimeout, RepoSource};
    use tracebox_model::tool::ToolName;

    use super::*;

    fn excerpt(text: &str, bytes: u64) -> Option<Excerpt> {
        Some(Excerpt { text: text.into(), bytes })
    }

    fn whole(text: &str) -> Option<Excerpt> {
        excerpt(text, text.len() as u64)
    }

    fn step(kind: TraceKind) -> StepExcerpt {
        StepExcerpt {
            id: TraceId::new(),
            kind,
            status: TraceStatus::Ended(Status::Success),
            offset_us: 12_400_000,
            duration_us: Some(85_000),
            exit_code: None,
            source: None,
            call: None,
            stdout: None,
            stderr: None,
            output: None,
            diff: None,
            result: None,
            error_name: None,
            error_value: None,
            traceback: None,
            message: None,
            op: None,
            path: None,
            snapshot: None,
            bytes: None,
            snapshot_id: None,
            replayed_steps: None,
            divergence_step: None,
        }
    }

    fn input() -> SandboxInput {
        SandboxInput {
            sandbox_id: "sbx_1".into(),
            language: Language::Python,
            memory_mb: 512,
            cpus: 1.0,
            disk_mb: 1024,
            env_names: Vec::new(),
            metadata: BTreeMap::new(),
            files: Vec::new(),
            timeout_secs: 300.0,
            on_timeout: OnTimeout::Pause,
            repo: None,
            setup: Vec::new(),
        }
    }

    #[test]
    fn a_step_reads_as_its_offset_duration_badge_and_what_came_out_with_cuts_said() {
        let command = StepExcerpt {
            exit_code: Some(0),
            source: whole("echo hi"),
            stdout: excerpt("hi", 5_000_000),
            stderr: whole(""),
            ..step(TraceKind::Command)
        };
        let row = StepRow::of(3, command, Language::Python);
        assert_eq!(
            (row.number, row.badge.as_str(), row.offset.as_str(), row.duration.as_str()),
            (3, "command", "+12.40 s", "85 ms")
        );
        assert_eq!((row.source_label, row.highlight), ("Command", ""));
        assert_eq!(row.source, Some(Shown { text: "echo hi".into(), cut: None }));
        assert_eq!(row.outputs.len(), 1, "an empty stream is left out");
        assert_eq!(row.outputs[0].1.cut.as_deref(), Some("the first 2 characters of 4.8 MiB"));

        let cell = StepExcerpt {
            status: TraceStatus::Ended(Status::Error),
            source: whole("1 / 0"),
            error_name: whole("ZeroDivisionError"),
            error_value: whole("division by zero"),
            traceback: excerpt("ZeroDivisionError: division by zero", 9_000),
            ..step(TraceKind::Cell)
        };
        let row = StepRow::of(4, cell, Language::Python);
        assert_eq!((row.badge.as_str(), row.source_label, row.highlight), ("cell", "Code", "python"));
        assert_eq!(row.raised.as_deref(), Some("ZeroDivisionError: division by zero"));
        assert!(row.traceback.unwrap().cut.unwrap().starts_with("the last 35 characters"));

        let write = StepExcerpt {
            op: Some(SandboxOp::Write),
            path: whole("notes/a.txt"),
            bytes: Some(2048),
            message: whole("no room: the disk is full"),
            ..step(TraceKind::SandboxOp)
        };
        let row = StepRow::of(5, write, Language::Python);
        assert_eq!(row.badge, "write");
        assert_eq!(row.facts, [("path", "notes/a.txt".to_owned()), ("size", "2 KiB".to_owned())]);
        assert_eq!(row.message.as_deref(), Some("No room: the disk is full."));

        let running = StepExcerpt { status: TraceStatus::Running, duration_us: None, ..step(TraceKind::Command) };
        assert_eq!(StepRow::of(6, running, Language::Python).duration, "");
    }

    #[test]
    fn a_tool_call_reads_as_it_would_be_typed_with_its_output_and_diff_and_a_replay_as_where_it_diverged() {
        let call = |tool, params, omitted_bytes| Some(ToolCallExcerpt { tool, params, omitted_bytes });
        let git = StepExcerpt {
            exit_code: Some(0),
            call: call(ToolName::Git, json!({"args": ["log", "--oneline"]}), 0),
            output: whole("abc123 first\n"),
            diff: whole(""),
            ..step(TraceKind::Tool)
        };
        let row = StepRow::of(1, git, Language::Python);
        assert_eq!((row.badge.as_str(), row.source_label, row.highlight), ("tool: git", "Call", ""));
        assert_eq!(row.source, Some(Shown { text: "git log --oneline".into(), cut: None }));
        assert_eq!(row.outputs.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["output"], "no empty diff");
        assert_eq!(row.exit_code, Some(0));

        let content = "x".repeat(4_000);
        let write = StepExcerpt {
            status: TraceStatus::Ended(Status::Error),
            call: call(ToolName::FileWrite, json!({"path": "a.py", "content": content}), 1_000_000),
            diff: whole("+x\n"),
            message: whole("no room: the disk is full"),
            ..step(TraceKind::Tool)
        };
        let row = StepRow::of(2, write, Language::Python);
        let source = row.source.unwrap();
        assert_eq!(source.text, format!("write a.py\n\n{content}"));
        assert_eq!(source.cut.as_deref(), Some("the first 4,012 characters of 980.5 KiB"), "the params cut, counted");
        assert_eq!(row.outputs.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["diff"]);
        assert_eq!(row.message.as_deref(), Some("No room: the disk is full."));

        let replay = StepExcerpt { replayed_steps: Some(12), divergence_step: Some(-1), ..step(TraceKind::Replay) };
        let row = StepRow::of(3, replay, Language::Python);
        assert_eq!((row.badge.as_str(), row.source), ("replay", None));
        assert_eq!(row.facts, [("steps replayed", "12".to_owned()), ("diverged", "at no step".to_owned())]);
        let diverged = StepExcerpt { divergence_step: Some(4), ..step(TraceKind::Replay) };
        assert_eq!(StepRow::of(4, diverged, Language::Python).facts, [("diverged", "first at steps[4]".to_owned())]);
    }

    #[test]
    fn a_sandbox_made_from_a_repository_names_it_without_credentials_and_its_setup_as_its_first_steps() {
        let repo = RepoSource { url: "https://ghp_secret@github.com/o/r.git".into(), commit: "v1.2".into() };
        let input = SandboxInput { repo: Some(repo), setup: vec!["pip install -e .".into()], ..input() };
        let facts =
            SandboxView::of(TraceId::new(), input, StepPage { steps: Vec::new(), from: 0, total: 0 }, None).facts;
        let fact = |name: &str| facts.iter().find(|(label, _)| *label == name).map(|(_, value)| value.as_str());
        assert_eq!(fact("repository"), Some("https://…@github.com/o/r.git at v1.2"));
        assert_eq!(fact("setup"), Some("1 command: its first step"));
        for url in ["/srv/repos/r", "ssh://host/r.git", "https://host/a@b"] {
            assert_eq!(without_userinfo(url), url, "nothing before a host to hide");
        }
    }

    #[test]
    fn a_page_of_steps_says_which_and_links_to_the_others() {
        let id = TraceId::new();
        let page = |from: u64, shown: usize, total: u64| StepPage {
            steps: (0..shown).map(|_| step(TraceKind::Command)).collect(),
            from,
            total,
        };
        let first = SandboxView::of(id, input(), page(0, 200, 100_000), Some(SandboxStatus::Running));
        assert_eq!(first.range, "Steps 1–200 of 100,000");
        assert_eq!(first.steps[199].number, 200);
        let labels = |view: &SandboxView| view.pages.iter().map(|p| p.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(&first), ["Next 200 →", "Last steps →"]);
        assert_eq!(first.pages[0].url, format!("/trace/{id}?steps_from=200"));
        assert_eq!(first.pages[1].url, format!("/trace/{id}?steps_from=99800"));
        assert_eq!(first.explain(TraceStatus::Running, None).headline, "Running: 100,000 steps so far.");

        let middle = SandboxView::of(id, input(), page(400, 200, 700), None);
        assert_eq!(middle.range, "Steps 401–600 of 700");
        assert_eq!(labels(&middle), ["← First steps", "← Previous 200", "Next 100 →"]);
        assert_eq!(middle.pages[0].url, format!("/trace/{id}"));

        let last = SandboxView::of(id, input(), page(200, 1, 201), Some(SandboxStatus::Paused));
        assert_eq!(labels(&last), ["← First steps"]);
        assert!(last.explain(TraceStatus::Running, None).headline.starts_with("Paused after 201 steps"));
        let ended = SandboxOutput { ended: "deleted".into(), steps: 201 };
        let headline = last.explain(TraceStatus::Ended(Status::Success), Some(&ended)).headline;
        assert_eq!(headline, "Ended (deleted) after 201 steps.");

        let none = SandboxView::of(id, input(), page(0, 0, 0), Some(SandboxStatus::Running));
        assert_eq!((none.range.as_str(), none.pages.len()), ("", 0));
        assert_eq!(none.explain(TraceStatus::Running, None).headline, "Running: 0 steps so far.");
    }
}
