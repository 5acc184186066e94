//! The policy file format and its validation: every rule compiled, named and self-tested
//! against its own examples before the policy may be used.

use std::collections::HashSet;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use tracebox_model::{Action, Language};

use super::view::View;
use super::{InputRule, OutputRule, Policy, PolicyError, Screened};

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
    action: Action,
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

/// What an output rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum OutputAction {
    Redact,
    Warn,
}

impl PolicyFile {
    pub(super) fn compile(self, origin: &str) -> Result<Policy, PolicyError> {
        let rule_error = |rule: &str, message: String| PolicyError::Rule {
            origin: origin.to_owned(),
            rule: rule.to_owned(),
            message,
        };
        let mut ids = HashSet::new();
        for id in self.input.iter().map(|r| &r.id).chain(self.output.iter().map(|r| &r.id)) {
            check_id(id, &mut ids).map_err(|message| rule_error(id, message))?;
        }
        let input = self
            .input
            .into_iter()
            .map(|spec| {
                let id = spec.id.clone();
                spec.compile().map_err(|message| rule_error(&id, message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .output
            .into_iter()
            .map(|spec| {
                let id = spec.id.clone();
                spec.compile().map_err(|message| rule_error(&id, message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output_set = RegexSet::new(output.iter().map(|rule| rule.regex.as_str()))
            .map_err(|e| rule_error("(all output rules)", e.to_string()))?;
        let redacting = output.iter().filter(|rule| rule.action == OutputAction::Redact);
        let partial = super::partial::PartialMatcher::new(redacting.map(|rule| rule.regex.as_str()))
            .map_err(|e| rule_error("(output rules)", e))?;
        Ok(Policy { origin: origin.to_owned(), input, output, output_set, partial })
    }
}

/// Ids are unique and plain, so hits and redaction markers can name them.
fn check_id(id: &str, seen: &mut HashSet<String>) -> Result<(), String> {
    let well_formed =
        !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !well_formed {
        return Err("ids use lowercase letters, digits, '.', '_' and '-'".into());
    }
    if !seen.insert(id.to_owned()) {
        return Err("this id is used by another rule".into());
    }
    Ok(())
}

impl InputRuleSpec {
    fn compile(self) -> Result<InputRule, String> {
        let regex = compile_checked(&self.id, &self.pattern, &self.examples, &self.counter_examples, Regex::is_match)?;
        let languages = if self.languages.is_empty() {
            Language::ALL.into_iter().map(Screened::Code).chain([Screened::Shell]).collect()
        } else {
            self.languages.iter().map(|name| Screened::parse(name)).collect::<Result<_, _>>()?
        };
        if self.reason.trim().is_empty() {
            return Err("`reason` is empty; say why the code is refused".into());
        }
        Ok(InputRule { id: self.id, languages, regex, action: self.action, reason: self.reason })
    }
}

impl OutputRuleSpec {
    fn compile(self) -> Result<OutputRule, String> {
        // Output is matched as written and as a reader sees it, and so are the examples.
        let sees = |regex: &Regex, text: &str| {
            regex.is_match(text) || View::of(text).is_some_and(|view| regex.is_match(view.text()))
        };
        let regex = compile_checked(&self.id, &self.pattern, &self.examples, &self.counter_examples, sees)?;
        Ok(OutputRule {
            replacement: format!("[REDACTED:{}]", self.id),
            name_replacement: format!("REDACTED-{}", self.id),
            secret_group: regex.capture_names().any(|name| name == Some("secret")),
            id: self.id,
            regex,
            action: self.action,
            reason: self.reason,
        })
    }
}

/// Compile `pattern` and prove it against the rule's own examples, as the rule `sees` text.
fn compile_checked(
    id: &str,
    pattern: &str,
    examples: &[String],
    counter_examples: &[String],
    sees: impl Fn(&Regex, &str) -> bool,
) -> Result<Regex, String> {
    let regex = Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
    if regex.is_match("") {
        return Err(format!("pattern of `{id}` matches the empty string, so it would match everything"));
    }
    if let Some(example) = examples.iter().find(|e| !sees(&regex, e)) {
        return Err(format!("pattern does not match its example {example:?}"));
    }
    if let Some(counter) = counter_examples.iter().find(|e| sees(&regex, e)) {
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

    #[test]
    fn output_examples_are_matched_as_a_reader_sees_them() {
        let rule = "[[output]]\nid = \"key\"\naction = \"redact\"\nreason = \"r\"\npattern = 'key-[0-9]+'\n";
        let hidden = format!("{rule}examples = [\"key-1\\u200b2\", \"key-\\u001b[31m3\"]\n");
        assert!(Policy::parse(&hidden, "test.toml").is_ok(), "a key split by something hidden is an example");
        let error = error_of(&format!("{rule}counter_examples = [\"key\\u00ad-4\"]\n"));
        assert!(error.contains("counter-example"), "{error}");
    }
}
