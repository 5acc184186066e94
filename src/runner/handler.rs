//! Handler mode in the pipeline: what a handler run's trace keeps of its call, how the run is
//! judged (a handler that gave no result did not succeed, whatever its exit code), and its
//! result or error redacted as output is.

use serde_json::Value;

use tracebox_model::handler::{HandlerInput, error_type};
use tracebox_model::{HandlerCall, HandlerOutcome, Redaction, Status};

use crate::policy::Policy;

/// The call as its trace keeps it: the event's strings redacted, as stdin is.
pub fn record(policy: &Policy, call: &HandlerCall) -> HandlerInput {
    let mut event = call.event.clone();
    walk_strings(&mut event, &mut |text| *text = policy.redact(text));
    HandlerInput { name: call.name.clone(), event }
}

/// A handler run's status, message and outcome. Every handler run that ran carries a result or
/// an error: when the channel gave neither (the program was stopped, or ended first), the error
/// says why. A run whose handler gave no result is not a `success`, even if it exited 0.
pub fn judge(
    (status, message): (Status, Option<String>),
    came: Option<HandlerOutcome>,
    exit_code: Option<i64>,
) -> ((Status, Option<String>), HandlerOutcome) {
    let outcome = came.unwrap_or_else(|| {
        let (kind, why) = match status {
            Status::Timeout => (error_type::TIMEOUT, message.clone()),
            Status::Oom => (error_type::OUT_OF_MEMORY, message.clone()),
            Status::OutputLimit => (error_type::OUTPUT_LIMIT, message.clone()),
            Status::Killed => (error_type::KILLED, message.clone()),
            _ => (error_type::EXIT_ERROR, None),
        };
        let ended = match exit_code {
            Some(code) => format!("the program ended (exit code {code}) before its handler returned"),
            None => "the program ended before its handler returned".to_owned(),
        };
        HandlerOutcome::error(kind, why.unwrap_or(ended))
    });
    let judged = match (&outcome, status) {
        (HandlerOutcome::Error(error), Status::Success) => {
            (Status::Error, Some(format!("the handler failed ({}): {}", error.kind, error.message)))
        }
        _ => (status, message),
    };
    (judged, outcome)
}

/// The outcome with every secret replaced, as in output: a result's strings (keys too), and an
/// error's message and stack (the stack quotes the code's lines).
pub fn screen(policy: &Policy, mut outcome: HandlerOutcome) -> (HandlerOutcome, Vec<Redaction>) {
    let mut redactions: Vec<Redaction> = Vec::new();
    let mut filter = |text: &mut String, stream: &str| {
        let filtered = policy.filter_output(text, stream);
        if filtered.redactions.is_empty() {
            return;
        }
        *text = filtered.text;
        for found in filtered.redactions {
            match redactions.iter_mut().find(|r| r.rule == found.rule && r.stream == found.stream) {
                Some(redaction) => redaction.count += found.count,
                None => redactions.push(found),
            }
        }
    };
    match &mut outcome {
        HandlerOutcome::Result(value) => walk_strings(value, &mut |text| filter(text, "result")),
        HandlerOutcome::Error(error) => {
            filter(&mut error.message, "error");
            filter(&mut error.stack, "error");
        }
    }
    (outcome, redactions)
}

/// Apply `change` to every string of `value`, object keys included.
fn walk_strings(value: &mut Value, change: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(text) => change(text),
        Value::Array(items) => items.iter_mut().for_each(|item| walk_strings(item, change)),
        Value::Object(fields) => {
            let entries = std::mem::take(fields);
            for (mut key, mut item) in entries {
                change(&mut key);
                walk_strings(&mut item, change);
                fields.insert(key, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";

    #[test]
    fn secrets_in_a_result_are_redacted_wherever_they_are_and_counted_once_per_rule() {
        let policy = Policy::builtin().unwrap();
        let result = HandlerOutcome::Result(json!({"a": [KEY, 1, {"b": KEY}], KEY: null, "plain": "ok"}));
        let (screened, redactions) = screen(&policy, result);
        let text = serde_json::to_string(&screened).unwrap();
        assert!(!text.contains("sk-ant-api03"), "{text}");
        assert!(text.contains("\"plain\":\"ok\""), "{text}");
        assert_eq!(redactions.len(), 1, "{redactions:?}");
        assert_eq!((redactions[0].stream.as_str(), redactions[0].count), ("result", 3));
    }

    #[test]
    fn an_error_is_redacted_and_an_event_kept_without_its_secrets() {
        let policy = Policy::builtin().unwrap();
        let raised = HandlerOutcome::error("ValueError", format!("bad key {KEY}"));
        let (screened, redactions) = screen(&policy, raised);
        assert!(!serde_json::to_string(&screened).unwrap().contains("sk-ant-api03"));
        assert_eq!(redactions[0].stream, "error");
        let call = HandlerCall { name: "h".into(), event: json!({"token": KEY}), result_limit: 10 };
        assert!(!record(&policy, &call).event.to_string().contains("sk-ant-api03"));
    }

    #[test]
    fn a_run_without_a_result_gets_an_error_that_says_why_and_never_succeeds() {
        let ((status, message), outcome) = judge((Status::Success, None), None, Some(0));
        assert_eq!(status, Status::Error);
        assert!(message.unwrap().contains("Runtime.ExitError"));
        assert!(matches!(&outcome, HandlerOutcome::Error(e) if e.message.contains("exit code 0")));
        let timeout = (Status::Timeout, Some("killed after its 1 s timeout".to_owned()));
        let (judged, outcome) = judge(timeout.clone(), None, Some(137));
        assert_eq!(judged, timeout, "a stop keeps its status and message");
        assert!(
            matches!(&outcome, HandlerOutcome::Error(e) if e.kind == error_type::TIMEOUT && e.message.contains("1 s"))
        );
        let returned = HandlerOutcome::Result(json!(1));
        assert_eq!(
            judge((Status::Success, None), Some(returned.clone()), Some(0)),
            ((Status::Success, None), returned)
        );
    }
}
