//! A Claude call as its trace page shows it: the question, the reply, the tokens and their
//! estimated cost, each attempt (retries and their waits), and why it failed when it did.

use serde_json::Value;

use super::{Explanation, human_bytes, sentence, str_at};
use crate::api::traces::human_duration;

/// The parts of a Claude trace people read.
#[derive(Debug, PartialEq)]
pub struct ClaudeView {
    pub prompt: String,
    pub system: String,
    pub model: String,
    pub reply: String,
    pub stop_reason: String,
    /// (label, count) for input, cached input and output tokens.
    pub tokens: Vec<(&'static str, u64)>,
    pub cost: String,
    pub request_id: String,
    pub latency: String,
    pub ttft: String,
    pub attempts: Vec<AttemptRow>,
    pub skipped_blocks: Vec<String>,
    pub execute: bool,
}

#[derive(Debug, PartialEq)]
pub struct AttemptRow {
    pub number: usize,
    pub status: String,
    pub outcome: String,
    pub waited: String,
}

impl ClaudeView {
    /// The view of a `claude` trace; None for other kinds.
    pub fn of(kind: &str, input: &Value, output: &Value) -> Option<ClaudeView> {
        if kind != "claude" {
            return None;
        }
        let usage = output.get("usage").cloned().unwrap_or_default();
        let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        let ms = |key: &str| output.get(key).and_then(Value::as_f64).map(human_duration).unwrap_or_default();
        let system = match input.get("system") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => {
                blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        };
        let attempts = output
            .get("attempts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, attempt)| AttemptRow {
                number: i + 1,
                status: attempt.get("status").and_then(Value::as_u64).map(|s| s.to_string()).unwrap_or("—".into()),
                outcome: attempt.get("error").and_then(Value::as_str).unwrap_or("answered").to_owned(),
                waited: attempt.get("waited_ms").and_then(Value::as_f64).map(human_duration).unwrap_or_default(),
            })
            .collect();
        Some(ClaudeView {
            prompt: str_at(input, "prompt").to_owned(),
            system,
            model: Some(str_at(output, "model")).filter(|m| !m.is_empty()).unwrap_or(str_at(input, "model")).to_owned(),
            reply: str_at(output, "text").to_owned(),
            stop_reason: str_at(output, "stop_reason").to_owned(),
            tokens: vec![
                ("input", count("input_tokens")),
                ("cache write", count("cache_creation_input_tokens")),
                ("cache read", count("cache_read_input_tokens")),
                ("output", count("output_tokens")),
            ],
            cost: output.get("cost_usd").and_then(Value::as_f64).map(|c| format!("${c:.6}")).unwrap_or_default(),
            request_id: str_at(output, "request_id").to_owned(),
            latency: ms("latency_ms"),
            ttft: ms("ttft_ms"),
            attempts,
            skipped_blocks: output
                .get("skipped_blocks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            execute: input.get("execute").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// Why it ended, in words.
    pub fn explain(&self, status: &str, output: &Value, children: usize) -> Explanation {
        let message = output.get("error").map(|error| str_at(error, "message")).unwrap_or_default();
        let headline = match status {
            "running" => "Waiting for Claude.".to_owned(),
            "success" if self.execute => {
                let runs =
                    if children == 1 { "1 code block ran".to_owned() } else { format!("{children} code blocks ran") };
                format!("Claude answered ({}); {runs}.", self.stop_reason)
            }
            "success" => format!("Claude answered ({}).", self.stop_reason),
            _ => "The Claude call failed: no reply came.".to_owned(),
        };
        Explanation { headline, detail: Some(message.trim()).filter(|m| !m.is_empty()).map(sentence) }
    }

    /// The reply's size, for its pane.
    pub fn reply_size(&self) -> String {
        human_bytes(self.reply.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claude_trace_reads_as_question_reply_tokens_and_attempts() {
        let input = json!({"prompt": "Write Python", "system": "be brief", "model": "claude-x", "execute": true});
        let output = json!({
            "text": "```python\nprint(1)\n```", "model": "claude-x-1", "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 5},
            "cost_usd": 0.000123, "request_id": "req_1", "latency_ms": 850.0, "ttft_ms": 120.0,
            "attempts": [{"status": 529, "error": "overloaded", "waited_ms": 500.0}, {"status": 200}],
            "skipped_blocks": ["bash"],
        });
        let view = ClaudeView::of("claude", &input, &output).unwrap();
        assert_eq!(
            (view.prompt.as_str(), view.system.as_str(), view.model.as_str()),
            ("Write Python", "be brief", "claude-x-1")
        );
        assert_eq!(view.tokens, [("input", 12), ("cache write", 0), ("cache read", 5), ("output", 34)]);
        assert_eq!(view.cost, "$0.000123");
        assert_eq!(
            view.attempts[0],
            AttemptRow { number: 1, status: "529".into(), outcome: "overloaded".into(), waited: "500 ms".into() }
        );
        assert_eq!(view.attempts[1].outcome, "answered");
        assert_eq!(view.explain("success", &output, 1).headline, "Claude answered (end_turn); 1 code block ran.");
        let failed =
            json!({"error": {"message": "the Anthropic API answered 401 authentication_error: invalid x-api-key"}});
        let explained = view.explain("error", &failed, 0);
        assert!(explained.headline.contains("failed"));
        assert!(explained.detail.unwrap().starts_with("The Anthropic API answered 401"));
        assert!(ClaudeView::of("execution", &input, &output).is_none());
    }
}
