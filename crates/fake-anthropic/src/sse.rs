//! The streamed form of a [`Message`] (ANTHROPIC.md §4), made from the same message the
//! non-streaming call returns, so both assemble to the same result; and the paced body that
//! sends it, with the faults the directives ask for (a mid-stream error, a cut, slow tokens).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

use super::reply::{ContentBlock, Message};

/// Characters of text per `text_delta`, or of JSON per `input_json_delta`.
const PIECE_CHARS: usize = 16;

/// How long a cut waits before it cuts, so that what was sent before it is flushed to the
/// socket first (the server drops its write buffer with the connection).
const FLUSH_GRACE: Duration = Duration::from_millis(30);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Event {
    pub name: &'static str,
    pub data: Value,
}

impl Event {
    fn new(name: &'static str, data: Value) -> Event {
        Event { name, data }
    }

    fn is_delta(&self) -> bool {
        self.name == "content_block_delta"
    }

    /// The wire form: `event: <name>\ndata: <json>\n\n`.
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

/// The whole event sequence of `message`, from `message_start` to `message_stop`.
pub(super) fn events(message: &Message) -> Vec<Event> {
    let mut start = message.clone();
    start.content = Vec::new();
    start.stop_reason = None;
    start.stop_sequence = None;
    start.usage.output_tokens = 1;
    let mut events = vec![Event::new("message_start", json!({"type": "message_start", "message": start}))];
    for (index, block) in message.content.iter().enumerate() {
        let (empty, deltas) = match block {
            ContentBlock::Text { text } => (
                json!({"type": "text", "text": ""}),
                pieces(text).into_iter().map(|text| json!({"type": "text_delta", "text": text})).collect(),
            ),
            ContentBlock::ToolUse { id, name, input } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                json_pieces(&input.to_string())
                    .into_iter()
                    .map(|partial| json!({"type": "input_json_delta", "partial_json": partial}))
                    .collect::<Vec<_>>(),
            ),
        };
        events.push(Event::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": empty}),
        ));
        if index == 0 {
            events.push(Event::new("ping", json!({"type": "ping"})));
        }
        for delta in deltas {
            events.push(Event::new(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(Event::new("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    let usage = message.usage;
    events.push(Event::new(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence},
            // Cumulative, as the API sends it: a client replaces its counts with these.
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
            },
        }),
    ));
    events.push(Event::new("message_stop", json!({"type": "message_stop"})));
    events
}

/// `text` in pieces of [`PIECE_CHARS`] characters (never inside one).
fn pieces(text: &str) -> Vec<&str> {
    pieces_of(text, PIECE_CHARS)
}

/// Tool input JSON as the API streams it: an empty fragment first, then at least three.
fn json_pieces(json: &str) -> Vec<&str> {
    let size = json.chars().count().div_ceil(3).clamp(1, PIECE_CHARS);
    let mut fragments = vec![""];
    fragments.extend(pieces_of(json, size));
    fragments
}

fn pieces_of(text: &str, size: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let at = rest.char_indices().nth(size).map_or(rest.len(), |(at, _)| at);
        let (piece, after) = rest.split_at(at);
        pieces.push(piece);
        rest = after;
    }
    pieces
}

/// The faults and pace of one stream, from the directives.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pacing {
    pub midstream_error: Option<usize>,
    pub drop: Option<usize>,
    pub slow_tokens: Option<Duration>,
}

/// What the body does next.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Send(Bytes),
    Wait(Duration),
    /// End the body with an error: the connection closes and the body is never terminated.
    Cut,
}

/// The steps that send `events` with `pacing`.
pub(super) fn plan(events: Vec<Event>, pacing: Pacing) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    let (mut sent, mut deltas) = (0, 0);
    for event in events {
        if pacing.drop == Some(sent) {
            steps.push_back(Step::Cut);
            return steps;
        }
        let content_done = event.name == "message_delta";
        if let Some(limit) = pacing.midstream_error
            && (deltas == limit && event.is_delta() || content_done)
        {
            let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
            steps.push_back(Step::Send(Event::new("error", error).encode()));
            return steps;
        }
        if event.is_delta() {
            if deltas > 0
                && let Some(pause) = pacing.slow_tokens
            {
                steps.push_back(Step::Wait(pause));
            }
            deltas += 1;
        }
        steps.push_back(Step::Send(event.encode()));
        sent += 1;
    }
    if pacing.drop.is_some() {
        // Asked to cut after more events than there are: cut before the body's clean end.
        steps.push_back(Step::Cut);
    }
    steps
}

/// The steps of a JSON body cut in the middle: its first half, then the cut.
pub(super) fn half_then_cut(body: Bytes) -> VecDeque<Step> {
    VecDeque::from([Step::Send(body.slice(..body.len() / 2)), Step::Cut])
}

/// A response body that carries out `steps`, each piece sent as soon as it is due.
pub(super) fn body(steps: VecDeque<Step>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(steps, |mut steps| async move {
        loop {
            match steps.pop_front()? {
                Step::Wait(pause) => tokio::time::sleep(pause).await,
                Step::Send(bytes) => return Some((Ok(bytes), steps)),
                Step::Cut => {
                    tokio::time::sleep(FLUSH_GRACE).await;
                    steps.clear();
                    let cut =
                        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "[fake:drop] cut the connection");
                    return Some((Err(cut), steps));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_is_split_into_pieces_of_sixteen_characters_never_inside_one() {
        let text = format!("{}{}", "a".repeat(15), "é".repeat(3));
        assert_eq!(pieces(&text), [format!("{}é", "a".repeat(15)).as_str(), "éé"]);
        assert!(pieces("").is_empty());
    }

    #[test]
    fn tool_input_is_streamed_as_an_empty_fragment_then_at_least_three() {
        let json = r#"{"code":"print(1)"}"#;
        let fragments = json_pieces(json);
        assert_eq!(fragments[0], "");
        assert!(fragments.len() >= 4, "{fragments:?}");
        assert_eq!(fragments.concat(), json);
    }

    fn event(name: &'static str) -> Event {
        Event::new(name, json!({"type": name}))
    }

    fn names(steps: &VecDeque<Step>) -> Vec<String> {
        steps
            .iter()
            .map(|step| match step {
                Step::Send(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    text.lines().next().unwrap().trim_start_matches("event: ").to_owned()
                }
                Step::Wait(_) => "wait".to_owned(),
                Step::Cut => "cut".to_owned(),
            })
            .collect()
    }

    fn sequence() -> Vec<Event> {
        ["message_start", "content_block_start", "ping"]
            .into_iter()
            .chain(["content_block_delta"; 3])
            .chain(["content_block_stop", "message_delta", "message_stop"])
            .map(event)
            .collect()
    }

    #[test]
    fn a_midstream_error_follows_the_kth_delta_and_ends_the_stream() {
        let steps = plan(sequence(), Pacing { midstream_error: Some(2), ..Pacing::default() });
        let expected = ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"];
        assert_eq!(names(&steps), [&expected[..], &["error"]].concat());
    }

    #[test]
    fn a_drop_cuts_after_k_events() {
        let steps = plan(sequence(), Pacing { drop: Some(2), ..Pacing::default() });
        assert_eq!(names(&steps), ["message_start", "content_block_start", "cut"]);
    }

    #[test]
    fn slow_tokens_wait_between_deltas() {
        let pause = Duration::from_millis(5);
        let steps = plan(sequence(), Pacing { slow_tokens: Some(pause), ..Pacing::default() });
        let waits = names(&steps).iter().filter(|name| *name == "wait").count();
        assert_eq!(waits, 2);
    }
}
