//! "Could more text complete a match here?": what output released before its end must not
//! cut through. A regex finds matches in text it has; a secret whose first half has arrived is
//! not a match yet, and releasing that half would leave neither half matching. Each redaction
//! rule is also compiled to a lazy DFA, run anchored from each candidate start: a start whose
//! run is not dead at the end of the text may still grow into a match.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

/// How far back a match may have started and still be unfinished: longer than any secret's
/// key name and value together. A private key's BEGIN line is found by its own rule, which
/// matches through to the end of the text while its END line is missing.
const WINDOW_BYTES: usize = 512;

/// The redaction rules as automata that can tell a prefix of a match.
#[derive(Debug)]
pub struct PartialMatcher {
    dfas: Vec<DFA>,
}

impl PartialMatcher {
    /// Compile `patterns` (already valid regexes).
    pub fn new<'a>(patterns: impl Iterator<Item = &'a str>) -> Result<PartialMatcher, String> {
        let dfas = patterns
            .map(|pattern| {
                // Byte-wise and ASCII-only (`\b`, classes): a DFA cannot do Unicode word
                // boundaries, and every secret the rules describe is ASCII.
                DFA::builder()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .build(pattern)
                    .map_err(|e| format!("pattern {pattern:?} cannot be checked for partial matches: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(PartialMatcher { dfas })
    }

    /// The earliest position near the end of `text` from which the rest of `text` is the
    /// beginning of a match of some rule (or a whole match that more text could extend).
    pub fn open_start(&self, text: &str) -> Option<usize> {
        let mut caches: Vec<Cache> = self.dfas.iter().map(DFA::create_cache).collect();
        let mut from = text.len().saturating_sub(WINDOW_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        (from..text.len())
            .filter(|&start| text.is_char_boundary(start))
            .find(|&start| self.dfas.iter().zip(&mut caches).any(|(dfa, cache)| may_continue(dfa, cache, text, start)))
    }
}

/// Does an anchored run of `dfa` from `start` survive to the end of `text`, with a byte that
/// could come next? (A DFA reports a match one byte late: a state can be alive only to report
/// a match that ended before the last byte, with nothing that could follow.)
fn may_continue(dfa: &DFA, cache: &mut Cache, text: &str, start: usize) -> bool {
    let input = Input::new(text).range(start..).anchored(Anchored::Yes);
    let Ok(mut state) = dfa.start_state_forward(cache, &input) else {
        return true;
    };
    for &byte in &text.as_bytes()[start..] {
        if state.is_dead() {
            return false;
        }
        match dfa.next_state(cache, state, byte) {
            Ok(next) => state = next,
            // The cache gave up: say "may continue", the safe answer.
            Err(_) => return true,
        }
    }
    if state.is_dead() {
        return false;
    }
    !state.is_match() || (0..=u8::MAX).any(|byte| dfa.next_state(cache, state, byte).is_ok_and(|next| !next.is_dead()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> PartialMatcher {
        PartialMatcher::new(patterns.iter().copied()).unwrap()
    }

    #[test]
    fn the_start_of_a_secret_is_found_before_it_is_a_match() {
        let m = matcher(&[r"\bsk-ant-[A-Za-z0-9_\-]{20,}"]);
        assert_eq!(m.open_start("key: sk-ant-api03-AAA"), Some(5));
        assert_eq!(m.open_start("key: s"), Some(5), "one letter may begin it");
        assert_eq!(m.open_start("name? "), None);
        assert_eq!(m.open_start("done\n"), None);
        assert_eq!(m.open_start("task-ant"), None, "\\b: not at the start of a word");
    }

    #[test]
    fn a_key_name_without_its_value_is_held_across_a_line_end() {
        let m = matcher(&[r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{40})"#]);
        let text = "ok\nAWS_SECRET_ACCESS_KEY:\n";
        assert_eq!(m.open_start(text), Some(3));
        assert_eq!(m.open_start("AWS_SECRET_ACCESS_KEY: x!"), None, "a character the value cannot hold ends it");
    }

    #[test]
    fn a_complete_match_that_could_grow_is_open() {
        let m = matcher(&[r"\bxox[abposr]-[A-Za-z0-9-]{10,}"]);
        assert_eq!(m.open_start("xoxb-1234567890"), Some(0));
        assert_eq!(m.open_start("xoxb-1234567890\n"), None);
    }

    #[test]
    fn non_ascii_text_is_never_held_for_itself() {
        let m = matcher(&[r"\bAKIA[0-9A-Z]{16}\b", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*\z)"]);
        assert_eq!(m.open_start("héllo wörld ✓ 日本語\n"), None);
        assert_eq!(m.open_start("é AKIA12"), Some("é ".len()));
        assert_eq!(m.open_start("日本 -----BEGIN RSA PRIVATE KEY-----\nMIIE"), Some("日本 ".len()));
    }
}
