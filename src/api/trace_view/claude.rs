//! A Claude call as its trace page shows it: the question, the reply, the tokens and their
//! estimated cost, each attempt (retries and their waits), and why it failed when it did.

use serde_json::Value;

use tracebox_model::TraceStatus;
use tracebox_model::record::{Attempt, ClaudeAnswer, ClaudeInput, ClaudeOutput};

use super::Explanation;
use super::detail;
use crate::api::units::human_bytes;
use crate::api::units::human_duration;

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
    /// Why no reply came, when none did.
    pub failure: Option<String>,
}

#[derive(Debug, PartialEq)]
pub struct AttemptRow {
    pub number: usize,
    pub status: String,
    pub outcome: String,
    pub waited: String,
}

impl ClaudeView {
    /// The view of a Claude call: its question, and its reply once it came.
    pub fn of(input: &ClaudeInput, output: Option<&ClaudeOutput>) -> ClaudeView {
        let system = match &input.system {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => {
                blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        };
        let mut view = ClaudeView {
            prompt: input.prompt.clone().unwrap_or_default(),
            system,
            model: input.model.clone(),
            reply: String::new(),
            stop_reason: String::new(),
            tokens: Vec::new(),
            cost: String::new(),
            request_id: String::new(),
            latency: String::new(),
            ttft: String::new(),
            attempts: Vec::new(),
            skipped_blocks: Vec::new(),
            execute: input.execute,
            failure: None,
        };
        match output {
            None => {}
            Some(ClaudeOutput::Answered(answer)) => view.answered(answer),
            Some(ClaudeOutput::Failed(failure)) => {
                view.reply = failure.partial_text.clone().unwrap_or_default();
                view.request_id = failure.request_id.clone().unwrap_or_default();
                view.latency = failure.latency_ms.map(human_duration).unwrap_or_default();
                view.attempts = attempt_rows(&failure.attempts);
                view.failure = Some(failure.error.message.clone());
            }
        }
        view
    }

    fn answered(&mut self, answer: &ClaudeAnswer) {
        let usage = answer.usage;
        self.model = answer.model.clone();
        self.reply = answer.text.clone();
        self.stop_reason = answer.stop_reason.clone().unwrap_or_default();
        self.tokens = vec![
            ("input", usage.input_tokens),
            ("cache write", usage.cache_creation_input_tokens),
            ("cache read", usage.cache_read_input_tokens),
            ("output", usage.output_tokens),
        ];
        self.cost = answer.cost_usd.map(|c| format!("${c:.6}")).unwrap_or_default();
        self.request_id = answer.request_id.clone().unwrap_or_default();
        self.latency = human_duration(answer.latency_ms);
        self.ttft = answer.ttft_ms.map(human_duration).unwrap_or_default();
        self.attempts = attempt_rows(&answer.attempts);
        self.skipped_blocks = answer.skipped_blocks.clone();
    }

    /// Why it ended, in words.
    pub fn explain(&self, status: TraceStatus, output: Option<&ClaudeOutput>, children: usize) -> Explanation {
        let headline = match (status, output) {
            (TraceStatus::Running, _) => "Waiting for Claude.".to_owned(),
            (_, Some(ClaudeOutput::Answered(_))) if self.execute => {
                let runs =
                    if children == 1 { "1 code block ran".to_owned() } else { format!("{children} code blocks ran") };
                format!("Claude answered ({}); {runs}.", self.stop_reason)
            }
            (_, Some(ClaudeOutput::Answered(_))) => format!("Claude answered ({}).", self.stop_reason),
            (_, Some(ClaudeOutput::Failed(_)) | None) => "The Claude call failed: no reply came.".to_owned(),
        };
        Explanation { headline, detail: self.failure.as_deref().and_then(detail) }
    }

    /// The reply's size, for its pane.
    pub fn reply_size(&self) -> String {
        human_bytes(self.reply.len() as u64)
    }
}

fn attempt_rows(attempts: &[Attempt]) -> Vec<AttemptRow> {
    attempts
        .iter()
        .enumerate()
        .map(|(i, attempt)| AttemptRow {
            number: i + 1,
            status: attempt.status.map(|s| s.to_string()).unwrap_or("—".into()),
            outcome: attempt.error.clone().unwrap_or("answered".into()),
            waited: attempt.waited_ms.map(human_duration).unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tracebox_model::Status;

    fn input() -> ClaudeInput {
        serde_json::from_value(json!({
            "prompt": "Write Python", "messages": [], "system": "be brief", "model": "claude-x", "max_tokens": 100,
            "temperature": null, "stream": false, "execute": true, "language": "python",
            "limits": {"timeout": 10.0, "memory_bytes": 1, "cpus": 1.0, "pids": 1, "output_bytes": 1},
        }))
        .unwrap()
    }

    #[test]
    fn a_claude_trace_reads_as_question_reply_tokens_and_attempts() {
        let output: ClaudeOutput = serde_json::from_value(json!({
            "text": "```python\nprint(1)\n```", "content": [], "model": "claude-x-1", "message_id": "msg_1",
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 5},
            "cost_usd": 0.000123, "request_id": "req_1", "latency_ms": 850.0, "ttft_ms": 120.0,
            "attempts": [{"status": 529, "request_id": null, "error": "overloaded", "ms": 10.0, "waited_ms": 500.0},
                         {"status": 200, "request_id": "req_1", "error": null, "ms": 800.0, "waited_ms": null}],
            "retries": 1, "executions": [], "skipped_blocks": ["bash"],
        }))
        .unwrap();
        let view = ClaudeView::of(&input(), Some(&output));
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
        let ended = TraceStatus::Ended(Status::Success);
        assert_eq!(view.explain(ended, Some(&output), 1).headline, "Claude answered (end_turn); 1 code block ran.");
    }

    #[test]
    fn a_failed_call_says_why_no_reply_came() {
        let failed: ClaudeOutput = serde_json::from_value(
            json!({"error": {"message": "the Anthropic API answered 401 authentication_error: invalid x-api-key"}}),
        )
        .unwrap();
        let view = ClaudeView::of(&input(), Some(&failed));
        let explained = view.explain(TraceStatus::Ended(Status::Error), Some(&failed), 0);
        assert!(explained.headline.contains("failed"));
        assert!(explained.detail.unwrap().starts_with("The Anthropic API answered 401"));
    }
}
