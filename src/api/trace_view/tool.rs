//! A tool call's page: the call in the form a person would type it, its output, and for a
//! `file_write` the diff it made; a replay's page: what it replayed and where it diverged.

use serde_json::Value;
use tracebox_model::tool::{ReplayInput, ReplayOutput, ToolInput, ToolName, ToolOutput};

use super::{DetailPage, Details, Explanation, OutputPane, detail};

impl DetailPage<'_> {
    pub(super) fn show_tool(&mut self, input: ToolInput, output: Option<ToolOutput>) {
        let (code, highlight) = call_text(input.tool, &input.params);
        self.code = code;
        self.highlight = highlight;
        let mut facts = vec![("sandbox", input.sandbox_id), ("tool", input.tool.to_string())];
        facts.extend(input.replay.map(|replay| ("made by replay", replay)));
        let Some(output) = output else {
            self.details = Some(Details { title: "Tool call", facts });
            return;
        };
        facts.push(("success", output.success.to_string()));
        facts.extend(output.exit_code.map(|code| ("exit code", code.to_string())));
        if output.truncated {
            facts.push(("truncated", "the output was cut (a result count or the output limit)".to_owned()));
        }
        self.explanation = Explanation {
            headline: if output.success { "The tool call succeeded." } else { "The tool call failed." }.to_owned(),
            detail: output.error.as_deref().and_then(detail),
        };
        self.outputs =
            [OutputPane::of("output", output.output), OutputPane::of("diff", output.diff.unwrap_or_default())];
        self.details = Some(Details { title: "Tool call", facts });
    }

    pub(super) fn show_replay(&mut self, input: ReplayInput, output: Option<ReplayOutput>) {
        let mut facts = vec![
            ("sandbox", input.sandbox_id),
            ("steps", input.steps.to_string()),
            ("reset first", input.reset.to_string()),
        ];
        facts.extend(input.metadata.into_iter().map(|(key, value)| ("metadata", format!("{key} = {value}"))));
        if let Some(output) = output {
            self.explanation.headline = match output.divergence_step {
                -1 => format!("Replayed all {} steps: no step diverged.", input.steps),
                step => format!(
                    "Diverged at step {step}; {} of {} steps differed (listed below in order).",
                    output.diverged.len(),
                    input.steps
                ),
            };
            if !output.diverged.is_empty() {
                let steps: Vec<String> = output.diverged.iter().map(ToString::to_string).collect();
                facts.push(("diverged steps", steps.join(", ")));
            }
        }
        self.details = Some(Details { title: "Replay", facts });
    }
}

/// A tool call as a person would type it, and how to highlight that.
fn call_text(tool: ToolName, params: &Value) -> (String, &'static str) {
    let text = |key: &str| params[key].as_str().unwrap_or_default().to_owned();
    match tool {
        ToolName::Shell => (text("command"), "bash"),
        ToolName::Git => {
            let args: Vec<&str> = params["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            (format!("git {}", args.join(" ")), "bash")
        }
        ToolName::Search => {
            let mut call = format!("search {:?}", text("pattern"));
            for key in ["path", "glob"] {
                if let Some(value) = params[key].as_str() {
                    call.push_str(&format!(" {key}={value:?}"));
                }
            }
            (call, "plaintext")
        }
        ToolName::FileRead => {
            let lines = match (params["start_line"].as_u64(), params["end_line"].as_u64()) {
                (None, None) => String::new(),
                (start, end) => format!(
                    " lines {}-{}",
                    start.map_or("1".to_owned(), |s| s.to_string()),
                    end.map_or("end".to_owned(), |e| e.to_string())
                ),
            };
            (format!("read {}{lines}", text("path")), "plaintext")
        }
        ToolName::FileWrite => (format!("write {}\n\n{}", text("path"), text("content")), "plaintext"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_call_reads_as_it_would_be_typed() {
        assert_eq!(call_text(ToolName::Git, &json!({"args": ["diff", "--stat"]})).0, "git diff --stat");
        assert_eq!(call_text(ToolName::Shell, &json!({"command": "make test"})), ("make test".to_owned(), "bash"));
        assert_eq!(call_text(ToolName::FileRead, &json!({"path": "a.py", "start_line": 3})).0, "read a.py lines 3-end");
        assert_eq!(call_text(ToolName::FileRead, &json!({"path": "a.py"})).0, "read a.py");
        assert_eq!(
            call_text(ToolName::Search, &json!({"pattern": "fn main", "glob": "*.rs"})).0,
            "search \"fn main\" glob=\"*.rs\""
        );
    }
}
