//! The supervisor's protocol (`sandbox/supervise.py`): the frames tracebox writes on a
//! container's stdin, and the lines the supervisor writes among the program's output.
//!
//! ```text
//! stdin   M <marker>\n                                      first, once per container
//!         P <n>\n<JSON {"code", "env", "timeout"}><code>   D <n>\n<stdin bytes>   E\n
//! stdout  \0TRACEBOX-READY <marker>\n                        a program may be sent
//!         \0TRACEBOX-GO <marker>\n                           the supervisor took it
//!         \0TRACEBOX-END <marker> <status> <oom kills> <n>\n<n bytes: tar of /workspace/out>
//! stderr  \0TRACEBOX-END <marker>\n                          all of the program's stderr came
//! ```
//!
//! The marker is random per container and reaches only the supervisor (on stdin, never in an
//! environment; the supervisor is PID 1, not dumpable, and programs are not forked from it),
//! so no program can print these lines, by chance or on purpose. The scanners hold back only a
//! chunk's tail that could be the start of a line (it begins with a NUL byte, which text output
//! almost never ends with).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

/// Longest status line accepted after the END needle (three numbers).
const MAX_STATUS_LINE: usize = 64;

/// A fresh random marker for a container.
pub fn new_marker() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The first frame of a container's stdin: its marker, for the supervisor alone.
pub fn marker_frame(marker: &str) -> Vec<u8> {
    format!("M {marker}\n").into_bytes()
}

/// The frame that hands a program to the supervisor.
pub fn program_frame(code: &str, env: &BTreeMap<String, String>, timeout: Duration) -> Vec<u8> {
    let header = json!({ "code": code.len(), "env": env, "timeout": timeout.as_secs_f64() }).to_string();
    let mut frame = format!("P {}\n{header}", header.len()).into_bytes();
    frame.extend_from_slice(code.as_bytes());
    frame
}

/// A frame of the program's stdin (empty data makes no frame).
pub fn stdin_frame(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut frame = format!("D {}\n", data.len()).into_bytes();
    frame.extend_from_slice(data);
    frame
}

/// The frame that ends the program's stdin.
pub const END_OF_STDIN: &[u8] = b"E\n";

/// How a program ended, as its supervisor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The exit code (128 + the signal of a program killed by one); None when garbled.
    pub status: Option<i64>,
    /// OOM kills in the container while it ran; None when the supervisor could not tell.
    pub oom_kills: Option<u64>,
    /// Bytes of the artifacts' tar that follow.
    pub tar_bytes: u64,
}

/// What a piece of a container's stdout holds, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// The supervisor is ready for a program.
    Ready,
    /// The supervisor took the program: what follows is the program's.
    Started,
    /// The program's own output.
    Program(Bytes),
    /// The program ended.
    Ended(End),
    /// Bytes of the artifacts' tar.
    Tar(Bytes),
    /// The tar is whole.
    TarDone,
}

/// A needle searched for across chunks.
#[derive(Debug)]
struct Needle(Vec<u8>);

impl Needle {
    /// Split `data` at the needle: what comes before it, and what after, once found. When it is
    /// not found, a tail that may be the needle's start is left in `held`.
    fn split(&self, held: &mut BytesMut, data: Bytes) -> (Option<Bytes>, Option<Bytes>) {
        let data = if held.is_empty() {
            data
        } else {
            held.extend_from_slice(&data);
            held.split().freeze()
        };
        if let Some(at) = find(&data, &self.0) {
            return (non_empty(data.slice(..at)), Some(data.slice(at + self.0.len()..)));
        }
        let keep = partial_suffix(&data, &self.0);
        held.extend_from_slice(&data[data.len() - keep..]);
        (non_empty(data.slice(..data.len() - keep)), None)
    }
}

/// A container's stdout, across its runs.
#[derive(Debug)]
pub struct StdoutScanner {
    ready: Needle,
    go: Needle,
    end: Needle,
    state: Stdout,
    held: BytesMut,
}

#[derive(Debug, PartialEq)]
enum Stdout {
    /// Waiting for the READY line (the supervisor starting, or readying the next program).
    Waiting,
    /// Ready, waiting for the GO line: the supervisor took a program.
    Handed,
    /// The program's output, up to the END line.
    Program,
    /// The numbers of the END line, up to its newline.
    Status(Vec<u8>),
    /// This many bytes of tar to come.
    Tar(u64),
}

impl StdoutScanner {
    pub fn new(marker: &str) -> StdoutScanner {
        StdoutScanner {
            ready: Needle(format!("\0TRACEBOX-READY {marker}\n").into_bytes()),
            go: Needle(format!("\0TRACEBOX-GO {marker}\n").into_bytes()),
            end: Needle(format!("\0TRACEBOX-END {marker} ").into_bytes()),
            state: Stdout::Waiting,
            held: BytesMut::new(),
        }
    }

    /// Sort the next chunk of stdout.
    pub fn scan(&mut self, chunk: Bytes) -> Vec<Out> {
        let mut out = Vec::new();
        let mut rest = Some(chunk);
        while let Some(data) = rest.take().filter(|d| !d.is_empty() || !self.held.is_empty()) {
            match &mut self.state {
                Stdout::Waiting => {
                    // Nothing but the supervisor writes before READY: what else comes is dropped.
                    let (_, after) = self.ready.split(&mut self.held, data);
                    if let Some(after) = after {
                        out.push(Out::Ready);
                        self.state = Stdout::Handed;
                        rest = Some(after);
                    }
                }
                Stdout::Handed => {
                    // Nor between READY and GO: the program gets its code only after GO.
                    let (_, after) = self.go.split(&mut self.held, data);
                    if let Some(after) = after {
                        out.push(Out::Started);
                        self.state = Stdout::Program;
                        rest = Some(after);
                    }
                }
                Stdout::Program => {
                    let (before, after) = self.end.split(&mut self.held, data);
                    out.extend(before.map(Out::Program));
                    if let Some(after) = after {
                        self.state = Stdout::Status(Vec::new());
                        rest = Some(after);
                    }
                }
                Stdout::Status(line) => match data.iter().position(|&b| b == b'\n') {
                    None if line.len() + data.len() > MAX_STATUS_LINE => {
                        out.push(Out::Ended(End { status: None, oom_kills: None, tar_bytes: 0 }));
                        out.push(Out::TarDone);
                        self.state = Stdout::Waiting;
                    }
                    None => line.extend_from_slice(&data),
                    Some(newline) => {
                        line.extend_from_slice(&data[..newline]);
                        let end = parse_end(line);
                        out.push(Out::Ended(end));
                        rest = Some(data.slice(newline + 1..));
                        self.state = Stdout::Tar(end.tar_bytes);
                        if end.tar_bytes == 0 {
                            out.push(Out::TarDone);
                            self.state = Stdout::Waiting;
                        }
                    }
                },
                Stdout::Tar(left) => {
                    let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    if take > 0 {
                        out.push(Out::Tar(data.slice(..take)));
                    }
                    *left -= take as u64;
                    if *left == 0 {
                        out.push(Out::TarDone);
                        self.state = Stdout::Waiting;
                    }
                    rest = Some(data.slice(take..));
                }
            }
        }
        out
    }

    /// The stream ended: what was held back as a possible start of the END line was the
    /// program's after all.
    pub fn finish(&mut self) -> Option<Bytes> {
        match self.state {
            Stdout::Program => non_empty(self.held.split().freeze()),
            _ => None,
        }
    }
}

/// `<status> <oom kills> <tar bytes>`, any of them garbled as None (no tar then).
fn parse_end(line: &[u8]) -> End {
    let text = String::from_utf8_lossy(line);
    let mut numbers = text.split_whitespace();
    let status = numbers.next().and_then(|n| n.parse::<i64>().ok());
    let oom_kills = numbers.next().and_then(|n| n.parse::<i64>().ok()).and_then(|n| u64::try_from(n).ok());
    let tar_bytes = numbers.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    End { status, oom_kills, tar_bytes }
}

/// A container's stderr during one run: the program's, up to the supervisor's END line.
#[derive(Debug)]
pub struct StderrScanner {
    end: Needle,
    ended: bool,
    held: BytesMut,
}

impl StderrScanner {
    pub fn new(marker: &str) -> StderrScanner {
        StderrScanner {
            end: Needle(format!("\0TRACEBOX-END {marker}\n").into_bytes()),
            ended: false,
            held: BytesMut::new(),
        }
    }

    /// A new run begins.
    pub fn reset(&mut self) {
        self.ended = false;
        self.held.clear();
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The program's part of a chunk of stderr.
    pub fn scan(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let (before, after) = self.end.split(&mut self.held, chunk);
        self.ended = after.is_some();
        before
    }

    /// The stream ended: what was held back was the program's.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.ended { None } else { non_empty(self.held.split().freeze()) }
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

    fn scan_all(scanner: &mut StdoutScanner, pieces: &[&[u8]]) -> Vec<Out> {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(scanner.scan(Bytes::copy_from_slice(piece)));
        }
        // Adjacent program pieces, joined, so the result does not depend on the chunking.
        let mut joined: Vec<Out> = Vec::new();
        for item in out {
            match (joined.last_mut(), item) {
                (Some(Out::Program(a)), Out::Program(b)) => *a = [a.as_ref(), b.as_ref()].concat().into(),
                (Some(Out::Tar(a)), Out::Tar(b)) => *a = [a.as_ref(), b.as_ref()].concat().into(),
                (_, item) => joined.push(item),
            }
        }
        joined
    }

    const STREAM: &[u8] = b"\0TRACEBOX-READY m\n\0TRACEBOX-GO m\nout\0put\0\0TRACEBOX-END m 3 0 4\nTAR!\0TRACEBOX-READY m\n\0TRACEBOX-GO m\nnext";

    fn expected() -> Vec<Out> {
        vec![
            Out::Ready,
            Out::Started,
            Out::Program(Bytes::from_static(b"out\0put\0")),
            Out::Ended(End { status: Some(3), oom_kills: Some(0), tar_bytes: 4 }),
            Out::Tar(Bytes::from_static(b"TAR!")),
            Out::TarDone,
            Out::Ready,
            Out::Started,
            Out::Program(Bytes::from_static(b"next")),
        ]
    }

    #[test]
    fn a_stream_of_runs_is_sorted_whatever_the_chunks_cut_it_into() {
        for cut in 0..STREAM.len() {
            for second in cut..STREAM.len() {
                let mut scanner = StdoutScanner::new("m");
                let pieces = [&STREAM[..cut], &STREAM[cut..second], &STREAM[second..]];
                assert_eq!(scan_all(&mut scanner, &pieces), expected(), "cut at {cut} and {second}");
            }
        }
    }

    #[test]
    fn another_marker_is_program_output_and_no_tar_means_done_at_once() {
        let mut scanner = StdoutScanner::new("m");
        let out = scan_all(
            &mut scanner,
            &[b"\0TRACEBOX-READY m\n\0TRACEBOX-GO m\nx\0TRACEBOX-END zz 0 0 0\n", b"\0TRACEBOX-END m 0 -1 0\n"],
        );
        assert_eq!(
            out,
            [
                Out::Ready,
                Out::Started,
                Out::Program(Bytes::from_static(b"x\0TRACEBOX-END zz 0 0 0\n")),
                Out::Ended(End { status: Some(0), oom_kills: None, tar_bytes: 0 }),
                Out::TarDone,
            ]
        );
    }

    #[test]
    fn a_tail_held_back_is_released_at_the_end_of_the_stream() {
        let mut scanner = StdoutScanner::new("m");
        let out = scan_all(&mut scanner, &[b"\0TRACEBOX-READY m\n\0TRACEBOX-GO m\nprompt\0TRACE"]);
        assert_eq!(out, [Out::Ready, Out::Started, Out::Program(Bytes::from_static(b"prompt"))]);
        assert_eq!(scanner.finish().as_deref(), Some(&b"\0TRACE"[..]));
    }

    #[test]
    fn stderr_ends_at_its_own_line() {
        let mut stderr = StderrScanner::new("m");
        assert_eq!(stderr.scan(Bytes::from_static(b"oops\n\0TRACEBOX-E")).as_deref(), Some(&b"oops\n"[..]));
        assert!(!stderr.ended());
        assert_eq!(stderr.scan(Bytes::from_static(b"ND m\n")), None);
        assert!(stderr.ended());
        stderr.reset();
        assert_eq!(stderr.scan(Bytes::from_static(b"again")).as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn frames_carry_their_lengths() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let frame = program_frame("print('é')", &env, Duration::from_secs(2));
        let text = String::from_utf8(frame).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let length: usize = head.strip_prefix("P ").unwrap().parse().unwrap();
        let header: serde_json::Value = serde_json::from_str(&rest[..length]).unwrap();
        assert_eq!(header, json!({"code": 11, "env": {"A": "1"}, "timeout": 2.0}));
        assert_eq!(&rest[length..], "print('é')");
        assert_eq!(stdin_frame(b"abc"), b"D 3\nabc");
        assert!(stdin_frame(b"").is_empty());
        assert_ne!(new_marker(), new_marker());
    }
}
