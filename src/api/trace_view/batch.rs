//! A batch as its trace page shows it: the summary, and each item with its outcome, what did not
//! hold, and a link to its own trace.

use tracebox_model::record::{BatchInput, BatchOutput};
use tracebox_model::{Status, TraceStatus};

use super::Explanation;
use crate::api::units::human_duration;

/// The parts of a batch trace people read.
#[derive(Debug, PartialEq)]
pub struct BatchView {
    pub name: String,
    /// (label, value) of the summary.
    pub figures: Vec<(&'static str, String)>,
    pub items: Vec<ItemRow>,
    passed: usize,
    total: usize,
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
    /// The view of a batch: its figures and items once it ended.
    pub fn of(input: &BatchInput, output: Option<&BatchOutput>) -> BatchView {
        let summary = output.map(|output| output.summary.clone()).unwrap_or_default();
        let ms = |ms: Option<f64>| ms.map(human_duration).unwrap_or("—".into());
        let figures = vec![
            ("items", summary.items.to_string()),
            ("passed", summary.passed.to_string()),
            ("failed", summary.failed.to_string()),
            ("blocked", summary.blocked.to_string()),
            ("errors", summary.errors.to_string()),
            ("latency p50", ms(summary.p50_ms)),
            ("latency p95", ms(summary.p95_ms)),
            ("tokens in / out", format!("{} / {}", summary.input_tokens, summary.output_tokens)),
            ("estimated cost", format!("${:.4}", summary.cost_usd)),
        ];
        let mut items: Vec<ItemRow> = output
            .into_iter()
            .flat_map(|output| &output.items)
            .map(|item| ItemRow {
                id: item.id.clone(),
                at: item.at.clone(),
                outcome: item.outcome.as_str().to_owned(),
                status: item.status.clone(),
                trace_id: item.trace_id.map(|id| id.to_string()).unwrap_or_default(),
                duration: human_duration(item.duration_ms),
                failures: item.failures.join("; "),
            })
            .collect();
        // In the prompt set's order, whatever order they finished in.
        items.sort_by_key(|item| crate::batch::position(&item.at));
        BatchView { name: input.name.clone(), figures, items, passed: summary.passed, total: input.items }
    }

    pub fn explain(&self, status: TraceStatus) -> Explanation {
        let headline = match status {
            TraceStatus::Running => format!("Running {} items.", self.total),
            TraceStatus::Ended(Status::Success) => format!("All {} items passed.", self.total),
            TraceStatus::Ended(_) => format!("{} of {} items passed.", self.passed, self.total),
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
        let input = BatchInput { name: "grading.jsonl".into(), items: 2, concurrency: 1 };
        let output: BatchOutput = serde_json::from_value(json!({
            "summary": {"items": 2, "passed": 1, "failed": 1, "blocked": 0, "errors": 0, "p50_ms": 120.0, "p95_ms": 900.0,
                        "wall_ms": 1000.0, "input_tokens": 10, "output_tokens": 20, "cost_usd": 0.01},
            "items": [
                {"id": "b", "at": "line 10", "outcome": "failed", "status": "error", "trace_id": null, "duration_ms": 900.0,
                 "failures": ["status is error, expected success", "stdout does not contain \"29\""]},
                {"id": "a", "at": "line 2", "outcome": "passed", "status": "success", "trace_id": null, "duration_ms": 120.0, "failures": []},
            ],
        }))
        .unwrap();
        let view = BatchView::of(&input, Some(&output));
        assert_eq!(view.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(view.items[1].failures, "status is error, expected success; stdout does not contain \"29\"");
        assert!(view.figures.contains(&("estimated cost", "$0.0100".into())));
        assert_eq!(view.explain(TraceStatus::Ended(Status::Error)).headline, "1 of 2 items passed.");
        assert_eq!(view.explain(TraceStatus::Ended(Status::Success)).headline, "All 2 items passed.");
    }
}
