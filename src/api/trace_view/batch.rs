//! A batch as its trace page shows it: the summary, and each item with its outcome, what did not
//! hold, and a link to its own trace.

use serde_json::Value;

use super::{Explanation, str_at};
use crate::api::traces::human_duration;

/// The parts of a batch trace people read.
#[derive(Debug, PartialEq)]
pub struct BatchView {
    pub name: String,
    /// (label, value) of the summary.
    pub figures: Vec<(&'static str, String)>,
    pub items: Vec<ItemRow>,
    passed: u64,
    total: u64,
}

#[derive(Debug, PartialEq)]
pub struct ItemRow {
    pub id: String,
    pub at: String,
    pub outcome: String,
    pub status: String,
    pub trace_id: String,
    pub duration: String,
    pub failures: String,
}

impl BatchView {
    /// The view of a `batch` trace; None for other kinds.
    pub fn of(kind: &str, input: &Value, output: &Value) -> Option<BatchView> {
        if kind != "batch" {
            return None;
        }
        let summary = output.get("summary").cloned().unwrap_or_default();
        let number = |key: &str| summary.get(key).and_then(Value::as_u64).unwrap_or(0);
        let ms = |key: &str| summary.get(key).and_then(Value::as_f64).map(human_duration).unwrap_or("—".into());
        let figures = vec![
            ("items", number("items").to_string()),
            ("passed", number("passed").to_string()),
            ("failed", number("failed").to_string()),
            ("blocked", number("blocked").to_string()),
            ("errors", number("errors").to_string()),
            ("latency p50", ms("p50_ms")),
            ("latency p95", ms("p95_ms")),
            ("tokens in / out", format!("{} / {}", number("input_tokens"), number("output_tokens"))),
            ("estimated cost", format!("${:.4}", summary.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0))),
        ];
        let mut items: Vec<ItemRow> = output
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|item| ItemRow {
                id: str_at(item, "id").to_owned(),
                at: str_at(item, "at").to_owned(),
                outcome: str_at(item, "outcome").to_owned(),
                status: str_at(item, "status").to_owned(),
                trace_id: str_at(item, "trace_id").to_owned(),
                duration: item.get("duration_ms").and_then(Value::as_f64).map(human_duration).unwrap_or_default(),
                failures: item
                    .get("failures")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
            })
            .collect();
        // In the prompt set's order, whatever order they finished in.
        items.sort_by_key(|item| crate::batch::position(&item.at));
        Some(BatchView {
            name: str_at(input, "name").to_owned(),
            figures,
            items,
            passed: number("passed"),
            total: input.get("items").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    pub fn explain(&self, status: &str) -> Explanation {
        let headline = match status {
            "running" => format!("Running {} items.", self.total),
            "success" => format!("All {} items passed.", self.total),
            _ => format!("{} of {} items passed.", self.passed, self.total),
        };
        Explanation { headline, detail: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_lists_its_items_in_the_prompt_sets_order_with_what_failed() {
        let input = json!({"name": "grading.jsonl", "items": 2});
        let output = json!({
            "summary": {"items": 2, "passed": 1, "failed": 1, "blocked": 0, "errors": 0, "p50_ms": 120.0, "p95_ms": 900.0,
                        "input_tokens": 10, "output_tokens": 20, "cost_usd": 0.01},
            "items": [
                {"id": "b", "at": "line 10", "outcome": "failed", "status": "error", "trace_id": "t2", "duration_ms": 900.0,
                 "failures": ["status is error, expected success", "stdout does not contain \"29\""]},
                {"id": "a", "at": "line 2", "outcome": "passed", "status": "success", "trace_id": "t1", "duration_ms": 120.0, "failures": []},
            ],
        });
        let view = BatchView::of("batch", &input, &output).unwrap();
        assert_eq!(view.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(view.items[1].failures, "status is error, expected success; stdout does not contain \"29\"");
        assert!(view.figures.contains(&("estimated cost", "$0.0100".into())));
        assert_eq!(view.explain("error").headline, "1 of 2 items passed.");
        assert_eq!(view.explain("success").headline, "All 2 items passed.");
    }
}
