//! What a reader sees of output: the text without what a terminal does not show (Unicode
//! format characters, invisible control characters, ANSI escape sequences), with a map back to
//! the text as written. A key with a zero-width space or a colour change inside looks whole on
//! a screen, so the output rules look for it in this view too.
//!
//! Text with nothing hidden in it has no view: the rules see it as it is, and nothing is copied.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// Where something hidden starts: a format character (category Cf: zero-width spaces and
/// joiners, byte order marks, soft hyphens, direction marks…) or a control character a terminal
/// neither shows nor moves the cursor for (ESC among them, which may start a sequence). Tab,
/// line ends (LF, VT, FF, CR) and backspace stay: they change what is seen.
static HIDDEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\p{Cf}|[\p{Cc}&&[^\t\n\x0B\x0C\r\x08]]").expect("the pattern of hidden characters is valid")
});

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// Longest escape sequence taken as one. A terminal would wait longer, but a longer one hides
/// nothing a reader of the raw text would miss; past it only the ESC is hidden.
const MAX_ESCAPE_BYTES: usize = 256;

/// The text as a reader sees it, and where each part of it is in the text as written.
#[derive(Debug)]
pub struct View {
    /// The visible text.
    text: String,
    /// Each run of visible text: where it starts in the view and in the original.
    runs: Vec<Run>,
    /// What is hidden, in order, as ranges of the original.
    hidden: Vec<Range<usize>>,
    /// Where an escape sequence starts that the original ends inside of (more text may end it).
    unfinished: Option<usize>,
    original_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    view: usize,
    original: usize,
}

/// An escape sequence at ESC, as far as the text goes.
enum Escape {
    /// A whole sequence of this many bytes.
    Complete(usize),
    /// The text ends before the sequence does.
    Unfinished,
    /// Not a sequence (or too long to be one): only the ESC is hidden.
    Broken,
}

impl View {
    /// The view of `text`, or None when nothing in it is hidden (the common case: one scan, no
    /// copy).
    pub fn of(text: &str) -> Option<View> {
        if !HIDDEN.is_match(text) {
            return None;
        }
        let (hidden, unfinished) = hidden_parts(text);
        let mut view = View {
            text: String::with_capacity(text.len()),
            runs: Vec::with_capacity(hidden.len() + 1),
            hidden,
            unfinished,
            original_len: text.len(),
        };
        let mut visible_from = 0;
        for index in 0..=view.hidden.len() {
            let (end, next) = match view.hidden.get(index) {
                Some(part) => (part.start, part.end),
                None => (text.len(), text.len()),
            };
            if end > visible_from {
                view.runs.push(Run { view: view.text.len(), original: visible_from });
                view.text.push_str(&text[visible_from..end]);
            }
            visible_from = next;
        }
        Some(view)
    }

    /// The visible text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the visible byte at `at` of the view is in the original; the original's end for
    /// the view's end.
    pub fn start_in_original(&self, at: usize) -> usize {
        if at >= self.text.len() {
            return self.original_len;
        }
        let run = self.run_of_view(at);
        run.original + (at - run.view)
    }

    /// The original range of `range` of the view: what is hidden inside it is in it, what is
    /// hidden just before or after it is not.
    pub fn original_range(&self, range: Range<usize>) -> Range<usize> {
        let start = self.start_in_original(range.start);
        if range.is_empty() {
            return start..start;
        }
        start..self.start_in_original(range.end - 1) + 1
    }

    /// How many bytes of the view come before offset `at` of the original.
    pub fn view_offset(&self, at: usize) -> usize {
        let index = self.runs.partition_point(|run| run.original <= at);
        let Some(run) = index.checked_sub(1).map(|i| self.runs[i]) else { return 0 };
        let len = self.run_len(index - 1);
        run.view + (at - run.original).min(len)
    }

    /// Where an escape sequence starts that the text ends inside of: more text may end it.
    pub fn unfinished(&self) -> Option<usize> {
        self.unfinished
    }

    /// The latest offset at or before `at` that cuts through nothing hidden, and leaves an
    /// escape sequence that more text may end for later: text released in pieces must not
    /// change what is hidden in it.
    pub fn cut_before(&self, at: usize) -> usize {
        let mut at = at.min(self.unfinished.unwrap_or(usize::MAX));
        let index = self.hidden.partition_point(|part| part.start < at);
        if let Some(part) = index.checked_sub(1).map(|i| &self.hidden[i])
            && part.end > at
        {
            at = part.start;
        }
        at
    }

    fn run_of_view(&self, at: usize) -> Run {
        let index = self.runs.partition_point(|run| run.view <= at);
        self.runs[index.saturating_sub(1)]
    }

    fn run_len(&self, index: usize) -> usize {
        let end = self.runs.get(index + 1).map_or(self.text.len(), |next| next.view);
        end - self.runs[index].view
    }
}

/// The hidden parts of `text`, in order and apart, and where an unfinished escape sequence
/// starts at its end.
fn hidden_parts(text: &str) -> (Vec<Range<usize>>, Option<usize>) {
    let bytes = text.as_bytes();
    let mut parts: Vec<Range<usize>> = Vec::new();
    let mut unfinished = None;
    for found in HIDDEN.find_iter(text) {
        if parts.last().is_some_and(|last| found.start() < last.end) {
            continue;
        }
        let mut part = found.range();
        if bytes[found.start()] == ESC {
            match escape(&bytes[found.start()..]) {
                Escape::Complete(len) => part.end = found.start() + len,
                Escape::Unfinished => {
                    unfinished.get_or_insert(found.start());
                }
                Escape::Broken => {}
            }
        }
        parts.push(part);
    }
    (parts, unfinished)
}

/// The ANSI escape sequence `bytes` starts with (at its ESC): a CSI (`ESC [`, parameter and
/// intermediate bytes, a final byte: colours, cursor moves) or an OSC (`ESC ]`, text, then BEL
/// or `ESC \`: titles, links). An ESC before anything else hides only itself.
fn escape(bytes: &[u8]) -> Escape {
    match bytes.get(1) {
        None => Escape::Unfinished,
        Some(b'[') => csi(bytes),
        Some(b']') => osc(bytes),
        Some(_) => Escape::Broken,
    }
}

fn csi(bytes: &[u8]) -> Escape {
    let body = bytes.iter().skip(2).take(MAX_ESCAPE_BYTES).position(|b| !(0x20..=0x3f).contains(b));
    let Some(body) = body else {
        return ended_inside(bytes);
    };
    match bytes[2 + body] {
        0x40..=0x7e => Escape::Complete(2 + body + 1),
        _ => Escape::Broken,
    }
}

fn osc(bytes: &[u8]) -> Escape {
    for (index, &byte) in bytes.iter().enumerate().skip(2).take(MAX_ESCAPE_BYTES) {
        match byte {
            BEL => return Escape::Complete(index + 1),
            ESC => {
                return match bytes.get(index + 1) {
                    Some(b'\\') => Escape::Complete(index + 2),
                    Some(_) => Escape::Broken,
                    None => Escape::Unfinished,
                };
            }
            0x00..=0x1f | 0x7f => return Escape::Broken,
            _ => {}
        }
    }
    ended_inside(bytes)
}

/// A sequence whose every byte so far could be part of it: unfinished if the text ended
/// before it grew too long.
fn ended_inside(bytes: &[u8]) -> Escape {
    if bytes.len() < 2 + MAX_ESCAPE_BYTES { Escape::Unfinished } else { Escape::Broken }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(text: &str) -> String {
        View::of(text).map_or_else(|| text.to_owned(), |view| view.text().to_owned())
    }

    #[test]
    fn plain_text_has_no_view() {
        for text in ["", "hello\tworld\r\n", "naïve — ü 日本語 🦀", "back\x08space"] {
            assert!(View::of(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn format_characters_and_invisible_controls_are_hidden() {
        assert_eq!(seen("a\u{200b}b\u{200d}c\u{feff}d\u{ad}e\u{2060}f\u{202e}g"), "abcdefg");
        assert_eq!(seen("a\0b\x07c\x7fd\u{9b}e"), "abcde");
        assert_eq!(seen("tab\there\n"), "tab\there\n", "nothing hidden");
    }

    #[test]
    fn ansi_sequences_are_hidden_whole() {
        assert_eq!(seen("AKIA\x1b[31mIOSF\x1b[0m"), "AKIAIOSF");
        assert_eq!(seen("a\x1b[38;5;196mb\x1b[2Kc\x1b[?25hd"), "abcd");
        assert_eq!(seen("a\x1b]8;;https://x.test/\x1b\\b\x1b]0;title\x07c"), "abc");
        assert_eq!(seen("a\x1bMb"), "aMb", "an ESC before anything else hides only itself");
        assert_eq!(seen("a\x1b[3\nb"), "a[3\nb", "a broken sequence hides only its ESC");
        assert_eq!(seen("a\x1b]x\ny"), "a]x\ny");
    }

    #[test]
    fn ranges_map_back_with_what_is_hidden_inside_but_not_around() {
        let text = "k=\x1b[1mAKIA\u{200b}IOSF\x1b[0m!";
        let view = View::of(text).unwrap();
        assert_eq!(view.text(), "k=AKIAIOSF!");
        let found = view.text().find("AKIAIOSF").unwrap();
        let range = view.original_range(found..found + 8);
        assert_eq!(&text[range], "AKIA\u{200b}IOSF");
        assert_eq!(view.start_in_original(view.text().len()), text.len());
        assert_eq!(view.view_offset(text.find("IOSF").unwrap()), found + 4);
        assert_eq!(view.view_offset(text.find('\u{200b}').unwrap()), found + 4, "inside something hidden");
        assert_eq!(view.view_offset(0), 0);
        let hidden_first = View::of("\u{feff}ab").unwrap();
        assert_eq!(hidden_first.original_range(0..2), 3..5);
        assert_eq!(hidden_first.view_offset(1), 0);
    }

    #[test]
    fn a_cut_never_splits_a_sequence_or_releases_an_unfinished_one() {
        let text = "ab\x1b[31mcd";
        let view = View::of(text).unwrap();
        assert_eq!(view.cut_before(4), 2, "inside the sequence: before it");
        assert_eq!(view.cut_before(7), 7, "after it: as asked");
        assert_eq!(view.cut_before(2), 2);
        for unfinished in ["ab\x1b", "ab\x1b[", "ab\x1b[38;5", "ab\x1b]0;tit", "ab\x1b]0;t\x1b"] {
            let view = View::of(unfinished).unwrap();
            assert_eq!(view.cut_before(unfinished.len()), 2, "{unfinished:?}");
            assert_eq!(view.text(), unfinished.replace('\x1b', ""), "only the ESC is hidden for matching");
        }
        let too_long = format!("ab\x1b[{}", "1".repeat(MAX_ESCAPE_BYTES));
        assert_eq!(View::of(&too_long).unwrap().cut_before(too_long.len()), too_long.len());
    }
}
