//! The checks the real API makes of a Messages request body, with its `"<field>: <reason>"`
//! messages (pydantic's wording), and what the fake needs from a body that passes them.

use serde_json::{Map, Value};

/// What a valid request asks for, as far as the fake's reply depends on it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MessagesRequest {
    pub model: String,
    pub max_tokens: u64,
    pub stream: bool,
    pub stop_sequences: Vec<String>,
    /// The text of the last user turn: where script rules match and directives are read.
    pub last_user_text: String,
    /// Characters of all the text in `system` and `messages`, to estimate input tokens.
    pub input_chars: usize,
}

/// A body that the real API would refuse with 400 `invalid_request_error`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {reason}")]
pub(super) struct Invalid {
    field: String,
    reason: &'static str,
}

fn invalid(field: impl Into<String>, reason: &'static str) -> Invalid {
    Invalid { field: field.into(), reason }
}

const REQUIRED: &str = "Field required";
const STRING: &str = "Input should be a valid string";

/// Check a `POST /v1/messages` body (`max_tokens` required) or a `count_tokens` one (not).
pub(super) fn parse(body: &Value, max_tokens_required: bool) -> Result<MessagesRequest, Invalid> {
    let Value::Object(body) = body else {
        return Err(invalid("body", "Input should be a JSON object"));
    };
    let model = match body.get("model") {
        None => return Err(invalid("model", REQUIRED)),
        Some(Value::String(model)) => model.clone(),
        Some(_) => return Err(invalid("model", STRING)),
    };
    let max_tokens = match body.get("max_tokens") {
        None if max_tokens_required => return Err(invalid("max_tokens", REQUIRED)),
        None => 1,
        Some(value) => positive_integer(value).map_err(|reason| invalid("max_tokens", reason))?,
    };
    let mut input_chars = system_chars(body.get("system"))?;
    let (last_user_text, message_chars) = messages(body.get("messages"))?;
    input_chars += message_chars;
    check_temperature(body.get("temperature"))?;
    let stop_sequences = stop_sequences(body.get("stop_sequences"))?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(invalid("stream", "Input should be a valid boolean")),
    };
    Ok(MessagesRequest { model, max_tokens, stream, stop_sequences, last_user_text, input_chars })
}

fn positive_integer(value: &Value) -> Result<u64, &'static str> {
    match value.as_u64() {
        Some(0) => Err("Input should be greater than or equal to 1"),
        Some(count) => Ok(count),
        None if value.as_i64().is_some() => Err("Input should be greater than or equal to 1"),
        None => Err("Input should be a valid integer"),
    }
}

/// `system` is a string or a list of text blocks; returns the characters of its text.
fn system_chars(system: Option<&Value>) -> Result<usize, Invalid> {
    match system {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(text)) => Ok(text.chars().count()),
        Some(Value::Array(blocks)) => {
            let mut chars = 0;
            for (index, block) in blocks.iter().enumerate() {
                let field = format!("system.{index}");
                let block = block.as_object().ok_or_else(|| invalid(&field, "Input should be a valid dictionary"))?;
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(format!("{field}.type"), "Input should be 'text'"));
                }
                chars += text_field(block, &field)?.chars().count();
            }
            Ok(chars)
        }
        Some(_) => Err(invalid("system", "Input should be a valid string or a list of text blocks")),
    }
}

/// `messages`: a non-empty list of turns. Returns the last user turn's text and the
/// characters of every turn's text.
fn messages(messages: Option<&Value>) -> Result<(String, usize), Invalid> {
    let messages = match messages {
        None => return Err(invalid("messages", REQUIRED)),
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(invalid("messages", "Input should be a valid list")),
    };
    if messages.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    let mut last_user_text = String::new();
    let mut chars = 0;
    for (index, message) in messages.iter().enumerate() {
        let field = format!("messages.{index}");
        let message = message.as_object().ok_or_else(|| invalid(&field, "Input should be a valid dictionary"))?;
        let role = match message.get("role") {
            None => return Err(invalid(format!("{field}.role"), REQUIRED)),
            Some(Value::String(role)) if role == "user" || role == "assistant" => role,
            Some(_) => return Err(invalid(format!("{field}.role"), "Input should be 'user' or 'assistant'")),
        };
        let text = content_text(message.get("content"), &format!("{field}.content"))?;
        chars += text.chars().count();
        if role == "user" {
            last_user_text = text;
        }
    }
    Ok((last_user_text, chars))
}

/// The text of a turn's `content`: a string, or the text of its blocks joined by newlines
/// (text blocks, the content of tool results, the input of tool calls).
fn content_text(content: Option<&Value>, field: &str) -> Result<String, Invalid> {
    let blocks = match content {
        None => return Err(invalid(field, REQUIRED)),
        Some(Value::String(text)) => return Ok(text.clone()),
        Some(Value::Array(blocks)) => blocks,
        Some(_) => return Err(invalid(field, "Input should be a valid string or a list of content blocks")),
    };
    let mut texts = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let field = format!("{field}.{index}");
        let block = block.as_object().ok_or_else(|| invalid(&field, "Input should be a valid dictionary"))?;
        match block.get("type") {
            None => return Err(invalid(format!("{field}.type"), REQUIRED)),
            Some(Value::String(kind)) if kind == "text" => texts.push(text_field(block, &field)?.to_owned()),
            Some(Value::String(kind)) if kind == "tool_result" => match block.get("content") {
                None | Some(Value::Null) => {}
                content => texts.push(content_text(content, &format!("{field}.content"))?),
            },
            Some(Value::String(kind)) if kind == "tool_use" => {
                texts.push(block.get("input").map(Value::to_string).unwrap_or_default());
            }
            // Images, documents, thinking…: the fake has no use for them, and the real API
            // knows more types than this page does.
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid(format!("{field}.type"), STRING)),
        }
    }
    Ok(texts.join("\n"))
}

fn text_field<'a>(block: &'a Map<String, Value>, field: &str) -> Result<&'a str, Invalid> {
    match block.get("text") {
        None => Err(invalid(format!("{field}.text"), REQUIRED)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(invalid(format!("{field}.text"), STRING)),
    }
}

fn check_temperature(temperature: Option<&Value>) -> Result<(), Invalid> {
    match temperature {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match value.as_f64() {
            None => Err(invalid("temperature", "Input should be a valid number")),
            Some(t) if t < 0.0 => Err(invalid("temperature", "Input should be greater than or equal to 0")),
            Some(t) if t > 1.0 => Err(invalid("temperature", "Input should be less than or equal to 1")),
            Some(_) => Ok(()),
        },
    }
}

fn stop_sequences(value: Option<&Value>) -> Result<Vec<String>, Invalid> {
    let sequences = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(sequences)) => sequences,
        Some(_) => return Err(invalid("stop_sequences", "Input should be a valid list")),
    };
    sequences
        .iter()
        .enumerate()
        .map(|(index, sequence)| match sequence {
            Value::String(sequence) => Ok(sequence.clone()),
            _ => Err(invalid(format!("stop_sequences.{index}"), STRING)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn error_of(body: Value) -> String {
        parse(&body, true).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_body_gives_what_the_reply_depends_on() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true, "stop_sequences": ["END"],
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                {"role": "user", "content": [{"type": "text", "text": "last"}, {"type": "image", "source": {}}]}
            ]
        });
        let request = parse(&body, true).unwrap();
        assert_eq!(request.model, "claude-sonnet-4-5");
        assert_eq!(request.max_tokens, 100);
        assert!(request.stream);
        assert_eq!(request.stop_sequences, ["END"]);
        assert_eq!(request.last_user_text, "last");
        assert_eq!(request.input_chars, "Be brief.".len() + "first".len() + "ok".len() + "last".len());
    }

    #[test]
    fn each_field_that_fails_is_named_in_the_message() {
        let base = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let with = |key: &str, value: Value| {
            let mut body = base.clone();
            body[key] = value;
            body
        };
        assert_eq!(error_of(json!({"max_tokens": 1, "messages": []})), "model: Field required");
        assert_eq!(error_of(with("model", json!(3))), "model: Input should be a valid string");
        assert_eq!(error_of(with("max_tokens", json!(0))), "max_tokens: Input should be greater than or equal to 1");
        assert_eq!(error_of(with("max_tokens", json!("10"))), "max_tokens: Input should be a valid integer");
        assert_eq!(error_of(with("messages", json!([]))), "messages: at least one message is required");
        assert_eq!(
            error_of(with("messages", json!([{"role": "system", "content": "x"}]))),
            "messages.0.role: Input should be 'user' or 'assistant'"
        );
        assert_eq!(
            error_of(with("messages", json!([{"role": "user", "content": 5}]))),
            "messages.0.content: Input should be a valid string or a list of content blocks"
        );
        assert_eq!(
            error_of(with("messages", json!([{"role": "user", "content": [{"type": "text"}]}]))),
            "messages.0.content.0.text: Field required"
        );
        assert_eq!(error_of(with("system", json!([{"type": "image"}]))), "system.0.type: Input should be 'text'");
        assert_eq!(error_of(with("temperature", json!(1.5))), "temperature: Input should be less than or equal to 1");
        assert_eq!(
            error_of(with("stop_sequences", json!(["a", 1]))),
            "stop_sequences.1: Input should be a valid string"
        );
        assert_eq!(error_of(with("stream", json!("yes"))), "stream: Input should be a valid boolean");
    }

    #[test]
    fn count_tokens_needs_no_max_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(parse(&body, false).is_ok());
        assert_eq!(parse(&body, true).unwrap_err().to_string(), "max_tokens: Field required");
    }

    #[test]
    fn the_text_of_a_tool_result_counts_as_the_last_user_text() {
        let body = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "29"}]}
        ]}]});
        assert_eq!(parse(&body, true).unwrap().last_user_text, "29");
    }
}
