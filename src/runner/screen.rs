//! Output screening as the output arrives: bytes are decoded to UTF-8, run through the
//! policy's output rules, and released piece by piece, so that live clients see output while
//! the program runs and never see a secret the rules would redact.
//!
//! Text is released at line ends (and, for live clients, after a short quiet spell), never in
//! the middle of something a redaction rule matches or may still match. The pieces released
//! for a stream, joined, are the stream's final text: what a live client saw is what the
//! trace keeps and `/execute` returns.

use std::borrow::Cow;

use crate::policy::{Filtered, Policy};

/// Held text past which a line without an end is released anyway (a progress bar drawn with
/// `\r`, a megabyte without a newline): holding it all would only delay the client.
const MAX_HELD_BYTES: usize = 64 * 1024;

/// One output stream being screened.
pub struct StreamScreen {
    /// `stdout` or `stderr`, for redaction and warning records.
    stream: &'static str,
    /// Bytes of a character the last chunk cut in two.
    partial_char: Vec<u8>,
    /// Decoded text not yet released.
    held: String,
    /// Newlines in what was released, to number the lines of later warnings.
    released_lines: usize,
    /// Everything released so far, with its redactions and warnings.
    screened: Filtered,
    /// Some bytes were not UTF-8 and became U+FFFD.
    lossy: bool,
    /// Output arrived since the last flush: a quiet spell may release something.
    unflushed: bool,
}

impl StreamScreen {
    pub fn new(stream: &'static str) -> StreamScreen {
        StreamScreen {
            stream,
            partial_char: Vec::new(),
            held: String::new(),
            released_lines: 0,
            screened: Filtered::default(),
            lossy: false,
            unflushed: false,
        }
    }

    /// Take a chunk of output; returns the text that can be released now, if any.
    pub fn push(&mut self, policy: &Policy, bytes: &[u8]) -> Option<String> {
        self.partial_char.extend_from_slice(bytes);
        let complete = complete_utf8_len(&self.partial_char);
        let (text, lossy) = decode(&self.partial_char[..complete]);
        self.lossy |= lossy;
        self.held.push_str(&text);
        self.partial_char.drain(..complete);
        self.unflushed = true;
        let line_end = self.held.rfind(['\n', '\r']).map_or(0, |i| i + 1);
        let wanted = if self.held.len() > MAX_HELD_BYTES { self.held.len() } else { line_end };
        self.release(policy, wanted)
    }

    /// Is text held back that a quiet spell could release (something came since the last
    /// flush)? What one flush kept, another would keep too.
    pub fn wants_flush(&self) -> bool {
        self.unflushed && !self.held.is_empty()
    }

    /// The program went quiet: release what is held (a prompt without a newline), except what
    /// could still become a secret.
    pub fn flush(&mut self, policy: &Policy) -> Option<String> {
        self.unflushed = false;
        self.release(policy, self.held.len())
    }

    /// The stream ended. `beyond` is what the output limit cut off (when it did), used only to
    /// redact a secret the cut split in two. Returns the last text to release.
    pub fn finish(&mut self, policy: &Policy, beyond: Option<&[u8]>) -> Option<String> {
        let last = match beyond {
            None => {
                let (text, lossy) = decode(&self.partial_char);
                self.lossy |= lossy;
                self.held.push_str(&text);
                policy.filter_output(&self.held, self.stream)
            }
            Some(beyond) => {
                let mut after = std::mem::take(&mut self.partial_char);
                after.extend_from_slice(beyond);
                policy.filter_cut_output(&self.held, &decode(&after).0, self.stream)
            }
        };
        self.held.clear();
        self.absorb(last)
    }

    /// Everything released, and whether any bytes were not UTF-8.
    pub fn into_screened(self) -> (Filtered, bool) {
        (self.screened, self.lossy)
    }

    fn release(&mut self, policy: &Policy, wanted: usize) -> Option<String> {
        let point = policy.release_point(&self.held, wanted);
        if point == 0 {
            return None;
        }
        let rest = self.held.split_off(point);
        let piece = policy.filter_output(&std::mem::replace(&mut self.held, rest), self.stream);
        self.absorb(piece)
    }

    /// Add a released piece to the stream's record; hand its text on.
    fn absorb(&mut self, piece: Filtered) -> Option<String> {
        let Filtered { text, redactions, warnings } = piece;
        for redaction in redactions {
            match self.screened.redactions.iter_mut().find(|r| r.rule == redaction.rule) {
                Some(known) => known.count += redaction.count,
                None => self.screened.redactions.push(redaction),
            }
        }
        for mut warning in warnings {
            if !self.screened.warnings.iter().any(|w| w.rule == warning.rule) {
                warning.line += self.released_lines;
                self.screened.warnings.push(warning);
            }
        }
        self.released_lines += text.matches('\n').count();
        self.screened.text.push_str(&text);
        (!text.is_empty()).then_some(text)
    }
}

/// UTF-8 text of the output; invalid bytes become U+FFFD, and the flag says it happened.
fn decode(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(text) => (text.to_owned(), false),
        Cow::Owned(text) => (text, true),
    }
}

/// The length of `bytes` without a trailing character that was cut off mid-way.
fn complete_utf8_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A character is at most 4 bytes: its lead byte is among the last 3 if it is cut.
    for i in (len.saturating_sub(3)..len).rev() {
        let width = match bytes[i] {
            0x80..=0xBF => continue,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if i + width > len { i } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::builtin().unwrap()
    }

    /// Feed `chunks` to a screen; returns the released pieces and the final record.
    fn screen(chunks: &[&[u8]], beyond: Option<&[u8]>) -> (Vec<String>, Filtered, bool) {
        let policy = policy();
        let mut screen = StreamScreen::new("stdout");
        let mut pieces: Vec<String> = chunks.iter().filter_map(|chunk| screen.push(&policy, chunk)).collect();
        pieces.extend(screen.finish(&policy, beyond));
        let (screened, lossy) = screen.into_screened();
        (pieces, screened, lossy)
    }

    #[test]
    fn complete_lines_are_released_as_they_come_and_the_rest_at_the_end() {
        let (pieces, screened, _) = screen(&[b"one\ntw", b"o\nthree"], None);
        assert_eq!(pieces, ["one\n", "two\n", "three"]);
        assert_eq!(screened.text, "one\ntwo\nthree");
    }

    #[test]
    fn a_secret_split_across_chunks_is_redacted_and_never_released_in_part() {
        let (pieces, screened, _) = screen(&[b"key=sk-ant-api03-AAAA", b"AAAAAAAAAAAAAAAAAAAAAAAA\nok\n"], None);
        assert_eq!(pieces, ["key=[REDACTED:anthropic_api_key]\nok\n"]);
        assert_eq!(screened.redactions[0].count, 1);
    }

    #[test]
    fn a_private_key_is_held_until_its_end_line_arrives() {
        let policy = policy();
        let mut screen = StreamScreen::new("stdout");
        assert_eq!(screen.push(&policy, b"a\n-----BEGIN PRIVATE KEY-----\n").as_deref(), Some("a\n"));
        assert_eq!(screen.push(&policy, b"MIIEvQIBADANBgkqhkiG9w0BAQ\n"), None, "the key body is held");
        assert_eq!(screen.flush(&policy), None, "a quiet spell does not release it either");
        let end = screen.push(&policy, b"-----END PRIVATE KEY-----\nb\n");
        assert_eq!(end.as_deref(), Some("[REDACTED:private_key]\nb\n"));
    }

    #[test]
    fn a_flush_never_releases_the_first_half_of_a_secret() {
        let policy = policy();
        let mut screen = StreamScreen::new("stdout");
        assert_eq!(screen.push(&policy, b"token: sk-ant-api03-AA"), None);
        assert_eq!(screen.flush(&policy).as_deref(), Some("token: "), "only what cannot become a secret");
        let rest = screen.push(&policy, b"AAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        assert_eq!(rest.as_deref(), Some("[REDACTED:anthropic_api_key]\n"));
        let mut screen = StreamScreen::new("stdout");
        screen.push(&policy, b"AWS_SECRET_ACCESS_KEY=\n");
        assert_eq!(screen.flush(&policy), None, "a key name waits for its value, even past a line end");
        let value = screen.push(&policy, b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n");
        assert_eq!(value.as_deref(), Some("AWS_SECRET_ACCESS_KEY=\n[REDACTED:aws_secret_access_key]\n"));
    }

    #[test]
    fn a_flush_releases_a_prompt_without_a_newline() {
        let policy = policy();
        let mut screen = StreamScreen::new("stdout");
        assert_eq!(screen.push(&policy, b"name? "), None);
        assert!(screen.wants_flush());
        assert_eq!(screen.flush(&policy).as_deref(), Some("name? "));
        assert!(!screen.wants_flush());
        screen.push(&policy, b"key: sk-");
        assert_eq!(screen.flush(&policy).as_deref(), Some("key: "));
        assert!(!screen.wants_flush(), "what a flush kept waits for more output, not another flush");
    }

    #[test]
    fn a_character_split_across_chunks_is_decoded_whole() {
        let bytes = "é🦀\n".as_bytes();
        let (pieces, screened, lossy) = screen(&[&bytes[..1], &bytes[1..4], &bytes[4..]], None);
        assert_eq!(pieces.concat(), "é🦀\n");
        assert_eq!(screened.text, "é🦀\n");
        assert!(!lossy);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let (_, screened, lossy) = screen(&[b"a\xffb\n"], None);
        assert_eq!(screened.text, "a\u{fffd}b\n");
        assert!(lossy);
    }

    #[test]
    fn a_cut_stream_drops_a_half_character_and_redacts_a_half_secret() {
        let (_, screened, lossy) = screen(&["ok\nxé".as_bytes()[..5].as_ref()], Some(b"".as_slice()));
        assert_eq!(screened.text, "ok\nx", "the cut half of é is left out, not replaced");
        assert!(!lossy);
        let kept = b"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiC";
        let (_, screened, _) = screen(&[b"r\n", kept], Some(b"YEXAMPLEKEY\n"));
        assert_eq!(screened.text, "r\n[REDACTED:aws_secret_access_key]");
    }

    #[test]
    fn warnings_count_lines_across_pieces() {
        let policy =
            Policy::parse("[[output]]\nid = \"pw\"\naction = \"warn\"\nreason = \"r\"\npattern = 'pw=\\S+'\n", "t")
                .unwrap();
        let mut screen = StreamScreen::new("stdout");
        screen.push(&policy, b"a\nb\n");
        screen.push(&policy, b"c pw=1\n");
        screen.finish(&policy, None);
        let (screened, _) = screen.into_screened();
        assert_eq!(screened.warnings[0].line, 3);
    }

    #[test]
    fn a_long_line_is_released_before_it_ends() {
        let policy = policy();
        let mut screen = StreamScreen::new("stdout");
        // Dots: a last `x` would wait, as it may begin a Slack token (`xoxb-`).
        let released = screen.push(&policy, &vec![b'.'; MAX_HELD_BYTES + 1]);
        assert_eq!(released.map(|text| text.len()), Some(MAX_HELD_BYTES + 1));
    }

    #[test]
    fn a_character_cut_in_half_is_left_out_not_replaced() {
        assert_eq!(complete_utf8_len("aé".as_bytes()), 3);
        assert_eq!(complete_utf8_len(&"aé".as_bytes()[..2]), 1);
        assert_eq!(complete_utf8_len(&"a🦀".as_bytes()[..4]), 1);
        assert_eq!(complete_utf8_len(b"\xff\xfeok\xc3"), 4, "earlier invalid bytes stay; the cut tail goes");
        assert_eq!(complete_utf8_len(b"ok\xff"), 3, "a trailing invalid byte is not a cut character");
    }
}
