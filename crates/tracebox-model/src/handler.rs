//! Handler mode (Lambda-style): the code defines a function that tracebox calls with an event and
//! a context; what it returns, or raises, is the run's `result`, or its `error`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A handler call, as a checked request asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerCall {
    /// The function's name: an identifier the code defines (Python) or exports (Node).
    pub name: String,
    /// What it is called with (`null` when the request gave none).
    pub event: Value,
    /// The most bytes of JSON its result may be (TRACEBOX_MAX_RESULT_BYTES).
    pub result_limit: u64,
}

/// What a handler call gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerOutcome {
    /// The JSON it returned (`null` included).
    Result(Value),
    /// What it raised, or why it gave no result.
    Error(HandlerError),
}

impl HandlerOutcome {
    /// An error tracebox reports itself (one of [`error_type`]'s), with no stack.
    pub fn error(kind: &str, message: impl Into<String>) -> HandlerOutcome {
        HandlerOutcome::Error(HandlerError { kind: kind.to_owned(), message: message.into(), stack: String::new() })
    }

    pub fn is_result(&self) -> bool {
        matches!(self, HandlerOutcome::Result(_))
    }
}

/// A handler's error, as Lambda reports one (`errorType`, `errorMessage`, `stackTrace`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerError {
    /// The exception's class (`ZeroDivisionError`, `TypeError`), or one of [`error_type`]'s.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// The traceback (Python) or `error.stack` (Node), as the language prints it; empty for
    /// tracebox's own errors.
    pub stack: String,
}

/// The types of the errors the runtime reports rather than the handler raises, named as Lambda
/// names its own (`Runtime.…`).
pub mod error_type {
    /// The code defines no function by the handler's name.
    pub const HANDLER_NOT_FOUND: &str = "Runtime.HandlerNotFound";
    /// The handler returned something JSON cannot hold (a set, a function, NaN…).
    pub const MARSHAL_ERROR: &str = "Runtime.MarshalError";
    /// The handler's result is over TRACEBOX_MAX_RESULT_BYTES.
    pub const RESULT_TOO_LARGE: &str = "Runtime.ResultTooLarge";
    /// The program ended before its handler returned (it exited, or a promise never settled).
    pub const EXIT_ERROR: &str = "Runtime.ExitError";
    /// The run hit its timeout before the handler returned.
    pub const TIMEOUT: &str = "Runtime.Timeout";
    /// The run was killed for memory before the handler returned.
    pub const OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";
    /// The run was stopped at the output limit before the handler returned.
    pub const OUTPUT_LIMIT: &str = "Runtime.OutputLimit";
    /// Its client stopped the run before the handler returned.
    pub const KILLED: &str = "Runtime.Killed";
    /// Something other than tracebox's runner wrote to the result's channel: no result it
    /// carried can be trusted.
    pub const BAD_CHANNEL: &str = "Runtime.BadChannel";
}

/// A handler call as its trace keeps it (the event redacted as stdin is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerInput {
    pub name: String,
    pub event: Value,
}

/// Is `name` a handler's name: an ASCII identifier (letters, digits, `_`, and `$` which Node
/// allows), not starting with a digit, at most [`MAX_NAME_CHARS`]?
pub fn is_handler_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$');
    first && name.len() <= MAX_NAME_CHARS && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The longest handler name.
pub const MAX_NAME_CHARS: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_outcome_is_a_result_or_an_error_keyed_as_the_reply_shows_it() {
        let result = HandlerOutcome::Result(json!({"ok": [1, "é"]}));
        assert_eq!(serde_json::to_value(&result).unwrap(), json!({"result": {"ok": [1, "é"]}}));
        let null = HandlerOutcome::Result(Value::Null);
        let read: HandlerOutcome = serde_json::from_value(serde_json::to_value(&null).unwrap()).unwrap();
        assert_eq!(read, null, "a null result stays a result");
        let error = HandlerOutcome::error(error_type::HANDLER_NOT_FOUND, "none");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"error": {"type": "Runtime.HandlerNotFound", "message": "none", "stack": ""}})
        );
    }

    #[test]
    fn handler_names_are_identifiers() {
        for good in ["handler", "_h", "$h", "lambda_handler2", &"h".repeat(MAX_NAME_CHARS)] {
            assert!(is_handler_name(good), "{good}");
        }
        for bad in ["", "2h", "a.b", "a b", "hé", "h-1", "h\0", &"h".repeat(MAX_NAME_CHARS + 1)] {
            assert!(!is_handler_name(bad), "{bad:?}");
        }
    }
}
