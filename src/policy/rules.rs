//! The policy file format and its validation: every rule compiled, named and self-tested
//! against its own examples before the policy may be used.

use std::collections::HashSet;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::{InputRule, OutputRule, Policy, PolicyError};
use crate::execution::Language;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default)]
    input: Vec<InputRuleSpec>,
    #[serde(default)]
    output: Vec<OutputRuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputRuleSpec {
    id: String,
    /// Empty: every language.
    #[serde(default)]
    languages: Vec<String>,
    pattern: String,
    action: InputAction,
    reason: String,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    counter_examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputRuleSpec {
    id: String,
    pattern: String,
    action: OutputAction,
    reason: String,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    counter_examples: Vec<String>,
}

/// What an input rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputAction {
    /// Refuse the run.
    Block,
    /// Run it and record the hit.
    Warn,
}

/// What an output rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum OutputAction {
    Redact,
    Warn,
}

impl PolicyFile {
    pub(super) fn compile(self, origin: &str) -> Result<Policy, PolicyError> {
        let mut ids = HashSet::new();
        let rule_error = |rule: &str, message: String| PolicyError::Rule {
            origin: origin.to_owned(),
            rule: rule.to_owned(),
            message,
        };
        let mut check_id = |id: &str| {
            let well_formed =
                !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            if !well_formed {
                return Err(rule_error(id, "ids use lowercase letters, digits, '.', '_' and '-'".into()));
            }
            if !ids.insert(id.to_owned()) {
                return Err(rule_error(id, "this id is used by another rule".into()));
            }
            Ok(())
        };

        let mut input = Vec::with_capacity(self.input.len());
        for spec in self.input {
            check_id(&spec.id)?;
            let regex = compile_checked(&spec.id, &spec.pattern, &spec.examples, &spec.counter_examples)
                .map_err(|message| rule_error(&spec.id, message))?;
            let languages = if spec.languages.is_empty() {
                Language::ALL.to_vec()
            } else {
                spec.languages
                    .iter()
                    .map(|name| name.parse::<Language>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| rule_error(&spec.id, e.to_string()))?
            };
            if spec.reason.trim().is_empty() {
                return Err(rule_error(&spec.id, "`reason` is empty; say why the code is refused".into()));
            }
            input.push(InputRule { id: spec.id, languages, regex, action: spec.action, reason: spec.reason });
        }

        let mut output = Vec::with_capacity(self.output.len());
        for spec in self.output {
            check_id(&spec.id)?;
            let regex = compile_checked(&spec.id, &spec.pattern, &spec.examples, &spec.counter_examples)
                .map_err(|message| rule_error(&spec.id, message))?;
            output.push(OutputRule {
                replacement: format!("[REDACTED:{}]", spec.id),
                id: spec.id,
                regex,
                action: spec.action,
                reason: spec.reason,
            });
        }

        let output_set = RegexSet::new(output.iter().map(|rule| rule.regex.as_str()))
            .map_err(|e| rule_error("(all output rules)", e.to_string()))?;
        Ok(Policy { origin: origin.to_owned(), input, output, output_set })
    }
}

/// Compile `pattern` and prove it against the rule's own examples.
fn compile_checked(id: &str, pattern: &str, examples: &[String], counter_examples: &[String]) -> Result<Regex, String> {
    let regex = Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
    if regex.is_match("") {
        return Err(format!("pattern of `{id}` matches the empty string, so it would match everything"));
    }
    if let Some(example) = examples.iter().find(|e| !regex.is_match(e)) {
        return Err(format!("pattern does not match its example {example:?}"));
    }
    if let Some(counter) = counter_examples.iter().find(|e| regex.is_match(e)) {
        return Err(format!("pattern matches its counter-example {counter:?}"));
    }
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::super::Policy;

    fn error_of(text: &str) -> String {
        Policy::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_bad_regex_names_its_rule() {
        let error = error_of("[[input]]\nid = \"broken\"\naction = \"block\"\nreason = \"r\"\npattern = '(unclosed'\n");
        assert!(error.contains("rule `broken`") && error.contains("invalid pattern"), "{error}");
    }

    #[test]
    fn an_unknown_action_is_refused() {
        let error = error_of("[[input]]\nid = \"x\"\naction = \"explode\"\nreason = \"r\"\npattern = 'x'\n");
        assert!(error.contains("explode"), "{error}");
    }

    #[test]
    fn an_unknown_language_names_its_rule() {
        let error = error_of(
            "[[input]]\nid = \"x\"\nlanguages = [\"cobol\"]\naction = \"warn\"\nreason = \"r\"\npattern = 'x'\n",
        );
        assert!(error.contains("rule `x`") && error.contains("cobol"), "{error}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let rule = "[[output]]\nid = \"same\"\naction = \"redact\"\nreason = \"r\"\npattern = 'x'\n";
        let error = error_of(&format!("{rule}{rule}"));
        assert!(error.contains("rule `same`") && error.contains("another rule"), "{error}");
    }

    #[test]
    fn a_rule_that_misses_its_example_is_refused() {
        let error = error_of(
            "[[output]]\nid = \"key\"\naction = \"redact\"\nreason = \"r\"\npattern = 'key-[0-9]+'\nexamples = [\"key-abc\"]\n",
        );
        assert!(error.contains("rule `key`") && error.contains("key-abc"), "{error}");
    }

    #[test]
    fn a_rule_matching_everything_is_refused() {
        let error = error_of("[[output]]\nid = \"all\"\naction = \"redact\"\nreason = \"r\"\npattern = '.*'\n");
        assert!(error.contains("empty string"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = error_of("[[input]]\nid = \"x\"\naction = \"warn\"\nreason = \"r\"\npattern = 'x'\nseverity = 3\n");
        assert!(error.contains("severity"), "{error}");
    }

    #[test]
    fn an_empty_policy_is_allowed() {
        let policy = Policy::parse("", "empty.toml").unwrap();
        assert_eq!(policy.rule_counts(), (0, 0));
        assert_eq!(
            policy.redact("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
    }
}
