//! The security policy: regex rules that screen code before it runs and redact secrets from
//! what comes out. Rules are data (`policy.toml`), validated when loaded.
//!
//! This is a screen on top of the container's isolation, never a replacement for it.

mod output;
mod partial;
mod rules;
mod view;

use std::path::{Path, PathBuf};

use regex::{Regex, RegexSet};

use rules::{OutputAction, PolicyFile};
use tracebox_model::Language;

/// The default policy, compiled in so a bare binary is protected.
const BUILTIN: &str = include_str!("../../policy.toml");

pub use tracebox_model::{Action, PolicyHit, Redaction};

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    origin: String,
    input: Vec<InputRule>,
    output: Vec<OutputRule>,
    output_set: RegexSet,
    /// The redaction rules, for finding a match that has only begun.
    partial: partial::PartialMatcher,
}

#[derive(Debug)]
struct InputRule {
    id: String,
    languages: Vec<Screened>,
    regex: Regex,
    action: Action,
    reason: String,
}

#[derive(Debug)]
struct OutputRule {
    id: String,
    regex: Regex,
    action: OutputAction,
    reason: String,
    /// What a match becomes in text: `[REDACTED:<id>]`.
    replacement: String,
    /// What a match becomes in a file name: `REDACTED-<id>`.
    name_replacement: String,
    /// The pattern has a `secret` group: only that part of a match is replaced.
    secret_group: bool,
}

/// Text after the output rules ran over it.
#[derive(Debug, Default)]
pub struct Filtered {
    pub text: String,
    pub redactions: Vec<Redaction>,
    pub warnings: Vec<PolicyHit>,
}

/// A policy file that cannot be used, naming the rule and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("policy {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("policy {origin}, rule `{rule}`: {message}")]
    Rule { origin: String, rule: String, message: String },
}

impl Policy {
    /// The policy shipped with tracebox (`policy.toml`).
    pub fn builtin() -> Result<Policy, PolicyError> {
        Policy::parse(BUILTIN, "built-in policy.toml")
    }

    /// The policy in `path`, or the built-in one when there is none.
    pub fn load(path: Option<&Path>) -> Result<Policy, PolicyError> {
        let Some(path) = path else {
            return Policy::builtin();
        };
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parse and validate a policy; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| PolicyError::Syntax { origin: origin.to_owned(), message: e.to_string() })?;
        file.compile(origin)
    }

    /// Where this policy came from, for logs and `/health`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many input and output rules the policy has, for `/health`.
    pub fn rule_counts(&self) -> (usize, usize) {
        (self.input.len(), self.output.len())
    }

    /// Every input rule for `language` that matches `code` (each rule once, at its first match).
    pub fn check_input(&self, language: Language, code: &str) -> Vec<PolicyHit> {
        self.check(Screened::Code(language), code)
    }

    /// The input rules of `shell` a sandbox's command (`bash -c`) matches.
    pub fn check_command(&self, command: &str) -> Vec<PolicyHit> {
        self.check(Screened::Shell, command)
    }

    fn check(&self, screened: Screened, code: &str) -> Vec<PolicyHit> {
        self.input
            .iter()
            .filter(|rule| rule.languages.contains(&screened))
            .filter_map(|rule| {
                let found = rule.regex.find(code)?;
                Some(PolicyHit {
                    rule: rule.id.clone(),
                    action: rule.action,
                    reason: rule.reason.clone(),
                    source: "code".to_owned(),
                    line: line_of(code, found.start()),
                })
            })
            .collect()
    }
}

/// What an input rule screens: a program of a language, or a sandbox's shell command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screened {
    Code(Language),
    Shell,
}

impl Screened {
    /// A rule's `languages` entry: a language's name, or `shell`.
    fn parse(name: &str) -> Result<Screened, String> {
        if name == "shell" {
            return Ok(Screened::Shell);
        }
        name.parse().map(Screened::Code).map_err(|e: tracebox_model::UnknownLanguage| format!("{e}, or shell"))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Policy {
        Policy::builtin().expect("the built-in policy is valid")
    }

    #[test]
    fn the_builtin_policy_loads_with_rules_for_both_languages() {
        let policy = builtin();
        let (input, output) = policy.rule_counts();
        assert!(input >= 6 && output >= 8, "{input} input, {output} output rules");
        assert!(
            policy.check_input(Language::Node, "require('child_process')").iter().any(|h| h.action == Action::Block)
        );
    }

    #[test]
    fn blocking_rules_name_themselves_and_the_line() {
        let hits = builtin().check_input(Language::Python, "print(1)\nimport subprocess\n");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].rule, "python.subprocess");
        assert_eq!(hits[0].action, Action::Block);
        assert_eq!(hits[0].line, 2);
        assert!(hits[0].reason.contains("subprocess"));
    }

    #[test]
    fn rules_apply_only_to_their_languages() {
        let policy = builtin();
        assert!(policy.check_input(Language::Node, "import subprocess").is_empty());
        assert!(policy.check_input(Language::Python, "const cp = 'child_process'").is_empty());
    }

    #[test]
    fn a_warning_rule_does_not_block() {
        let hits = builtin().check_input(Language::Python, "import socket");
        assert_eq!(hits.iter().map(|h| h.action).collect::<Vec<_>>(), vec![Action::Warn]);
    }
}
