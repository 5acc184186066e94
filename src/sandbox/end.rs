//! The supervisor's end line in a container's stdout (see `sandbox/supervise.sh`):
//! `\0TRACEBOX-END <marker> <status>\n`. What comes before it is the program's stdout; what
//! comes after is the tar of the program's `/workspace/out`.
//!
//! The marker is random per container, so no program prints the line by chance. The scan holds
//! back only a chunk's tail that could be the start of the line (it begins with a NUL byte,
//! which text output almost never ends with), so program output is not delayed.

use bytes::{Bytes, BytesMut};

/// Longest status the end line may carry (`255`, or `-1` from a forged line).
const MAX_STATUS_BYTES: usize = 8;

/// A fresh random marker for a container.
pub fn new_marker() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Splits a container's stdout into the program's output, its end and the artifacts.
pub struct EndScanner {
    /// `\0TRACEBOX-END <marker> `: the end line up to its status.
    needle: Vec<u8>,
    state: State,
}

enum State {
    /// Before the end line; holds a tail that may be the needle's start.
    Program { held: BytesMut },
    /// After the needle, reading the status up to its newline.
    Status { digits: Vec<u8> },
    /// After the end line: the artifacts' tar.
    Artifacts,
}

/// One chunk of stdout, split.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// The program's own output.
    pub program: Option<Bytes>,
    /// The program ended with this status (`None` inside when the line was garbled).
    pub ended: Option<Option<i64>>,
    /// Bytes of the artifacts' tar.
    pub artifacts: Option<Bytes>,
}

impl EndScanner {
    pub fn new(marker: &str) -> EndScanner {
        EndScanner {
            needle: format!("\0TRACEBOX-END {marker} ").into_bytes(),
            state: State::Program { held: BytesMut::new() },
        }
    }

    /// Split the next chunk of stdout.
    pub fn scan(&mut self, chunk: Bytes) -> Split {
        let mut split = Split::default();
        let mut rest = chunk;
        loop {
            match &mut self.state {
                State::Program { held } => {
                    let data = if held.is_empty() {
                        rest
                    } else {
                        held.extend_from_slice(&rest);
                        held.split().freeze()
                    };
                    if let Some(at) = find(&data, &self.needle) {
                        split.program = non_empty(data.slice(..at));
                        rest = data.slice(at + self.needle.len()..);
                        self.state = State::Status { digits: Vec::new() };
                        continue;
                    }
                    let keep = partial_suffix(&data, &self.needle);
                    held.extend_from_slice(&data[data.len() - keep..]);
                    split.program = non_empty(data.slice(..data.len() - keep));
                    return split;
                }
                State::Status { digits } => {
                    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                        digits.extend_from_slice(&rest);
                        if digits.len() > MAX_STATUS_BYTES {
                            split.ended = Some(None);
                            self.state = State::Artifacts;
                        }
                        return split;
                    };
                    digits.extend_from_slice(&rest[..newline]);
                    let status = std::str::from_utf8(digits).ok().and_then(|text| text.parse().ok());
                    split.ended = Some(status);
                    rest = rest.slice(newline + 1..);
                    self.state = State::Artifacts;
                }
                State::Artifacts => {
                    split.artifacts = non_empty(rest);
                    return split;
                }
            }
        }
    }

    /// The stream ended: what was held back is the program's after all.
    pub fn finish(&mut self) -> Option<Bytes> {
        match &mut self.state {
            State::Program { held } => non_empty(held.split().freeze()),
            _ => None,
        }
    }
}

fn non_empty(bytes: Bytes) -> Option<Bytes> {
    (!bytes.is_empty()).then_some(bytes)
}

/// Where `needle` starts in `data`.
fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    (0..data.len()).filter(|&i| data[i] == first).find(|&i| data[i..].starts_with(needle))
}

/// The length of the longest tail of `data` that is a proper start of `needle`.
fn partial_suffix(data: &[u8], needle: &[u8]) -> usize {
    let from = data.len().saturating_sub(needle.len() - 1);
    (from..data.len()).find(|&i| needle.starts_with(&data[i..])).map_or(0, |i| data.len() - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(scanner: &mut EndScanner, pieces: &[&[u8]]) -> (Vec<u8>, Option<Option<i64>>, Vec<u8>) {
        let (mut program, mut ended, mut artifacts) = (Vec::new(), None, Vec::new());
        for piece in pieces {
            let split = scanner.scan(Bytes::copy_from_slice(piece));
            program.extend_from_slice(split.program.as_deref().unwrap_or_default());
            ended = ended.or(split.ended);
            artifacts.extend_from_slice(split.artifacts.as_deref().unwrap_or_default());
        }
        program.extend_from_slice(scanner.finish().as_deref().unwrap_or_default());
        (program, ended, artifacts)
    }

    #[test]
    fn the_end_line_splits_program_output_from_the_artifacts() {
        let mut scanner = EndScanner::new("abc");
        let (program, ended, artifacts) = scan_all(&mut scanner, &[b"hello\n\0TRACEBOX-END abc 3\nTARBYTES"]);
        assert_eq!(
            (program.as_slice(), ended, artifacts.as_slice()),
            (&b"hello\n"[..], Some(Some(3)), &b"TARBYTES"[..])
        );
    }

    #[test]
    fn the_end_line_is_found_whatever_the_chunks_cut_it_into() {
        let stream = b"out\0put\0\0TRACEBOX-END abc 0\ntar";
        for cut in 0..stream.len() {
            for second in cut..stream.len() {
                let mut scanner = EndScanner::new("abc");
                let pieces = [&stream[..cut], &stream[cut..second], &stream[second..]];
                let (program, ended, artifacts) = scan_all(&mut scanner, &pieces);
                assert_eq!(program, b"out\0put\0", "cut at {cut} and {second}");
                assert_eq!(ended, Some(Some(0)));
                assert_eq!(artifacts, b"tar");
            }
        }
    }

    #[test]
    fn another_marker_or_a_lone_nul_is_program_output() {
        let mut scanner = EndScanner::new("abc");
        let (program, ended, _) = scan_all(&mut scanner, &[b"x\0TRACEBOX-END xyz 0\n", b"\0TRACEBOX-EN"]);
        assert_eq!(program, b"x\0TRACEBOX-END xyz 0\n\0TRACEBOX-EN");
        assert_eq!(ended, None);
    }

    #[test]
    fn only_a_possible_start_of_the_line_is_held_back() {
        let mut scanner = EndScanner::new("abc");
        assert_eq!(scanner.scan(Bytes::from_static(b"prompt> ")).program.as_deref(), Some(&b"prompt> "[..]));
        assert_eq!(scanner.scan(Bytes::from_static(b"a\0TRACE")).program.as_deref(), Some(&b"a"[..]));
        assert_eq!(scanner.scan(Bytes::from_static(b"S")).program.as_deref(), Some(&b"\0TRACES"[..]));
    }

    #[test]
    fn a_garbled_status_still_ends_the_program() {
        let mut scanner = EndScanner::new("abc");
        let (_, ended, artifacts) = scan_all(&mut scanner, &[b"\0TRACEBOX-END abc 123456789012tar"]);
        assert_eq!(ended, Some(None));
        assert!(artifacts.is_empty());
        let mut scanner = EndScanner::new("abc");
        assert_eq!(scan_all(&mut scanner, &[b"\0TRACEBOX-END abc x\n"]).1, Some(None));
    }

    #[test]
    fn markers_differ_per_container() {
        assert_ne!(new_marker(), new_marker());
        assert_eq!(new_marker().len(), 32);
    }
}
