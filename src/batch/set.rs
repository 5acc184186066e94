//! The prompt-set format (API.md): JSON Lines, or one JSON array, of items with `prompt` (sent
//! to Claude, its code run) or `code` (run as is, or called as a handler with `handler` and
//! `event`), and an optional `expect`. The whole set is
//! checked before anything runs, and a refusal names the line (or array item) and the field.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use tracebox_model::{ExecutionRequest, HandlerOutcome, Source, Status, TraceId};

use crate::claude::CallSettings;
use crate::claude::{Ask, Question};
use crate::submission::RequestLimits;
use crate::submission::Submission;

/// Most items one prompt set may hold.
pub const MAX_ITEMS: usize = 10_000;
/// Longest item `id`.
const MAX_ID_CHARS: usize = 128;

/// One item as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: Option<String>,
    pub prompt: Option<String>,
    pub code: Option<String>,
    pub language: Option<String>,
    pub stdin: Option<String>,
    pub files: Option<Vec<String>>,
    pub system: Option<Value>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub timeout: Option<f64>,
    pub memory_mb: Option<u64>,
    /// Handler mode (`code` items): the function to call, and its event.
    pub handler: Option<String>,
    pub event: Option<Value>,
    pub expect: Option<Expect>,
}

/// What an item's run must show to pass. With none, it must end `success`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub exit_code: Option<i64>,
    pub stdout_contains: Option<String>,
    pub stdout_regex: Option<String>,
    pub status: Option<String>,
    /// The JSON a handler item's handler must return.
    pub result: Option<Value>,
}

/// A prompt set that cannot run, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct SetError {
    /// `line 3` (JSON Lines) or `item 3` (a JSON array), counted from 1.
    pub at: String,
    pub message: String,
}

impl SetError {
    fn new(at: &str, message: impl Into<String>) -> SetError {
        SetError { at: at.to_owned(), message: message.into() }
    }
}

/// An item, checked: its id, where it was, what to run and what to expect.
#[derive(Debug, Clone)]
pub struct CheckedItem {
    pub id: String,
    pub at: String,
    pub job: Job,
    pub expect: Expectation,
    /// Uploaded files its run reads (found when it runs).
    pub files: Vec<String>,
}

/// What an item runs.
#[derive(Debug, Clone)]
pub enum Job {
    Code(Box<ExecutionRequest>),
    Prompt(Box<Ask>),
}

impl Job {
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Code(_) => "code",
            Job::Prompt(_) => "prompt",
        }
    }

    /// The job as part of batch `batch`.
    pub fn under(&mut self, batch: TraceId, owner: Option<&str>) {
        let owner = owner.map(str::to_owned);
        match self {
            Job::Code(request) => (request.parent, request.owner) = (Some(batch), owner),
            Job::Prompt(ask) => (ask.parent, ask.owner) = (Some(batch), owner),
        }
    }
}

/// An item's `expect`, its regex compiled.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    pub exit_code: Option<i64>,
    pub stdout_contains: Option<String>,
    pub stdout_regex: Option<Regex>,
    pub status: Option<String>,
    pub result: Option<Value>,
}

impl Expectation {
    /// What a handler's `outcome` fails of `expect.result`; empty when it passes (or none is set).
    pub fn result_failures(&self, outcome: Option<&HandlerOutcome>) -> Vec<String> {
        let Some(wanted) = &self.result else { return Vec::new() };
        match outcome {
            Some(HandlerOutcome::Result(got)) if got == wanted => Vec::new(),
            Some(HandlerOutcome::Result(got)) => vec![format!("result is {got}, expected {wanted}")],
            Some(HandlerOutcome::Error(error)) => {
                vec![format!("the handler failed ({}: {}), expected the result {wanted}", error.kind, error.message)]
            }
            None => vec![format!("no result, expected {wanted}")],
        }
    }

    /// What a run with this `status`, `exit_code` and `stdout` fails of it; empty when it passes.
    pub fn failures(&self, status: &str, exit_code: Option<i64>, stdout: &str) -> Vec<String> {
        let mut failures = Vec::new();
        match (&self.status, self.is_empty()) {
            (Some(wanted), _) if status != wanted => failures.push(format!("status is {status}, expected {wanted}")),
            (Some(_), _) => {}
            (None, true) if status != "success" => failures.push(format!("status is {status}, expected success")),
            (None, true) => {}
            // Other expectations are about a program that ended by itself; say so when it did not.
            (None, false) if !matches!(status, "success" | "error") => {
                failures.push(format!("status is {status}: the program did not end by itself"))
            }
            (None, false) => {}
        }
        if let Some(code) = self.exit_code
            && exit_code != Some(code)
        {
            let got = exit_code.map_or("none".to_owned(), |c| c.to_string());
            failures.push(format!("exit code is {got}, expected {code}"));
        }
        if let Some(text) = &self.stdout_contains
            && !stdout.contains(text.as_str())
        {
            failures.push(format!("stdout does not contain {text:?}"));
        }
        if let Some(regex) = &self.stdout_regex
            && !regex.is_match(stdout)
        {
            failures.push(format!("stdout does not match /{}/", regex.as_str()));
        }
        failures
    }

    fn is_empty(&self) -> bool {
        self.exit_code.is_none()
            && self.stdout_contains.is_none()
            && self.stdout_regex.is_none()
            && self.status.is_none()
            && self.result.is_none()
    }
}

/// What the command line (or a `POST /batch`) sets for every item that does not say.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub model: Option<String>,
    pub timeout: Option<f64>,
}

/// Where `at` (`line 12`, `item 3`) is, as a number to sort by.
pub fn position(at: &str) -> u64 {
    at.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

/// Does the set hold prompt items (which need Claude)?
pub fn asks_claude(items: &[CheckedItem]) -> bool {
    items.iter().any(|item| matches!(item.job, Job::Prompt(_)))
}

/// The items of a prompt set's text, each with where it was.
pub fn parse(text: &str) -> Result<Vec<(String, Item)>, SetError> {
    let items = if text.trim_start().starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| SetError::new(&format!("line {}", e.line()), format!("not a JSON array of items: {e}")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let at = format!("item {}", i + 1);
                item(serde_path_to_error::deserialize(value), &at).map(|item| (at, item))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("line {}", i + 1);
            let mut json = serde_json::Deserializer::from_str(line);
            items.push((at.clone(), item(serde_path_to_error::deserialize(&mut json), &at)?));
            json.end().map_err(|e| SetError::new(&at, format!("one JSON object per line, nothing after it: {e}")))?;
        }
        items
    };
    if items.is_empty() {
        return Err(SetError::new("line 1", "the prompt set holds no items; write one JSON object per line"));
    }
    if items.len() > MAX_ITEMS {
        return Err(SetError::new(&items[MAX_ITEMS].0, format!("a prompt set holds at most {MAX_ITEMS} items")));
    }
    Ok(items)
}

fn item<E: std::fmt::Display>(parsed: Result<Item, serde_path_to_error::Error<E>>, at: &str) -> Result<Item, SetError> {
    parsed.map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { format!("`{path}`: ") };
        SetError::new(at, format!("{field}{}", error.into_inner()))
    })
}

/// Check every item against the server's limits on runs (`allowed`) and its settings for Claude
/// calls, naming the first that cannot run.
pub fn check(
    items: Vec<(String, Item)>,
    allowed: &RequestLimits,
    calls: &CallSettings,
    defaults: &Defaults,
    source: Source,
) -> Result<Vec<CheckedItem>, SetError> {
    let mut checked: Vec<CheckedItem> = Vec::with_capacity(items.len());
    for (at, item) in items {
        let id = item.id.clone().unwrap_or_else(|| at.replace(' ', "-"));
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
            return Err(SetError::new(&at, format!("`id` must be 1 to {MAX_ID_CHARS} characters")));
        }
        if let Some(earlier) = checked.iter().find(|c| c.id == id) {
            return Err(SetError::new(&at, format!("`id` {id:?} is already the id of {}", earlier.at)));
        }
        let expect = expectation(item.expect.clone().unwrap_or_default()).map_err(|m| SetError::new(&at, m))?;
        if expect.result.is_some() && item.handler.is_none() {
            return Err(SetError::new(&at, "`expect.result` is for handler items: name the function with `handler`"));
        }
        let files = item.files.clone().unwrap_or_default();
        let job = job(item, allowed, calls, defaults, source).map_err(|m| SetError::new(&at, m))?;
        checked.push(CheckedItem { id, at, job, expect, files });
    }
    Ok(checked)
}

fn job(
    item: Item,
    allowed: &RequestLimits,
    calls: &CallSettings,
    defaults: &Defaults,
    source: Source,
) -> Result<Job, String> {
    let timeout = item.timeout.or(defaults.timeout);
    match (item.prompt, item.code) {
        (Some(_), Some(_)) => Err("an item has `prompt` or `code`, not both".into()),
        (None, None) => Err("an item needs `prompt` (sent to Claude, its code run) or `code` (run as is)".into()),
        (None, Some(code)) => {
            for (field, given) in [
                ("system", item.system.is_some()),
                ("model", item.model.is_some()),
                ("max_tokens", item.max_tokens.is_some()),
                ("temperature", item.temperature.is_some()),
            ] {
                if given {
                    return Err(format!("`{field}` is for `prompt` items; this one has `code`"));
                }
            }
            let submission = Submission {
                code,
                language: item.language,
                stdin: item.stdin.unwrap_or_default(),
                env: Default::default(),
                timeout_secs: timeout,
                memory_mb: item.memory_mb,
                isolation: None,
                tenant: None,
                owner: None,
                handler: item.handler,
                event: item.event,
                labels: Default::default(),
                strategy: None,
            };
            Ok(Job::Code(Box::new(submission.check(allowed, source).map_err(|e| e.to_string())?)))
        }
        (Some(prompt), None) => {
            if item.stdin.is_some() {
                return Err("`stdin` is for `code` items; a prompt's code runs without stdin".into());
            }
            if item.handler.is_some() || item.event.is_some() {
                return Err("`handler` and `event` are for `code` items; a prompt's code runs as a program".into());
            }
            let question = Question {
                prompt: Some(prompt),
                system: item.system,
                model: item.model.or_else(|| defaults.model.clone()),
                max_tokens: item.max_tokens,
                temperature: item.temperature,
                execute: Some(true),
                language: item.language,
                timeout,
                memory_mb: item.memory_mb,
                ..Question::default()
            };
            Ok(Job::Prompt(Box::new(question.check(allowed, calls, source, None).map_err(|e| e.to_string())?)))
        }
    }
}

fn expectation(expect: Expect) -> Result<Expectation, String> {
    let Expect { exit_code, stdout_contains, stdout_regex, status, result } = expect;
    if let Some(status) = &status
        && !Status::ALL.iter().any(|s| s.as_str() == status)
    {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        return Err(format!("`expect.status` {status:?} is not a status; use one of {}", names.join(", ")));
    }
    let stdout_regex = stdout_regex
        .map(|pattern| {
            regex::RegexBuilder::new(&pattern)
                .multi_line(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("`expect.stdout_regex` is not a regular expression: {e}"))
        })
        .transpose()?;
    Ok(Expectation { exit_code, stdout_contains, stdout_regex, status, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> Result<Vec<CheckedItem>, SetError> {
        check(parse(text)?, &RequestLimits::defaults(), &CallSettings::defaults(), &Defaults::default(), Source::Batch)
    }

    #[test]
    fn json_lines_and_a_json_array_hold_the_same_items() {
        let lines = "{\"id\": \"a\", \"code\": \"print(1)\"}\n\n{\"prompt\": \"hi\", \"language\": \"node\"}\n";
        let array = "[{\"id\": \"a\", \"code\": \"print(1)\"}, {\"prompt\": \"hi\", \"language\": \"node\"}]";
        for text in [lines, array] {
            let items = checked(text).unwrap();
            assert_eq!(items.len(), 2);
            assert_eq!((items[0].id.as_str(), items[0].job.kind()), ("a", "code"));
            assert_eq!(items[1].job.kind(), "prompt");
            let Job::Prompt(ask) = &items[1].job else { unreachable!() };
            assert!(ask.execute, "a prompt item's code is run");
        }
        assert_eq!(checked(lines).unwrap()[1].id, "line-3", "an item without an id is named by its line");
    }

    #[test]
    fn a_refusal_names_the_line_and_the_field() {
        let refused = |text: &str| checked(text).unwrap_err().to_string();
        let second_bad = "{\"code\": \"print(1)\"}\n{\"code\": \"x\", \"expect\": {\"stdout_regex\": \"(\"}}\n";
        assert!(refused(second_bad).starts_with("line 2: `expect.stdout_regex`"), "{}", refused(second_bad));
        assert!(refused("{\"code\": 1}").starts_with("line 1: `code`"), "{}", refused("{\"code\": 1}"));
        assert!(refused("{\"code\": \"x\", \"cod\": 1}").contains("cod"));
        assert!(refused("not json").starts_with("line 1:"));
        assert!(refused("{\"id\": \"x\"}").contains("needs `prompt`"));
        assert!(refused("{\"prompt\": \"x\", \"code\": \"y\"}").contains("not both"));
        assert!(refused("{\"code\": \"x\", \"language\": \"ruby\"}").contains("`language`"));
        assert!(refused("{\"code\": \"x\", \"expect\": {\"status\": \"fine\"}}").contains("`expect.status`"));
        assert!(refused("{\"code\": \"x\", \"model\": \"m\"}").contains("`model` is for `prompt` items"));
        assert!(refused("{\"code\": \"x\", \"timeout\": 0}").contains("`timeout`"));
        let twice = "{\"id\": \"a\", \"code\": \"1\"}\n{\"id\": \"a\", \"code\": \"2\"}";
        assert_eq!(refused(twice), "line 2: `id` \"a\" is already the id of line 1");
        assert!(refused("[{\"code\": \"1\"}, {\"code\": 2}]").starts_with("item 2: `code`"));
        assert!(refused("\n\n").contains("no items"));
    }

    #[test]
    fn a_set_holds_at_most_max_items() {
        let line = "{\"code\": \"print(1)\"}\n";
        assert_eq!(parse(&line.repeat(MAX_ITEMS)).unwrap().len(), MAX_ITEMS);
        let over = parse(&line.repeat(MAX_ITEMS + 1)).unwrap_err();
        assert_eq!(over.at, format!("line {}", MAX_ITEMS + 1));
        assert_eq!((position("line 12"), position("item 3")), (12, 3));
    }

    #[test]
    fn expectations_say_what_failed() {
        let expect = |e: Expect| expectation(e).unwrap();
        let none = expect(Expect::default());
        assert!(none.failures("success", Some(0), "").is_empty());
        assert_eq!(none.failures("error", Some(1), ""), ["status is error, expected success"]);
        let all = expect(Expect {
            exit_code: Some(0),
            stdout_contains: Some("29".into()),
            stdout_regex: Some("^hi$".into()),
            status: None,
            result: None,
        });
        assert!(all.failures("success", Some(0), "29\nhi\n").is_empty(), "the regex matches a whole line");
        assert_eq!(all.failures("error", Some(2), "x").len(), 3, "a set expectation replaces the implicit status");
        let blocked = expect(Expect { status: Some("blocked".into()), ..Expect::default() });
        assert!(blocked.failures("blocked", None, "").is_empty());
        let contains = expect(Expect { stdout_contains: Some("x".into()), ..Expect::default() });
        assert_eq!(contains.failures("timeout", None, "x"), ["status is timeout: the program did not end by itself"]);
        assert!(contains.failures("error", Some(1), "x").is_empty(), "a failing exit is the program's own ending");
    }

    #[test]
    fn a_handler_item_may_expect_its_result() {
        let items = checked(
            r#"{"code": "def handler(e, c): return e", "handler": "handler", "event": [1], "expect": {"result": [1]}}"#,
        )
        .unwrap();
        let Job::Code(request) = &items[0].job else { unreachable!() };
        assert_eq!(request.handler.as_ref().unwrap().event, serde_json::json!([1]));
        let expect = &items[0].expect;
        assert!(expect.result_failures(Some(&HandlerOutcome::Result(serde_json::json!([1])))).is_empty());
        let other = expect.result_failures(Some(&HandlerOutcome::Result(serde_json::json!([2]))));
        assert_eq!(other, ["result is [2], expected [1]"]);
        assert_eq!(expect.result_failures(None), ["no result, expected [1]"]);
        let refused = |text: &str| checked(text).unwrap_err().to_string();
        assert!(refused(r#"{"code": "x", "expect": {"result": 1}}"#).contains("`expect.result` is for handler items"));
        assert!(refused(r#"{"prompt": "x", "handler": "h"}"#).contains("for `code` items"));
        assert!(refused(r#"{"code": "x", "handler": "a.b"}"#).contains("`handler`"));
    }
}
