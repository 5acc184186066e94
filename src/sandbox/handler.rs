//! Handler mode's result channel: what a runner hands back when its handler returned or raised,
//! and how tracebox reads it.
//!
//! The program process gets a pipe of its own for it (its fd 4, which the runner moves to a
//! close-on-exec descriptor before any user code runs, so that no child process inherits it and
//! nothing written to fd 4 reaches it). The supervisor relays what comes on it as `v` frames, up
//! to the channel's limit, apart from the program's stdout and stderr: nothing a program prints
//! can be taken for a result. The runner writes one message, then closes it:
//!
//! ```text
//! <key><kind: r (result) or e (error)><payload length, decimal>\n<payload: JSON>
//! ```
//!
//! The key is a secret of the run's, made here and given to the runner with the program, so
//! that bytes something else wrote on the pipe (a blind write to every descriptor) are seen for
//! what they are. Anything but one whole message, the key first, makes the result untrusted: a
//! `Runtime.BadChannel` error. What the key cannot stop is said in docs/security.md: the
//! handler's own code shares the runner's process, and may find the pipe and the key there; it
//! can then write what it likes as its result, which is no more than returning it.

use tracebox_model::handler::error_type;
use tracebox_model::{HandlerError, HandlerOutcome};

use super::protocol::HandlerFrame;

/// Room on the channel besides the result: the key, the kind and length, and an error's
/// message and stack, which the runners keep under 48 KiB of JSON.
pub const CHANNEL_SLACK: u64 = 64 * 1024;

/// The most bytes of the channel the supervisor relays, and tracebox keeps, for a result of at
/// most `result_limit` bytes (one more tells that more came).
pub fn channel_limit(result_limit: u64) -> u64 {
    result_limit.saturating_add(CHANNEL_SLACK)
}

/// A new key for one run's channel.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What came on one run's channel, up to its limit.
pub struct Channel {
    key: String,
    result_limit: u64,
    /// Bytes that may still be kept.
    room: u64,
    bytes: Vec<u8>,
    /// More came than the limit.
    over: bool,
}

impl Channel {
    pub fn of(call: &HandlerFrame<'_>) -> Channel {
        Channel {
            key: call.key.to_owned(),
            result_limit: call.result_limit,
            room: call.channel_limit,
            bytes: Vec::new(),
            over: false,
        }
    }

    /// Keep `bytes` (a `v` frame's), unless they take the channel past its limit.
    pub fn take(&mut self, bytes: &[u8]) {
        if bytes.len() as u64 > self.room {
            self.over = true;
            self.room = 0;
            return;
        }
        self.room -= bytes.len() as u64;
        self.bytes.extend_from_slice(bytes);
    }

    /// What it carried, read ([`decode`]).
    pub fn outcome(self) -> Option<HandlerOutcome> {
        decode(&self.bytes, self.over, &self.key, self.result_limit)
    }
}

/// What the channel carried, as an outcome; None when it carried nothing (the program ended,
/// or was stopped, before its handler returned). `over` says more came than `channel_limit`.
pub fn decode(channel: &[u8], over: bool, key: &str, result_limit: u64) -> Option<HandlerOutcome> {
    if channel.is_empty() && !over {
        return None;
    }
    let bad = |why: &str| {
        Some(HandlerOutcome::error(
            error_type::BAD_CHANNEL,
            format!(
                "something other than tracebox's runner wrote to the handler's result channel ({why}), so no result \
                 it carried can be trusted"
            ),
        ))
    };
    if over {
        return bad(&format!("more than {} bytes", channel_limit(result_limit)));
    }
    let Some(message) = channel.strip_prefix(key.as_bytes()) else {
        return bad("it did not start with the run's key");
    };
    let Some((&kind, rest)) = message.split_first() else { return bad("a message with no kind") };
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else { return bad("a message with no length") };
    let length = std::str::from_utf8(&rest[..newline]).ok().and_then(|n| n.parse::<usize>().ok());
    let payload = &rest[newline + 1..];
    if length != Some(payload.len()) {
        return bad("a message whose length is not what it says, or more than one message");
    }
    match kind {
        b'r' if payload.len() as u64 > result_limit => Some(too_large(payload.len(), result_limit)),
        b'r' => Some(match serde_json::from_slice(payload) {
            Ok(value) => HandlerOutcome::Result(value),
            Err(error) => HandlerOutcome::error(
                error_type::MARSHAL_ERROR,
                format!("the handler's result is not valid JSON: {error}"),
            ),
        }),
        b'e' => match serde_json::from_slice::<HandlerError>(payload) {
            Ok(error) => Some(HandlerOutcome::Error(error)),
            Err(_) => bad("an error that is not one"),
        },
        _ => bad("a message of an unknown kind"),
    }
}

/// The error of a result over the limit (the runners say the same in the same words).
pub fn too_large(size: usize, limit: u64) -> HandlerOutcome {
    HandlerOutcome::error(
        error_type::RESULT_TOO_LARGE,
        format!("the handler's result is {size} bytes of JSON; the limit is {limit} bytes (TRACEBOX_MAX_RESULT_BYTES)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn message(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = KEY.as_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(format!("{}\n", payload.len()).as_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn kind_of(outcome: Option<HandlerOutcome>) -> String {
        match outcome {
            Some(HandlerOutcome::Error(error)) => error.kind,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_result_and_an_error_read_back() {
        let result = decode(&message(b'r', br#"{"a":[1,"\u00e9"]}"#), false, KEY, 100);
        assert_eq!(result, Some(HandlerOutcome::Result(json!({"a": [1, "é"]}))));
        assert_eq!(decode(&message(b'r', b"null"), false, KEY, 100), Some(HandlerOutcome::Result(json!(null))));
        let raised = r#"{"type": "ValueError", "message": "no", "stack": "Traceback…"}"#;
        let error = decode(&message(b'e', raised.as_bytes()), false, KEY, 100);
        let expected = HandlerError { kind: "ValueError".into(), message: "no".into(), stack: "Traceback…".into() };
        assert_eq!(error, Some(HandlerOutcome::Error(expected)));
    }

    #[test]
    fn nothing_on_the_channel_is_no_outcome() {
        assert_eq!(decode(b"", false, KEY, 100), None);
    }

    #[test]
    fn a_result_at_the_limit_passes_and_one_byte_over_does_not() {
        let at = format!("\"{}\"", "x".repeat(8));
        assert_eq!(
            decode(&message(b'r', at.as_bytes()), false, KEY, 10),
            Some(HandlerOutcome::Result(json!("xxxxxxxx")))
        );
        let over = format!("\"{}\"", "x".repeat(9));
        assert_eq!(kind_of(decode(&message(b'r', over.as_bytes()), false, KEY, 10)), error_type::RESULT_TOO_LARGE);
    }

    #[test]
    fn bytes_without_the_key_or_around_the_message_are_a_bad_channel() {
        let forged = [b"ffffffffffffffffffffffffffffffff".as_slice(), b"r2\n{}"].concat();
        assert_eq!(kind_of(decode(&forged, false, KEY, 100)), error_type::BAD_CHANNEL);
        let junk_first = [b"junk".as_slice(), &message(b'r', b"1")].concat();
        assert_eq!(kind_of(decode(&junk_first, false, KEY, 100)), error_type::BAD_CHANNEL);
        let twice = [message(b'r', b"1"), message(b'r', b"2")].concat();
        assert_eq!(kind_of(decode(&twice, false, KEY, 100)), error_type::BAD_CHANNEL);
        assert_eq!(kind_of(decode(&message(b'r', b"1"), true, KEY, 100)), error_type::BAD_CHANNEL);
        assert_eq!(kind_of(decode(&message(b'x', b"1"), false, KEY, 100)), error_type::BAD_CHANNEL);
        assert_eq!(kind_of(decode(&message(b'e', b"[]"), false, KEY, 100)), error_type::BAD_CHANNEL);
        assert_eq!(kind_of(decode(KEY.as_bytes(), false, KEY, 100)), error_type::BAD_CHANNEL);
    }

    #[test]
    fn a_result_that_is_not_json_is_a_marshal_error() {
        // Node's JSON.stringify writes a lone surrogate as an escape that is not Unicode.
        let outcome = decode(&message(b'r', br#""\ud800""#), false, KEY, 100);
        assert_eq!(kind_of(outcome), error_type::MARSHAL_ERROR);
    }

    #[test]
    fn a_channel_keeps_up_to_its_limit_and_knows_when_more_came() {
        let call = HandlerFrame {
            name: "h",
            event: "null",
            key: KEY,
            request_id: "t",
            memory_mb: 64,
            result_limit: 10,
            channel_limit: 48,
        };
        let whole = message(b'r', b"[1,2]");
        let mut channel = Channel::of(&call);
        channel.take(&whole[..20]);
        channel.take(&whole[20..]);
        assert_eq!(channel.outcome(), Some(HandlerOutcome::Result(json!([1, 2]))), "a message in two frames");
        let mut channel = Channel::of(&call);
        channel.take(&[b'x'; 48]);
        channel.take(b"y");
        assert_eq!(kind_of(channel.outcome()), error_type::BAD_CHANNEL, "one byte past the limit");
    }

    #[test]
    fn keys_differ_from_run_to_run() {
        assert_ne!(new_key(), new_key());
        assert_eq!(new_key().len(), 32);
    }
}
