//! The end of a batch in figures: how many items passed, failed, were blocked or could not
//! run; item latency; tokens and the estimated cost; and the same as a table for a terminal.

use std::fmt;

use tracebox_model::record::{BatchSummary, Outcome};

use super::item::ItemResult;
use crate::stats::percentile;

/// A batch's figures, from its items' results and how long it took in all.
pub fn summarize(results: &[ItemResult], wall_ms: f64) -> BatchSummary {
    let count = |outcome: Outcome| results.iter().filter(|r| r.outcome == outcome).count();
    let latencies: Vec<f64> = results.iter().map(|r| r.duration_ms).collect();
    let usages = results.iter().filter_map(|r| r.usage);
    BatchSummary {
        items: results.len(),
        passed: count(Outcome::Passed),
        failed: count(Outcome::Failed),
        blocked: count(Outcome::Blocked),
        errors: count(Outcome::Error),
        p50_ms: percentile(&latencies, 0.5),
        p95_ms: percentile(&latencies, 0.95),
        wall_ms,
        input_tokens: usages.clone().map(|u| u.total_input()).sum(),
        output_tokens: usages.map(|u| u.output_tokens).sum(),
        // A fold from +0.0: an empty f64 sum is -0.0, which prints as "$-0.0000".
        cost_usd: results.iter().filter_map(|r| r.cost_usd).fold(0.0, |sum, cost| sum + cost),
    }
}

/// A duration as people read it: `850 ms`, `2.4 s`.
fn human_ms(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// A batch's figures as a table for a terminal: a header line and a line of values.
pub struct SummaryTable<'a>(pub &'a BatchSummary);

impl fmt::Display for SummaryTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.0;
        let headers =
            ["items", "passed", "failed", "blocked", "errors", "p50", "p95", "tokens in/out", "est. cost", "wall"];
        let values = [
            summary.items.to_string(),
            summary.passed.to_string(),
            summary.failed.to_string(),
            summary.blocked.to_string(),
            summary.errors.to_string(),
            human_ms(summary.p50_ms),
            human_ms(summary.p95_ms),
            format!("{}/{}", summary.input_tokens, summary.output_tokens),
            format!("${:.4}", summary.cost_usd),
            human_ms(Some(summary.wall_ms)),
        ];
        let widths: Vec<usize> = headers.iter().zip(&values).map(|(h, v)| h.len().max(v.chars().count())).collect();
        let row = |cells: &mut dyn Iterator<Item = String>| {
            cells.zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect::<Vec<_>>().join("  ")
        };
        writeln!(f, "{}", row(&mut headers.iter().map(|h| h.to_string())).trim_end())?;
        write!(f, "{}", row(&mut values.iter().cloned()).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracebox_model::Usage;

    fn result(outcome: Outcome, ms: f64, usage: Option<Usage>) -> ItemResult {
        ItemResult {
            id: "x".into(),
            at: "line 1".into(),
            kind: "code".into(),
            outcome,
            passed: outcome == Outcome::Passed,
            status: "success".into(),
            exit_code: Some(0),
            failures: Vec::new(),
            trace_id: None,
            executions: Vec::new(),
            duration_ms: ms,
            stdout: String::new(),
            usage,
            cost_usd: usage.map(|_| 0.25),
        }
    }

    #[test]
    fn the_summary_counts_each_outcome_once_and_adds_up_tokens_and_cost() {
        let usage = Usage { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 2, ..Usage::default() };
        let results = [
            result(Outcome::Passed, 100.0, Some(usage)),
            result(Outcome::Passed, 300.0, Some(usage)),
            result(Outcome::Failed, 200.0, None),
            result(Outcome::Blocked, 50.0, None),
            result(Outcome::Error, 10.0, None),
        ];
        let summary = summarize(&results, 900.0);
        assert_eq!((summary.items, summary.passed, summary.failed, summary.blocked, summary.errors), (5, 2, 1, 1, 1));
        assert_eq!((summary.input_tokens, summary.output_tokens), (24, 10));
        assert_eq!(summary.cost_usd, 0.5);
        assert_eq!((summary.p50_ms, summary.p95_ms), (Some(100.0), Some(300.0)));
        let table = SummaryTable(&summary).to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("items  passed  failed  blocked  errors"), "{table}");
        assert!(lines[1].starts_with("5      2       1       1        1"), "{table}");
        assert!(table.contains("24/10") && table.contains("$0.5000") && table.contains("900 ms"), "{table}");
    }
}
