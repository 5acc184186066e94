//! A handler run on the trace page: the function called, its event, and its result or error,
//! the JSON pretty-printed.

use serde_json::Value;
use tracebox_model::HandlerOutcome;
use tracebox_model::handler::HandlerInput;

use super::super::units::human_bytes;

/// What the page shows of a handler call.
#[derive(Debug, PartialEq)]
pub struct HandlerView {
    pub name: String,
    pub event: String,
    /// The result as JSON, once there is one, and its size as the reply sent it.
    pub result: Option<String>,
    pub result_size: String,
    /// `Type: message`, and the stack, once it failed.
    pub error: Option<String>,
    pub stack: String,
}

impl HandlerView {
    pub fn of(input: HandlerInput, outcome: Option<&HandlerOutcome>) -> HandlerView {
        let mut view = HandlerView {
            name: input.name,
            event: pretty(&input.event),
            result: None,
            result_size: String::new(),
            error: None,
            stack: String::new(),
        };
        match outcome {
            Some(HandlerOutcome::Result(value)) => {
                view.result_size = human_bytes(value.to_string().len() as u64);
                view.result = Some(pretty(value));
            }
            Some(HandlerOutcome::Error(error)) => {
                view.error = Some(format!("{}: {}", error.kind, error.message));
                view.stack = error.stack.clone();
            }
            None => {}
        }
        view
    }

    /// The explanation's detail: what the handler gave, in a line.
    pub fn detail(&self) -> Option<String> {
        match (&self.result, &self.error) {
            (Some(_), _) => Some(format!("Handler `{}` returned a result ({}).", self.name, self.result_size)),
            (None, Some(error)) => Some(format!("Handler `{}` failed: {error}", self.name)),
            (None, None) => None,
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_result_and_an_error_read_as_a_sentence() {
        let input = || HandlerInput { name: "handler".into(), event: json!({"k": "é"}) };
        let returned = HandlerView::of(input(), Some(&HandlerOutcome::Result(json!([1, 2]))));
        assert_eq!(returned.event, "{\n  \"k\": \"é\"\n}");
        assert_eq!(returned.result.as_deref(), Some("[\n  1,\n  2\n]"));
        assert_eq!(returned.detail().unwrap(), "Handler `handler` returned a result (5 bytes).");
        let failed = HandlerView::of(input(), Some(&HandlerOutcome::error("ValueError", "no")));
        assert_eq!(failed.detail().unwrap(), "Handler `handler` failed: ValueError: no");
        assert_eq!(HandlerView::of(input(), None).detail(), None, "still running");
    }
}
