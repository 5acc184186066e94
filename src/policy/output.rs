//! The output rules at work: redacting text (output, what traces keep) or a file name a
//! program chose, in what was written and in what a reader sees of it (see [`View`]); across
//! a cut; and how much of a stream can be released without splitting a secret.
//!
//! A match in either counts: the view finds a key with a zero-width space or a colour change
//! inside, and the text as written still finds one that the view would read differently (a key
//! right after a lone `ESC [`, whose first letter the view takes for the end of a sequence).

use std::ops::Range;

use super::view::View;
use super::{Action, Filtered, OutputAction, OutputRule, Policy, PolicyHit, Redaction, line_of};

/// How far before a cut a secret may start and still be found across it: longer than any
/// secret the rules describe (a 4096-bit PEM key is about 3.3 KB).
const CUT_LOOKBEHIND_BYTES: usize = 16 * 1024;

/// How a redaction is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    /// `[REDACTED:<rule>]`: in output and in what traces keep.
    Text,
    /// `REDACTED-<rule>`: in a file name, which is still a valid one (no brackets or colon,
    /// which not every system takes in a name).
    Name,
}

impl Policy {
    /// Run the output rules over `text` from `stream`: redact what must be redacted, and
    /// report what only warns.
    pub fn filter_output(&self, text: &str, stream: &str) -> Filtered {
        self.filter(text, stream, Marker::Text)
    }

    /// `text` with every secret replaced; for what is stored but not reported (code, env).
    pub fn redact(&self, text: &str) -> String {
        self.filter(text, "", Marker::Text).text
    }

    /// A path a program chose (an artifact's `out/…`), with every secret replaced by
    /// `REDACTED-<rule>`, counted under `stream`. The result needs the same checks as any name:
    /// a secret may have spanned a `/`.
    pub fn redact_name(&self, name: &str, stream: &str) -> Filtered {
        self.filter(name, stream, Marker::Name)
    }

    /// Output that a limit cut in two: `kept` is what is returned, `beyond` what the program
    /// wrote right after. A secret that starts in `kept` and runs on into `beyond` no longer
    /// matches its rule in `kept` alone, so it is found across the cut and `kept` is replaced
    /// from its start. Then every rule runs over the result as usual.
    pub fn filter_cut_output(&self, kept: &str, beyond: &str, stream: &str) -> Filtered {
        let window_start = floor_char_boundary(kept, kept.len().saturating_sub(CUT_LOOKBEHIND_BYTES));
        let joined = format!("{}{beyond}", &kept[window_start..]);
        let cut = kept.len() - window_start;
        let view = View::of(&joined);
        let straddling = self
            .redacting()
            .filter_map(|rule| {
                let found = rule.matches(&joined, view.as_ref());
                let start = found.into_iter().filter(|m| m.start < cut && m.end > cut).map(|m| m.start).min()?;
                Some((start, rule))
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
    /// not), and of any match that runs across it, in the text and in its view, until no rule
    /// objects. It never cuts through an escape sequence, nor releases one not yet ended: what
    /// is hidden in a piece released is what is hidden in the whole.
    pub fn release_point(&self, text: &str, wanted: usize) -> usize {
        let view = View::of(text);
        if let Some(unfinished) = view.as_ref().and_then(View::unfinished) {
            // What is held stays held; the text as good as ends where the sequence starts (it
            // will be hidden), which is what may complete a match or not.
            return self.release_point(&text[..unfinished], wanted.min(unfinished));
        }
        let mut point = wanted.min(text.len());
        if let Some(view) = &view {
            point = view.cut_before(point);
        }
        if let Some(open) = self.partial.open_start(text) {
            point = point.min(open);
        }
        if let Some(view) = &view
            && let Some(open) = self.partial.open_start(view.text())
        {
            point = point.min(view.start_in_original(open));
        }
        loop {
            if point == 0 {
                return 0;
            }
            let before = point;
            point = self.before_matches(text, point);
            if let Some(view) = &view {
                let at = view.view_offset(point);
                let held = self.before_matches(view.text(), at);
                if held < at {
                    point = point.min(view.start_in_original(held));
                }
            }
            if point == before {
                return point;
            }
        }
    }

    /// `point`, moved back to the start of any match of a redaction rule in `text` that runs
    /// across it.
    fn before_matches(&self, text: &str, mut point: usize) -> usize {
        for rule in self.redacting() {
            let across = rule.regex.find_iter(text).take_while(|m| m.start() < point).find(|m| m.end() > point);
            if let Some(found) = across {
                point = found.start();
            }
        }
        point
    }

    fn redacting(&self) -> impl Iterator<Item = &OutputRule> {
        self.output.iter().filter(|rule| rule.action == OutputAction::Redact)
    }

    /// Every output rule over `text`, in file order, each over what the ones before it left.
    fn filter(&self, text: &str, stream: &str, marker: Marker) -> Filtered {
        let mut view = View::of(text);
        let matched = self.output_set.matches(text);
        let seen = view.as_ref().map(|view| self.output_set.matches(view.text()));
        let mut filtered = Filtered { text: text.to_owned(), ..Filtered::default() };
        for (index, rule) in self.output.iter().enumerate() {
            if !matched.matched(index) && !seen.as_ref().is_some_and(|seen| seen.matched(index)) {
                continue;
            }
            match rule.action {
                OutputAction::Warn => {
                    if let Some(found) = rule.matches(&filtered.text, view.as_ref()).first() {
                        filtered.warnings.push(PolicyHit {
                            rule: rule.id.clone(),
                            action: Action::Warn,
                            reason: rule.reason.clone(),
                            source: stream.to_owned(),
                            line: line_of(&filtered.text, found.start),
                        });
                    }
                }
                OutputAction::Redact => {
                    let ranges = rule.secrets(&filtered.text, view.as_ref());
                    if ranges.is_empty() {
                        continue;
                    }
                    filtered.text = replaced(&filtered.text, &ranges, rule.marker(marker));
                    if view.is_some() {
                        view = View::of(&filtered.text);
                    }
                    let count = ranges.len();
                    filtered.redactions.push(Redaction { rule: rule.id.clone(), stream: stream.to_owned(), count });
                }
            }
        }
        filtered
    }
}

impl OutputRule {
    fn marker(&self, marker: Marker) -> &str {
        match marker {
            Marker::Text => &self.replacement,
            Marker::Name => &self.name_replacement,
        }
    }

    /// Where this rule matches `text`, and (mapped back) its view, in order of start.
    fn matches(&self, text: &str, view: Option<&View>) -> Vec<Range<usize>> {
        let mut found: Vec<Range<usize>> = self.regex.find_iter(text).map(|m| m.range()).collect();
        if let Some(view) = view {
            found.extend(self.regex.find_iter(view.text()).map(|m| view.original_range(m.range())));
            found.sort_by_key(|range| range.start);
        }
        found
    }

    /// What this rule replaces in `text`: each match's `secret` group (or all of it), found in
    /// the text or its view, those that overlap merged into one.
    fn secrets(&self, text: &str, view: Option<&View>) -> Vec<Range<usize>> {
        let mut ranges = self.secrets_in(text);
        if let Some(view) = view {
            ranges.extend(self.secrets_in(view.text()).into_iter().map(|range| view.original_range(range)));
            merge(&mut ranges);
        }
        ranges
    }

    fn secrets_in(&self, text: &str) -> Vec<Range<usize>> {
        if !self.secret_group {
            return self.regex.find_iter(text).map(|m| m.range()).collect();
        }
        let secret = |caps: regex::Captures<'_>| caps.name("secret").or_else(|| caps.get(0)).map(|m| m.range());
        self.regex.captures_iter(text).filter_map(secret).collect()
    }
}

/// Sort `ranges` and join those that overlap (touching ones stay apart: two keys side by side
/// are two redactions).
fn merge(ranges: &mut Vec<Range<usize>>) {
    ranges.sort_by_key(|range| (range.start, range.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if range.start < last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    *ranges = merged;
}

/// `text` with each of `ranges` (in order, apart) replaced by `with`.
fn replaced(text: &str, ranges: &[Range<usize>], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for range in ranges {
        out.push_str(&text[from..range.start]);
        out.push_str(with);
        from = range.end;
    }
    out.push_str(&text[from..]);
    out
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Policy {
        Policy::builtin().expect("the built-in policy is valid")
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
        let line = format!("ok\nkey={token}\nmore.");
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
    fn a_last_letter_that_may_begin_a_key_waits_for_what_follows() {
        // Keys are matched wherever they start, so `Loadin` + `g` + `hp_…` is a GitHub token
        // and the `g` must not go out alone.
        let policy = builtin();
        assert_eq!(policy.release_point("Loading", 7), 6);
        assert_eq!(policy.release_point("Loading…", 99), "Loading…".len());
        let released = streamed(&policy, &["Loading", "hp_abcdefghijklmnopqrstuvwxyz0123456789\n"]);
        assert_eq!(released.concat(), "Loadin[REDACTED:github_token]\n");
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

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_MARK: &str = "[REDACTED:aws_access_key_id]";

    /// `AWS` with `hidden` after its fourth character.
    fn aws_with(hidden: &str) -> String {
        format!("{}{hidden}{}", &AWS[..4], &AWS[4..])
    }

    #[test]
    fn a_key_split_by_a_format_character_is_redacted_whole() {
        let policy = builtin();
        for (name, hidden) in [
            ("zero-width space", "\u{200b}"),
            ("zero-width joiner", "\u{200d}"),
            ("zero-width non-joiner", "\u{200c}"),
            ("byte order mark", "\u{feff}"),
            ("soft hyphen", "\u{ad}"),
            ("word joiner", "\u{2060}"),
            ("right-to-left override", "\u{202e}"),
            ("several", "\u{200b}\u{200b}\u{feff}"),
            ("NUL", "\0"),
            ("BEL", "\x07"),
        ] {
            let filtered = policy.filter_output(&format!("id={}\n", aws_with(hidden)), "stdout");
            assert_eq!(filtered.text, format!("id={AWS_MARK}\n"), "{name}");
            assert_eq!(filtered.redactions[0].count, 1, "{name}");
        }
        let spread: String = AWS.chars().flat_map(|c| [c, '\u{200b}']).collect();
        assert_eq!(policy.redact(&spread), format!("{AWS_MARK}\u{200b}"), "what is hidden after the key stays");
    }

    #[test]
    fn a_key_split_by_an_ansi_sequence_is_redacted_whole_and_the_colours_around_it_kept() {
        let policy = builtin();
        for (name, hidden) in [
            ("colour", "\x1b[31m"),
            ("reset", "\x1b[0m"),
            ("256 colours", "\x1b[38;5;196m"),
            ("erase line", "\x1b[2K"),
            ("private mode", "\x1b[?25l"),
            ("title (OSC, BEL)", "\x1b]0;title\x07"),
            ("link (OSC, ST)", "\x1b]8;;https://x.test/\x1b\\"),
            ("lone ESC", "\x1b"),
        ] {
            let text = format!("\x1b[1m{}\x1b[0m\n", aws_with(hidden));
            assert_eq!(policy.redact(&text), format!("\x1b[1m{AWS_MARK}\x1b[0m\n"), "{name}");
        }
    }

    #[test]
    fn a_key_the_view_would_read_differently_is_still_found_as_written() {
        // `ESC [` then the key: the view takes its `A` for the end of a sequence.
        let policy = builtin();
        assert_eq!(policy.redact(&format!("\x1b[{AWS}\n")), format!("\x1b[{AWS_MARK}\n"));
        let token = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let split = format!("{}\u{200b}BBBBBB", token);
        assert_eq!(policy.redact(&split), "[REDACTED:anthropic_api_key]", "the view's longer match wins");
    }

    #[test]
    fn hidden_characters_around_other_rules_are_handled_alike() {
        let policy = builtin();
        let secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\u{200b}/bPxRfiCYEXAMPLEKEY\n";
        assert_eq!(policy.redact(secret), "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]\n");
        let pem = "-----BEGIN \x1b[31mRSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nafter";
        assert_eq!(policy.redact(pem), "[REDACTED:private_key]\nafter");
        let warn =
            Policy::parse("[[output]]\nid = \"pw\"\naction = \"warn\"\nreason = \"r\"\npattern = 'password='\n", "t")
                .unwrap();
        let filtered = warn.filter_output("a\npass\u{200b}word=x", "stdout");
        assert_eq!((filtered.warnings.len(), filtered.warnings[0].line), (1, 2));
        assert_eq!(filtered.text, "a\npass\u{200b}word=x");
    }

    #[test]
    fn a_hidden_key_cut_by_the_output_limit_is_redacted_from_its_start() {
        let kept = format!("ok\n{}", &aws_with("\x1b[31m")[..12]);
        let filtered = builtin().filter_cut_output(&kept, "FODNN7EXAMPLE\n", "stdout");
        assert_eq!(filtered.text, format!("ok\n{AWS_MARK}"));
        let kept = format!("ok\n{}", &aws_with("\u{200b}")[..9]);
        assert_eq!(builtin().filter_cut_output(&kept, "SFODNN7EXAMPLE", "stdout").text, format!("ok\n{AWS_MARK}"));
    }

    /// `chunks` released as a screen does after each one, as if the program went quiet there
    /// (the most it may release), then the rest at the end: the texts released.
    fn streamed(policy: &Policy, chunks: &[&str]) -> Vec<String> {
        let mut held = String::new();
        let mut released = Vec::new();
        for chunk in chunks {
            held.push_str(chunk);
            let point = policy.release_point(&held, held.len());
            let rest = held.split_off(point);
            released.push(policy.filter_output(&held, "stdout").text);
            held = rest;
        }
        released.push(policy.filter_output(&held, "stdout").text);
        released
    }

    #[test]
    fn a_stream_never_releases_part_of_a_key_that_only_its_view_shows() {
        let policy = builtin();
        let released = streamed(&policy, &["key: AKIA\u{200b}", "IOSF", "ODNN7EX\u{feff}", "AMPLE", "\nnext\n"]);
        assert_eq!(released[0], "key: ", "only what cannot become a key");
        assert_eq!(released.concat(), format!("key: {AWS_MARK}\nnext\n"));
        let released = streamed(&policy, &[r#""x\"#, "nAK", "IAIOSF", "ODNN7EXAMPLE\"\n"]);
        assert_eq!(released.concat(), format!(r#""x\n{AWS_MARK}""#) + "\n", "{released:?}");
        let alone = released.iter().any(|piece| piece.replace(AWS_MARK, "").contains('A'));
        assert!(!alone, "no letter of the key goes alone: {released:?}");
        let released = streamed(&policy, &["AKIA\x1b[3", "1mIOSFODNN7", "EXAMPLE\x1b[0", "m\n"]);
        assert_eq!(released.concat(), format!("{AWS_MARK}\x1b[0m\n"));
        for piece in &released {
            assert!(!piece.contains("AKIA"), "{released:?}");
        }
    }

    #[test]
    fn a_stream_never_releases_an_escape_sequence_in_part() {
        let policy = builtin();
        assert_eq!(policy.release_point("ok \x1b[3", 99), 3);
        assert_eq!(policy.release_point("ok \x1b]0;ti", 99), 3);
        assert_eq!(policy.release_point("ok \x1b[31m", 99), 8, "a whole sequence goes");
        assert_eq!(policy.release_point("ok \x1b[31mx", 5), 3, "a cut inside one moves before it");
        let released = streamed(&policy, &["a \x1b[3", "1m", "b\n"]);
        assert_eq!(released, ["a ", "\x1b[31m", "b\n", ""]);
    }

    #[test]
    fn text_with_nothing_hidden_and_no_secret_comes_back_as_it_was() {
        let policy = builtin();
        for text in ["plain\n", "emoji \u{1f980} and naïve\n", "\x1b[1mbold\x1b[0m\n", "zw\u{200b}sp\n"] {
            let filtered = policy.filter_output(text, "stdout");
            assert_eq!(filtered.text, text);
            assert!(filtered.redactions.is_empty());
            assert_eq!(policy.release_point(text, text.len()), text.len(), "{text:?}");
        }
    }

    /// One key of each rule that has a prefix of its own, and its rule.
    const KEYS: &[(&str, &str)] = &[
        ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("anthropic_api_key", "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("openai_api_key", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"),
        ("openai_api_key", "sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst"),
        ("github_token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"),
        ("slack_token", "xoxb-123456789012-abcdefghijkl"),
        ("google_api_key", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
        ("stripe_secret_key", "sk_live_abcdefghijklmnopqrstuvwx1234"),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ];

    #[test]
    fn a_key_after_an_escape_or_a_separator_is_redacted() {
        // (what it is, what is printed before the key, what after)
        let cases = [
            ("json.dumps(\"x\\n\" + key)", r#""x\n"#, r#"""#),
            ("repr(\"\\t\" + key)", r"'\t", "'"),
            ("escaped carriage return", r"\r", ""),
            ("escaped backslash (a Windows path in JSON)", r"C:\\keys\\", r"\\"),
            ("escaped quote (JSON in JSON)", r#"{\"key\": \""#, r#"\"}"#),
            ("percent-encoded = (upper case)", "token%3D", "&x=1"),
            ("percent-encoded = (lower case)", "token%3d", ""),
            ("percent-encoded newline", "%0A", "%0A"),
            ("underscore", "Bearer_", "_backup"),
            ("escaped newline after key=", r"key=\n", r"\n"),
            ("unicode escape", r"\u00e9", r"\u00e9"),
            ("hex escape", r"\x1b", r"\x07"),
            ("single quotes", "'", "'"),
            ("double quotes", "\"", "\""),
            ("backticks", "`", "`"),
            ("a digit", "v2", ""),
            ("HTML entity", "&#10;", "&#10;"),
        ];
        let policy = builtin();
        for (rule, key) in KEYS {
            for (what, before, after) in cases {
                let text = format!("{before}{key}{after}\n");
                let redacted = policy.redact(&text);
                assert!(!redacted.contains(key), "{what}: {rule} not redacted in {text:?}: {redacted:?}");
                assert!(redacted.starts_with(before), "{what}: {redacted:?}");
                assert!(redacted.contains(&format!("[REDACTED:{rule}]")), "{what}: {redacted:?}");
            }
        }
    }

    #[test]
    fn a_fixed_length_key_ends_where_its_alphabet_does() {
        let policy = builtin();
        assert_eq!(policy.redact(&format!("{AWS}_backup")), format!("{AWS_MARK}_backup"));
        assert_eq!(policy.redact(&format!("{AWS}abc")), format!("{AWS_MARK}abc"));
        assert_eq!(policy.redact(&format!(r"{AWS}\n")), format!(r"{AWS_MARK}\n"));
        let longer = format!("{AWS}X9");
        assert_eq!(policy.redact(&longer), longer, "a longer run of capitals is not a key");
        let two = format!("{AWS},{AWS}");
        assert_eq!(policy.redact(&two), format!("{AWS_MARK},{AWS_MARK}"));
    }

    #[test]
    fn an_aws_secret_is_found_whatever_stands_between_its_name_and_its_value() {
        let policy = builtin();
        let value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for between in ["=", " = ", ": ", r#"": ""#, r#"\": \""#, r"=\n", r"=\t", "%3D", "%3a%20", "=\n  "] {
            let text = format!("aws_secret_access_key{between}{value}");
            let redacted = policy.redact(&text);
            assert!(!redacted.contains(value), "{between:?}: {redacted:?}");
        }
    }

    #[test]
    fn a_generic_sk_key_is_only_taken_at_the_start_of_a_word() {
        let policy = builtin();
        let slug = "desk-abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(policy.redact(slug), slug, "sk- ends ordinary words");
        assert_eq!(policy.redact(&slug[2..]), "[REDACTED:openai_api_key]");
    }

    #[test]
    fn a_name_is_redacted_into_a_name() {
        let policy = builtin();
        let filtered = policy.redact_name(&format!("out/{}.txt", aws_with("\u{200b}")), "artifacts");
        assert_eq!(filtered.text, "out/REDACTED-aws_access_key_id.txt");
        assert_eq!(
            filtered.redactions[0],
            Redaction { rule: "aws_access_key_id".into(), stream: "artifacts".into(), count: 1 }
        );
        assert_eq!(policy.redact_name("out/plot.png", "artifacts").text, "out/plot.png");
    }
}
