//! A schedule as its trace page shows it: how many tasks went where, and each task with its
//! node, the nodes that failed it first, and a link to its own trace.

use std::collections::BTreeMap;

use tracebox_model::record::{ScheduleInput, ScheduleOutput};
use tracebox_model::{Status, TraceStatus};

use super::Explanation;
use crate::api::units::human_duration;

/// The parts of a schedule trace people read.
#[derive(Debug, PartialEq)]
pub struct ScheduleView {
    /// (label, value): the strategy, the tasks, each node's share.
    pub figures: Vec<(String, String)>,
    pub tasks: Vec<TaskRow>,
    succeeded: usize,
    total: usize,
}

#[derive(Debug, PartialEq)]
pub struct TaskRow {
    pub number: usize,
    pub status: String,
    pub trace_id: String,
    pub node: String,
    /// The nodes that failed it before its program started, and why.
    pub attempts: String,
    pub duration: String,
}

impl ScheduleView {
    pub fn of(input: &ScheduleInput, output: Option<&ScheduleOutput>) -> ScheduleView {
        let tasks: Vec<TaskRow> = output
            .into_iter()
            .flat_map(|output| output.tasks.iter().enumerate())
            .map(|(i, task)| TaskRow {
                number: i + 1,
                status: task.status.clone(),
                trace_id: task.trace_id.map(|id| id.to_string()).unwrap_or_default(),
                node: task.node.clone().unwrap_or_else(|| "—".into()),
                attempts: match (&task.error, task.attempts.is_empty()) {
                    (Some(error), true) => error.clone(),
                    _ => {
                        task.attempts.iter().map(|a| format!("{}: {}", a.node, a.error)).collect::<Vec<_>>().join("; ")
                    }
                },
                duration: human_duration(task.duration_ms as f64),
            })
            .collect();
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for task in &tasks {
            *per_node.entry(task.node.as_str()).or_default() += 1;
        }
        let mut figures =
            vec![("strategy".to_owned(), input.strategy.to_string()), ("tasks".to_owned(), input.tasks.to_string())];
        if let Some(output) = output {
            figures.push(("wall time".to_owned(), human_duration(output.wall_ms as f64)));
        }
        figures.extend(per_node.iter().map(|(node, n)| (format!("on {node}"), n.to_string())));
        let succeeded = tasks.iter().filter(|task| task.status == Status::Success.as_str()).count();
        ScheduleView { figures, tasks, succeeded, total: input.tasks }
    }

    pub fn explain(&self, status: TraceStatus) -> Explanation {
        let headline = match status {
            TraceStatus::Running => format!("Running {} tasks over the nodes.", self.total),
            _ => format!("{} of {} tasks succeeded.", self.succeeded, self.total),
        };
        Explanation { headline, detail: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tracebox_model::Strategy;

    #[test]
    fn a_schedule_shows_each_tasks_node_and_the_nodes_that_failed_it_first() {
        let input = ScheduleInput { tasks: 3, strategy: Strategy::RoundRobin };
        let output: ScheduleOutput = serde_json::from_value(json!({
            "wall_ms": 1500,
            "tasks": [
                {"status": "success", "trace_id": null, "node": "node-a", "attempts": [], "duration_ms": 90, "error": null},
                {"status": "success", "trace_id": null, "node": "node-b",
                 "attempts": [{"node": "node-c", "error": "engine unreachable"}], "duration_ms": 120, "error": null},
                {"status": "refused", "trace_id": null, "node": null, "attempts": [], "duration_ms": 0,
                 "error": "no node carries zone=moon"},
            ],
        }))
        .unwrap();
        let view = ScheduleView::of(&input, Some(&output));
        assert_eq!(view.tasks[1].node, "node-b");
        assert_eq!(view.tasks[1].attempts, "node-c: engine unreachable");
        assert_eq!(view.tasks[2].attempts, "no node carries zone=moon");
        assert!(view.figures.contains(&("on node-a".to_owned(), "1".to_owned())));
        assert!(view.figures.contains(&("strategy".to_owned(), "round_robin".to_owned())));
        assert_eq!(view.explain(TraceStatus::Ended(Status::Error)).headline, "2 of 3 tasks succeeded.");
    }
}
