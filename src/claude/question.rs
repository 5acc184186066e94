//! A question for Claude as a door received it (`POST /claude`, a WebSocket `claude` message, a
//! prompt-set item), checked against the server's settings into an [`Ask`]: one set of checks
//! for every door, each refusal naming its field.

use serde::Deserialize;
use serde_json::Value;

use tracebox_model::{Language, Source, TraceId, UnknownLanguage};

use super::call::Ask;
use super::messages::MessagesRequest;
use super::settings::CallSettings;
use crate::submission::{LimitError, RequestLimits};

/// The largest `max_tokens` accepted: beyond what any model writes, a typo.
pub const MAX_TOKENS_LIMIT: u32 = 128_000;
/// The longest model name accepted.
const MAX_MODEL_CHARS: usize = 200;

/// The fields of `POST /claude`; unknown ones are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The user's text: one user turn.
    pub prompt: Option<String>,
    /// Or the whole conversation, in Anthropic's own shape.
    pub messages: Option<Vec<Value>>,
    /// A string or Anthropic's text blocks.
    pub system: Option<Value>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub stop_sequences: Option<Vec<String>>,
    /// Run the reply's code blocks.
    pub execute: Option<bool>,
    /// The language of untagged blocks.
    pub language: Option<String>,
    /// Stream the reply as it comes.
    pub stream: Option<bool>,
    /// Limits of each block's run, as `/execute` takes them.
    pub timeout: Option<f64>,
    pub memory_mb: Option<u64>,
    /// Uploaded files each block's run reads (found by the door, as `/execute` does).
    pub files: Option<Vec<String>>,
}

/// A question that cannot be asked as it is.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    #[error(
        "send `prompt` (text) or `messages` (Anthropic's list of turns), e.g. {{\"prompt\": \"Write Python that prints the 10th prime\"}}"
    )]
    Missing,
    #[error("{0}")]
    Invalid(String),
    #[error("`language`: {0}")]
    Language(#[from] UnknownLanguage),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl Question {
    /// Check every field against the server's limits on runs (`allowed`) and its settings for
    /// calls, naming the first that does not fit; what is not given takes the server's default.
    /// `files` are left to the door, which finds them.
    pub fn check(
        self,
        allowed: &RequestLimits,
        calls: &CallSettings,
        source: Source,
        parent: Option<TraceId>,
    ) -> Result<Ask, QuestionError> {
        let invalid = |message: String| Err(QuestionError::Invalid(message));
        let messages = match (self.prompt, self.messages) {
            (Some(_), Some(_)) => return invalid("send `prompt` or `messages`, not both".into()),
            (None, None) => return Err(QuestionError::Missing),
            (Some(prompt), None) if prompt.trim().is_empty() => return invalid("`prompt` is empty".into()),
            (Some(prompt), None) => vec![serde_json::json!({"role": "user", "content": prompt})],
            (None, Some(messages)) => {
                check_messages(&messages).map_err(QuestionError::Invalid)?;
                messages
            }
        };
        if let Some(system) = &self.system
            && !(system.is_string() || system.is_array())
        {
            return invalid("`system` must be a string or a list of text blocks".into());
        }
        let model = self.model.unwrap_or_else(|| calls.model.clone());
        if model.trim().is_empty() || model.chars().count() > MAX_MODEL_CHARS {
            return invalid(format!("`model` must be a model name of 1 to {MAX_MODEL_CHARS} characters"));
        }
        let max_tokens = self.max_tokens.unwrap_or(calls.max_tokens);
        if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
            return invalid(format!("`max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}"));
        }
        if let Some(temperature) = self.temperature
            && !(0.0..=1.0).contains(&temperature)
        {
            return invalid("`temperature` must be between 0 and 1".into());
        }
        let stop_sequences = self.stop_sequences.unwrap_or_default();
        if stop_sequences.iter().any(|s| s.is_empty()) {
            return invalid("`stop_sequences` may not hold an empty string".into());
        }
        let language = self.language.as_deref().map(str::parse).transpose()?.unwrap_or(Language::Python);
        let limits = allowed.run_limits(self.timeout, self.memory_mb)?;
        Ok(Ask {
            request: MessagesRequest {
                model,
                max_tokens,
                messages,
                system: self.system,
                temperature: self.temperature,
                stop_sequences,
                stream: self.stream.unwrap_or(false),
            },
            execute: self.execute.unwrap_or(false),
            language,
            limits,
            files: Vec::new(),
            source,
            parent,
            owner: None,
        })
    }
}

/// Turns as Anthropic takes them: objects with a `role` (user or assistant) and a `content`
/// (text, or a list of blocks).
fn check_messages(messages: &[Value]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("`messages` is empty; give at least one user turn".into());
    }
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(format!("`messages[{i}].role` must be \"user\" or \"assistant\""));
        }
        match message.get("content") {
            Some(Value::String(_) | Value::Array(_)) => {}
            _ => return Err(format!("`messages[{i}].content` must be text or a list of content blocks")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(question: Question) -> Result<Ask, QuestionError> {
        question.check(&RequestLimits::defaults(), &CallSettings::defaults(), Source::Http, None)
    }

    fn prompt(text: &str) -> Question {
        Question { prompt: Some(text.into()), ..Question::default() }
    }

    #[test]
    fn a_prompt_alone_takes_the_servers_defaults() {
        let ask = check(prompt("hi")).unwrap();
        let calls = CallSettings::defaults();
        assert_eq!(ask.request.model, calls.model);
        assert_eq!(ask.request.max_tokens, calls.max_tokens);
        assert_eq!(ask.request.messages, [json!({"role": "user", "content": "hi"})]);
        assert_eq!((ask.execute, ask.language, ask.request.stream), (false, Language::Python, false));
    }

    #[test]
    fn each_refusal_names_its_field() {
        let refused = |question: Question| check(question).unwrap_err().to_string();
        assert!(refused(Question::default()).contains("`prompt`"));
        assert!(refused(prompt(" ")).contains("empty"));
        assert!(refused(Question { messages: Some(vec![]), ..prompt("x") }).contains("not both"));
        let bad_role =
            Question { messages: Some(vec![json!({"role": "system", "content": "x"})]), ..Question::default() };
        assert!(refused(bad_role).contains("messages[0].role"));
        let bad_content =
            Question { messages: Some(vec![json!({"role": "user", "content": 3})]), ..Question::default() };
        assert!(refused(bad_content).contains("messages[0].content"));
        assert!(refused(Question { max_tokens: Some(0), ..prompt("x") }).contains("`max_tokens`"));
        assert!(refused(Question { max_tokens: Some(MAX_TOKENS_LIMIT + 1), ..prompt("x") }).contains("`max_tokens`"));
        assert!(check(Question { max_tokens: Some(MAX_TOKENS_LIMIT), ..prompt("x") }).is_ok());
        assert!(refused(Question { temperature: Some(1.5), ..prompt("x") }).contains("`temperature`"));
        assert!(check(Question { temperature: Some(1.0), ..prompt("x") }).is_ok());
        assert!(refused(Question { model: Some(String::new()), ..prompt("x") }).contains("`model`"));
        assert!(refused(Question { language: Some("ruby".into()), ..prompt("x") }).contains("`language`"));
        assert!(refused(Question { timeout: Some(0.0), ..prompt("x") }).contains("`timeout`"));
        assert!(refused(Question { system: Some(json!(3)), ..prompt("x") }).contains("`system`"));
    }
}
