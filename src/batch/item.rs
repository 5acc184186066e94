//! What a batch gives back: a result per item (a line of the results file) and the report.

use serde::{Deserialize, Serialize};
use tracebox_model::record::{BatchSummary, Outcome};
use tracebox_model::{TraceId, Usage};

/// One line of the results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    /// Where it was in the prompt set (`line 3`).
    pub at: String,
    /// `code` or `prompt`.
    pub kind: String,
    pub outcome: Outcome,
    pub passed: bool,
    /// The run's status (the last block's, for a prompt), or `no_code` / `claude_error`.
    pub status: String,
    pub exit_code: Option<i64>,
    /// What did not hold, or why it could not run.
    pub failures: Vec<String>,
    /// The item's trace: its run, or its Claude call.
    pub trace_id: Option<TraceId>,
    /// The runs of a prompt's code blocks.
    pub executions: Vec<TraceId>,
    pub duration_ms: f64,
    /// The start of its stdout (all blocks', for a prompt).
    pub stdout: String,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
}

/// A finished batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReport {
    pub batch_id: TraceId,
    pub summary: BatchSummary,
    pub items: Vec<ItemResult>,
}

impl BatchReport {
    /// 0 when every expectation held, 1 otherwise (2 is for a prompt set that cannot run).
    pub fn exit_code(&self) -> u8 {
        if self.items.iter().all(|item| item.passed) { 0 } else { 1 }
    }
}
