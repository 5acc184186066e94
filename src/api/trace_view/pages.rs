//! Links to the other pages of what a trace page lists a page at a time: its children, a
//! sandbox's steps.

use crate::api::units::grouped;
use crate::trace::{ChildWindow, TraceDetail};

/// A link to another page.
#[derive(Debug, PartialEq)]
pub struct PageLink {
    pub label: String,
    pub url: String,
}

/// When a trace has more children than one window: which are shown, and links to the others.
pub fn children_pages(trace: &TraceDetail, from: u64) -> (String, Vec<PageLink>) {
    let (total, shown) = (trace.children_total, trace.children.len() as u64);
    if from == 0 && shown == total {
        return (String::new(), Vec::new());
    }
    let id = trace.summary.id;
    let link = |label: String, from: u64| PageLink {
        label,
        url: if from == 0 { format!("/trace/{id}") } else { format!("/trace/{id}?children_from={from}") },
    };
    let range = match shown {
        0 => format!("None of its {} children from the {}th.", grouped(total), grouped(from + 1)),
        _ => format!("Children {}–{} of {}.", grouped(from + 1), grouped(from + shown), grouped(total)),
    };
    let mut links = Vec::new();
    if from > 0 {
        links.push(link("← First".to_owned(), 0));
    }
    let next = from + ChildWindow::PAGE;
    if next < total {
        links.push(link(format!("Next {} →", (total - next).min(ChildWindow::PAGE)), next));
    }
    (range, links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceSummary;
    use tracebox_model::{TraceId, TraceKind, TraceStatus};

    fn with_children(shown: usize, total: u64) -> TraceDetail {
        let summary = |id| TraceSummary {
            id,
            parent_id: None,
            kind: TraceKind::Batch,
            status: TraceStatus::Running,
            source: "http".into(),
            language: None,
            started_at: String::new(),
            ended_at: None,
            duration_ms: None,
            exit_code: None,
            preview: String::new(),
            tenant: None,
        };
        TraceDetail {
            summary: summary(TraceId::new()),
            input: serde_json::Value::Null,
            output: serde_json::Value::Null,
            events: Vec::new(),
            children: (0..shown).map(|_| summary(TraceId::new())).collect(),
            children_total: total,
        }
    }

    #[test]
    fn children_past_a_page_say_which_are_shown_and_link_to_the_others() {
        assert_eq!(
            children_pages(&with_children(3, 3), 0),
            (String::new(), Vec::new()),
            "all on one page: nothing said"
        );
        let trace = with_children(1_000, 2_500);
        let id = trace.summary.id;
        let (range, links) = children_pages(&trace, 1_000);
        assert_eq!(range, "Children 1,001–2,000 of 2,500.");
        let links: Vec<(&str, String)> = links.iter().map(|l| (l.label.as_str(), l.url.clone())).collect();
        assert_eq!(
            links,
            [("← First", format!("/trace/{id}")), ("Next 500 →", format!("/trace/{id}?children_from=2000"))]
        );
    }
}
