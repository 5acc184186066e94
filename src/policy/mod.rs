//! The security policy: regex rules that screen code before it runs and redact secrets from
//! what comes out. Rules are data (`policy.toml`), validated when loaded.
//!
//! This is a screen on top of the container's isolation, never a replacement for it.

mod partial;
mod rules;

use std::path::{Path, PathBuf};

use regex::{Captures, Regex, RegexSet};

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
    languages: Vec<Language>,
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
    replacement: String,
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
        self.input
            .iter()
            .filter(|rule| rule.languages.contains(&language))
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

    /// Run the output rules over `text` from `stream`: redact what must be redacted, and
    /// report what only warns.
    pub fn filter_output(&self, text: &str, stream: &str) -> Filtered {
        let matched = self.output_set.matches(text);
        let mut filtered = Filtered { text: text.to_owned(), ..Filtered::default() };
        for index in matched.iter() {
            let rule = &self.output[index];
            match rule.action {
                OutputAction::Warn => {
                    if let Some(found) = rule.regex.find(&filtered.text) {
                        filtered.warnings.push(PolicyHit {
                            rule: rule.id.clone(),
                            action: Action::Warn,
                            reason: rule.reason.clone(),
                            source: stream.to_owned(),
                            line: line_of(&filtered.text, found.start()),
                        });
                    }
                }
                OutputAction::Redact => {
                    let mut count = 0;
                    let replaced = rule.regex.replace_all(&filtered.text, |caps: &Captures| {
                        count += 1;
                        rule.redact(caps)
                    });
                    if count > 0 {
                        filtered.text = replaced.into_owned();
                        filtered.redactions.push(Redaction { rule: rule.id.clone(), stream: stream.to_owned(), count });
                    }
                }
            }
        }
        filtered
    }

    /// Output that a limit cut in two: `kept` is what is returned, `beyond` what the program
    /// wrote right after. A secret that starts in `kept` and runs on into `beyond` no longer
    /// matches its rule in `kept` alone, so it is found across the cut and `kept` is replaced
    /// from its start. Then every rule runs over the result as usual.
    pub fn filter_cut_output(&self, kept: &str, beyond: &str, stream: &str) -> Filtered {
        let window_start = floor_char_boundary(kept, kept.len().saturating_sub(CUT_LOOKBEHIND_BYTES));
        let joined = format!("{}{beyond}", &kept[window_start..]);
        let cut = kept.len() - window_start;
        let straddling = self
            .output
            .iter()
            .filter(|rule| rule.action == OutputAction::Redact)
            .filter_map(|rule| {
                let found = rule.regex.find_iter(&joined).find(|m| m.end() > cut)?;
                (found.start() < cut).then_some((found.start(), rule))
            })
            .min_by_key(|(start, _)| *start);
        let Some((start, rule)) = straddling else {
            return self.filter_output(kept, stream);
        };
        let shortened = format!("{}{}", &kept[..window_start + start], rule.replacement);
        let mut filtered = self.filter_output(&shortened, stream);
        match filtered.redactions.iter_mut().find(|r| r.rule == rule.id) {
            Some(redaction) => redaction.count += 1,
            None => filtered.redactions.push(Redaction { rule: rule.id.clone(), stream: stream.to_owned(), count: 1 }),
        }
        filtered
    }

    /// How much of `text`, at most `wanted` bytes, can be redacted and released now without
    /// splitting a secret. The cut moves back to the start of anything more output could turn
    /// into a match (a secret whose first half has come, a private key whose END line has
    /// not), and of any match that runs across it, until no rule objects.
    pub fn release_point(&self, text: &str, wanted: usize) -> usize {
        let mut point = wanted.min(text.len());
        if point == 0 {
            return 0;
        }
        if let Some(open) = self.partial.open_start(text) {
            point = point.min(open);
        }
        loop {
            let before = point;
            for rule in self.output.iter().filter(|rule| rule.action == OutputAction::Redact) {
                if let Some(found) =
                    rule.regex.find_iter(text).take_while(|m| m.start() < point).find(|m| m.end() > point)
                {
                    point = found.start();
                }
            }
            if point == before || point == 0 {
                return point;
            }
        }
    }

    /// `text` with every secret replaced; for what is stored but not reported (code, env).
    pub fn redact(&self, text: &str) -> String {
        self.filter_output(text, "").text
    }
}

impl OutputRule {
    /// The replacement of one match: all of it, or only its `secret` group.
    fn redact(&self, caps: &Captures) -> String {
        let whole = caps.get(0).expect("group 0 always exists");
        match caps.name("secret") {
            Some(secret) => {
                let text = whole.as_str();
                let start = secret.start() - whole.start();
                let end = secret.end() - whole.start();
                format!("{}{}{}", &text[..start], self.replacement, &text[end..])
            }
            None => self.replacement.clone(),
        }
    }
}

/// How far before a cut a secret may start and still be found across it: longer than any
/// secret the rules describe (a 4096-bit PEM key is about 3.3 KB).
const CUT_LOOKBEHIND_BYTES: usize = 16 * 1024;

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
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

    #[test]
    fn secrets_are_redacted_and_counted() {
        let text = "key=sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA and AKIAIOSFODNN7EXAMPLE twice AKIAIOSFODNN7EXAMPLE";
        let filtered = builtin().filter_output(text, "stdout");
        assert_eq!(
            filtered.text,
            "key=[REDACTED:anthropic_api_key] and [REDACTED:aws_access_key_id] twice [REDACTED:aws_access_key_id]"
        );
        let counts: Vec<_> =
            filtered.redactions.iter().map(|r| (r.rule.as_str(), r.count, r.stream.as_str())).collect();
        assert_eq!(counts, vec![("anthropic_api_key", 1, "stdout"), ("aws_access_key_id", 2, "stdout")]);
    }

    #[test]
    fn a_secret_group_keeps_the_rest_of_the_match() {
        let filtered =
            builtin().filter_output("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "stderr");
        assert_eq!(filtered.text, "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]\n");
    }

    #[test]
    fn a_private_key_spanning_lines_is_redacted_whole() {
        let pem = "before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA\n-----END OPENSSH PRIVATE KEY-----\nafter";
        assert_eq!(builtin().redact(pem), "before\n[REDACTED:private_key]\nafter");
    }

    #[test]
    fn a_secret_cut_by_the_output_limit_is_redacted_from_its_start() {
        let policy = builtin();
        let kept = "result: 42\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiC";
        let filtered = policy.filter_cut_output(kept, "YEXAMPLEKEY\nmore", "stdout");
        assert_eq!(filtered.text, "result: 42\n[REDACTED:aws_secret_access_key]");
        assert_eq!(filtered.redactions[0].count, 1);
    }

    #[test]
    fn a_private_key_whose_end_was_never_seen_is_redacted_to_the_end() {
        let kept = "ok\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQ";
        let filtered = builtin().filter_cut_output(kept, "EFAASCBKcwggSjAgEAAoIBAQ", "stdout");
        assert_eq!(filtered.text, "ok\n[REDACTED:private_key]");
    }

    #[test]
    fn a_cut_through_plain_text_changes_nothing() {
        let filtered = builtin().filter_cut_output("héllo wor", "ld", "stdout");
        assert_eq!(filtered.text, "héllo wor");
        assert!(filtered.redactions.is_empty());
    }

    #[test]
    fn the_release_point_never_splits_a_secret_or_releases_one_that_may_go_on() {
        let policy = builtin();
        let token = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let line = format!("ok\nkey={token}\nmore");
        assert_eq!(policy.release_point(&line, line.len()), line.len(), "a complete secret may be released");
        let inside = line.find(token).unwrap() + 5;
        assert_eq!(policy.release_point(&line, inside), line.find(token).unwrap(), "a cut inside moves back");
        let open = "a\n-----BEGIN PRIVATE KEY-----\nMIIEvQ\n";
        assert_eq!(policy.release_point(open, open.len()), 2, "a key without its END line is held");
        let at_end = format!("x {token}");
        assert_eq!(policy.release_point(&at_end, at_end.len()), 2, "a secret at the very end may go on");
        assert_eq!(policy.release_point("plain", 99), 5);
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        let filtered = builtin().filter_output("hello, world\n", "stdout");
        assert_eq!(filtered.text, "hello, world\n");
        assert!(filtered.redactions.is_empty() && filtered.warnings.is_empty());
    }

    #[test]
    fn output_warn_rules_report_without_changing_the_text() {
        let policy = Policy::parse(
            "[[output]]\nid = \"password\"\naction = \"warn\"\nreason = \"a password\"\npattern = 'password=\\S+'\n",
            "test",
        )
        .unwrap();
        let filtered = policy.filter_output("a\npassword=hunter2", "stdout");
        assert_eq!(filtered.text, "a\npassword=hunter2");
        assert_eq!(filtered.warnings.len(), 1);
        assert_eq!((filtered.warnings[0].rule.as_str(), filtered.warnings[0].line), ("password", 2));
    }
}
