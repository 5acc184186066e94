//! The supervisor's protocol (`sandbox/supervise.py`): the frames tracebox writes on a
//! container's stdin, and the frames the supervisor writes on its stdout.
//!
//! ```text
//! stdin   P <n>\n<JSON {"code", "env", "timeout", "handler"?}><code><event>
//!         D <n>\n<stdin bytes>   E\n
//! stdout  <kind: 1 byte><length: u32, big-endian><payload>
//!         R ready for a program     G took the program    o / e the program's stdout / stderr
//!         v bytes of the handler's result channel (handler mode; see `handler.rs`)
//!         X ended: `<status> <oom kills or -1>`           A bytes of the tar of /workspace/out
//!         Z the tar is whole
//! ```
//!
//! Only the supervisor writes to the container's stdout: a program writes to pipes of its own,
//! which the supervisor relays as `o` and `e` frames, and holds no descriptor of the channel
//! (the supervisor is PID 1 and not dumpable, so none can open its descriptors through /proc
//! either). Whatever a program prints is payload; nothing it writes or reads can forge, swallow
//! or steal a frame, so no secret marker is needed. The container's stderr carries only the
//! supervisor's own trouble.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use serde_json::json;

/// Kind byte and length before every frame's payload.
const HEADER: usize = 5;
/// The longest payload the supervisor writes (it reads and sends 64 KiB at most); a longer
/// one means the channel is not what it should be.
const MAX_PAYLOAD: usize = 1 << 20;

/// A handler call as the supervisor hands it to the program process (handler mode).
#[derive(Debug, Clone, Copy)]
pub struct HandlerFrame<'a> {
    pub name: &'a str,
    /// The event as JSON text.
    pub event: &'a str,
    /// What the runner writes first on the result's channel: a secret of this run's, so that
    /// nothing else that writes there (by fd number, say) passes for the runner.
    pub key: &'a str,
    /// `context.request_id`: the run's trace id.
    pub request_id: &'a str,
    pub memory_mb: u64,
    /// The most bytes of JSON the result may be (the runner refuses more).
    pub result_limit: u64,
    /// The most bytes of the result's channel the supervisor relays (past them, it drops them).
    pub channel_limit: u64,
}

/// The frame that hands a program to the supervisor; in handler mode its event follows its code.
pub fn program_frame(
    code: &str,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    handler: Option<&HandlerFrame<'_>>,
) -> Vec<u8> {
    let mut header = json!({ "code": code.len(), "env": env, "timeout": timeout.as_secs_f64() });
    if let Some(call) = handler {
        header["handler"] = json!({
            "name": call.name,
            "event": call.event.len(),
            "key": call.key,
            "request_id": call.request_id,
            "memory_mb": call.memory_mb,
            "result_limit": call.result_limit,
            "channel_limit": call.channel_limit,
        });
    }
    let header = header.to_string();
    let mut frame = format!("P {}\n{header}", header.len()).into_bytes();
    frame.extend_from_slice(code.as_bytes());
    if let Some(call) = handler {
        frame.extend_from_slice(call.event.as_bytes());
    }
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
    /// The exit code (128 + the signal of a program killed by one).
    pub status: i64,
    /// OOM kills in the container while it ran; None when the supervisor could not tell.
    pub oom_kills: Option<u64>,
}

/// One frame of a container's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// The supervisor is ready for a program.
    Ready,
    /// The supervisor took the program: its output may follow.
    Started,
    /// The program's stdout.
    Stdout(Bytes),
    /// The program's stderr.
    Stderr(Bytes),
    /// Bytes of the handler's result channel.
    Result(Bytes),
    /// The program ended.
    Ended(End),
    /// Bytes of the artifacts' tar.
    Tar(Bytes),
    /// The tar is whole.
    TarDone,
}

/// The channel carried something the supervisor never writes: the container cannot be trusted
/// with a run any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sandbox's channel carried {0}")]
pub struct Garbled(String);

impl Garbled {
    /// The channel carried `what`.
    pub fn new(what: &str) -> Garbled {
        Garbled(what.to_owned())
    }
}

/// A container's stdout cut into frames, across chunks and across the runs of a recycled
/// container.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// The start of a frame whose rest has not come yet.
    held: BytesMut,
}

impl FrameReader {
    /// The whole frames that `chunk` completes, in order, as a one-shot supervisor writes them.
    pub fn feed(&mut self, chunk: Bytes) -> Result<Vec<Out>, Garbled> {
        self.feed_raw(chunk)?.into_iter().map(|(kind, payload)| decode(kind, payload)).collect()
    }

    /// The whole frames that `chunk` completes, in order, as (kind, payload).
    pub fn feed_raw(&mut self, chunk: Bytes) -> Result<Vec<(u8, Bytes)>, Garbled> {
        let mut data = if self.held.is_empty() {
            chunk
        } else {
            self.held.extend_from_slice(&chunk);
            self.held.split().freeze()
        };
        let mut frames = Vec::new();
        while data.len() >= HEADER {
            let kind = data[0];
            let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            if length > MAX_PAYLOAD {
                return Err(Garbled(format!("a frame of {length} bytes")));
            }
            if data.len() < HEADER + length {
                break;
            }
            data.advance(HEADER);
            frames.push((kind, data.split_to(length)));
        }
        self.held.extend_from_slice(&data);
        Ok(frames)
    }
}

fn decode(kind: u8, payload: Bytes) -> Result<Out, Garbled> {
    let empty = |out: Out| match payload.is_empty() {
        true => Ok(out),
        false => Err(Garbled(format!("a {} frame with a payload", char::from(kind)))),
    };
    match kind {
        b'R' => empty(Out::Ready),
        b'G' => empty(Out::Started),
        b'Z' => empty(Out::TarDone),
        b'o' => Ok(Out::Stdout(payload)),
        b'e' => Ok(Out::Stderr(payload)),
        b'v' => Ok(Out::Result(payload)),
        b'A' => Ok(Out::Tar(payload)),
        b'X' => parse_end(&payload).map(Out::Ended),
        other => Err(Garbled(format!("a frame of unknown kind {other:#04x}"))),
    }
}

/// `<status> <oom kills, or -1>`.
fn parse_end(payload: &[u8]) -> Result<End, Garbled> {
    let garbled = || Garbled(format!("an end frame {:?}", String::from_utf8_lossy(payload)));
    let text = std::str::from_utf8(payload).map_err(|_| garbled())?;
    let (status, oom_kills) = text.split_once(' ').ok_or_else(garbled)?;
    let status = status.parse::<i64>().map_err(|_| garbled())?;
    let oom_kills = oom_kills.parse::<i64>().map_err(|_| garbled())?;
    Ok(End { status, oom_kills: u64::try_from(oom_kills).ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![kind];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn stream() -> Vec<u8> {
        [
            frame(b'R', b""),
            frame(b'G', b""),
            frame(b'o', b"out\0put"),
            frame(b'e', b"oops"),
            frame(b'v', b"KEYr2\n{}"),
            frame(b'X', b"3 0"),
            frame(b'A', b"TAR!"),
            frame(b'Z', b""),
            frame(b'R', b""),
        ]
        .concat()
    }

    fn expected() -> Vec<Out> {
        vec![
            Out::Ready,
            Out::Started,
            Out::Stdout(Bytes::from_static(b"out\0put")),
            Out::Stderr(Bytes::from_static(b"oops")),
            Out::Result(Bytes::from_static(b"KEYr2\n{}")),
            Out::Ended(End { status: 3, oom_kills: Some(0) }),
            Out::Tar(Bytes::from_static(b"TAR!")),
            Out::TarDone,
            Out::Ready,
        ]
    }

    #[test]
    fn a_stream_of_runs_is_cut_into_frames_whatever_the_chunks_cut_it_into() {
        let stream = stream();
        for cut in 0..stream.len() {
            for second in cut..stream.len() {
                let mut reader = FrameReader::default();
                let mut out = Vec::new();
                for piece in [&stream[..cut], &stream[cut..second], &stream[second..]] {
                    out.extend(reader.feed(Bytes::copy_from_slice(piece)).unwrap());
                }
                assert_eq!(out, expected(), "cut at {cut} and {second}");
            }
        }
    }

    #[test]
    fn what_a_program_prints_is_payload_however_it_looks() {
        let forged = [frame(b'X', b"0 0"), frame(b'Z', b""), b"\0TRACEBOX-END m 0 0 0\n".to_vec()].concat();
        let mut reader = FrameReader::default();
        let out = reader.feed(Bytes::from(frame(b'o', &forged))).unwrap();
        assert_eq!(out, [Out::Stdout(Bytes::from(forged))]);
    }

    #[test]
    fn an_unknown_unlikely_or_malformed_frame_is_garbled() {
        for bad in
            [frame(b'?', b""), frame(b'R', b"x"), frame(b'X', b"zero 0"), frame(b'X', b"0"), vec![b'o', 0xff, 0, 0, 0]]
        {
            assert!(FrameReader::default().feed(Bytes::from(bad.clone())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_oom_count_is_none() {
        let out = FrameReader::default().feed(Bytes::from(frame(b'X', b"137 -1"))).unwrap();
        assert_eq!(out, [Out::Ended(End { status: 137, oom_kills: None })]);
    }

    #[test]
    fn a_frame_is_held_until_its_rest_comes() {
        let mut reader = FrameReader::default();
        let whole = frame(b'o', b"abc");
        assert!(reader.feed(Bytes::copy_from_slice(&whole[..6])).unwrap().is_empty());
        assert_eq!(reader.feed(Bytes::copy_from_slice(&whole[6..])).unwrap(), [Out::Stdout(Bytes::from("abc"))]);
    }

    #[test]
    fn requests_carry_their_lengths() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let frame = program_frame("print('é')", &env, Duration::from_secs(2), None);
        let text = String::from_utf8(frame).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let length: usize = head.strip_prefix("P ").unwrap().parse().unwrap();
        let header: serde_json::Value = serde_json::from_str(&rest[..length]).unwrap();
        assert_eq!(header, json!({"code": 11, "env": {"A": "1"}, "timeout": 2.0}));
        assert_eq!(&rest[length..], "print('é')");
        assert_eq!(stdin_frame(b"abc"), b"D 3\nabc");
        let call = HandlerFrame {
            name: "handler",
            event: r#"{"é":1}"#,
            key: "k",
            request_id: "t",
            memory_mb: 64,
            result_limit: 10,
            channel_limit: 20,
        };
        let frame = program_frame("def handler(e, c): pass", &env, Duration::from_secs(2), Some(&call));
        let text = String::from_utf8(frame).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let length: usize = head.strip_prefix("P ").unwrap().parse().unwrap();
        let header: serde_json::Value = serde_json::from_str(&rest[..length]).unwrap();
        assert_eq!(header["handler"]["event"], 8, "the event's length in bytes");
        assert_eq!(header["handler"]["channel_limit"], 20);
        assert_eq!(&rest[length..], r#"def handler(e, c): pass{"é":1}"#, "the event right after the code");
        assert!(stdin_frame(b"").is_empty());
    }
}
