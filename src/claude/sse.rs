//! Streaming replies: server-sent events decoded as they arrive, and the Messages API's event
//! sequence (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
//! `error`) assembled into the same [`Reply`] a non-streaming call returns.

use std::collections::BTreeMap;

use serde_json::Value;

use tracebox_model::Usage;

use super::messages::{Block, Reply};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Splits a byte stream into events: `event:` and `data:` lines, a blank line ends an event;
/// `\n`, `\r\n` or `\r` end lines; comments (`:`), `id:` and `retry:` are ignored.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    name: String,
    data: Vec<String>,
}

impl Decoder {
    /// The events `bytes` complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let byte = self.pending[i];
            if byte != b'\n' && byte != b'\r' {
                i += 1;
                continue;
            }
            // A `\r` at the very end may be the first half of `\r\n`: wait for more.
            if byte == b'\r' && i + 1 == self.pending.len() {
                break;
            }
            let line = String::from_utf8_lossy(&self.pending[start..i]).into_owned();
            i += if byte == b'\r' && self.pending[i + 1] == b'\n' { 2 } else { 1 };
            start = i;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.drain(..start);
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if self.data.is_empty() && self.name.is_empty() {
                return None;
            }
            let name = std::mem::take(&mut self.name);
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(Event { name: if name.is_empty() { "message".to_owned() } else { name }, data });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// The stream failed in a way a client must hear about (never silently truncated).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamError {
    /// An `error` event: Anthropic's type and message.
    #[error("{kind}: {message}")]
    Api { kind: String, message: String },
    /// An event whose data is not the JSON it should be.
    #[error("a `{event}` event is malformed: {detail}")]
    Malformed { event: String, detail: String },
    /// The stream ended before `message_stop`.
    #[error("the stream ended before message_stop, after {deltas} deltas")]
    Incomplete { deltas: usize },
    /// The stream broke off: the connection failed, or went silent too long.
    #[error("{detail}, after {deltas} deltas")]
    Lost { detail: String, deltas: usize },
}

/// A block being assembled.
enum Partial {
    Text(String),
    ToolUse { id: String, name: String, json: String },
    Other(String),
}

/// The reply so far.
#[derive(Default)]
pub struct Assembler {
    message: Option<Reply>,
    blocks: BTreeMap<u64, Partial>,
    stopped: bool,
    /// Text and tool-input deltas received.
    pub deltas: usize,
}

impl Assembler {
    /// Apply one event; returns the text it adds, if any.
    pub fn apply(&mut self, event: &Event) -> Result<Option<String>, StreamError> {
        let parse = || {
            serde_json::from_str::<Value>(&event.data)
                .map_err(|e| StreamError::Malformed { event: event.name.clone(), detail: e.to_string() })
        };
        let malformed = |detail: &str| StreamError::Malformed { event: event.name.clone(), detail: detail.to_owned() };
        match event.name.as_str() {
            "message_start" => {
                let data = parse()?;
                let mut message: Reply = serde_json::from_value(data.get("message").cloned().unwrap_or_default())
                    .map_err(|e| malformed(&e.to_string()))?;
                message.content.clear();
                self.message = Some(message);
            }
            "content_block_start" => {
                let data = parse()?;
                let index = data.get("index").and_then(Value::as_u64).ok_or_else(|| malformed("no index"))?;
                let block = data.get("content_block").cloned().unwrap_or_default();
                let partial = match Block::from_value(block.clone()) {
                    Block::Text { text } => Partial::Text(text),
                    Block::ToolUse { id, name, .. } => Partial::ToolUse { id, name, json: String::new() },
                    Block::Other { r#type } => Partial::Other(r#type),
                };
                self.blocks.insert(index, partial);
            }
            "content_block_delta" => {
                let data = parse()?;
                let index = data.get("index").and_then(Value::as_u64).ok_or_else(|| malformed("no index"))?;
                let delta = data.get("delta").cloned().unwrap_or_default();
                let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                match (self.blocks.get_mut(&index), delta.get("type").and_then(Value::as_str)) {
                    (Some(Partial::Text(buffer)), Some("text_delta")) => {
                        let piece = text("text");
                        buffer.push_str(&piece);
                        self.deltas += 1;
                        return Ok(Some(piece));
                    }
                    (Some(Partial::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(&text("partial_json"));
                        self.deltas += 1;
                    }
                    (None, _) => return Err(malformed("a delta for a block that never started")),
                    // Thinking, signatures, citations: not used here.
                    _ => {}
                }
            }
            "message_delta" => {
                let data = parse()?;
                let message = self.message.as_mut().ok_or_else(|| malformed("before message_start"))?;
                let delta = data.get("delta").cloned().unwrap_or_default();
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    message.stop_reason = Some(reason.to_owned());
                }
                if let Some(sequence) = delta.get("stop_sequence").and_then(Value::as_str) {
                    message.stop_sequence = Some(sequence.to_owned());
                }
                if let Some(usage) = data.get("usage") {
                    update_usage(&mut message.usage, usage);
                }
            }
            "message_stop" => self.stopped = true,
            "error" => {
                let data = parse()?;
                let error = data.get("error").cloned().unwrap_or_default();
                let field = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("unknown").to_owned();
                return Err(StreamError::Api { kind: field("type"), message: field("message") });
            }
            // `ping`, `content_block_stop` (blocks are finished at the end) and event types
            // added later: nothing to do.
            _ => {}
        }
        Ok(None)
    }

    /// Did `message_stop` come? Nothing after it is read.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The whole reply, once `message_stop` came.
    pub fn finish(self) -> Result<Reply, StreamError> {
        let incomplete = StreamError::Incomplete { deltas: self.deltas };
        let (Some(mut message), true) = (self.message, self.stopped) else { return Err(incomplete) };
        message.content = self
            .blocks
            .into_values()
            .map(|partial| match partial {
                Partial::Text(text) => Block::Text { text },
                Partial::ToolUse { id, name, json } => {
                    let input = if json.trim().is_empty() {
                        Value::Object(Default::default())
                    } else {
                        serde_json::from_str(&json).unwrap_or(Value::String(json))
                    };
                    Block::ToolUse { id, name, input }
                }
                Partial::Other(r#type) => Block::Other { r#type },
            })
            .collect();
        Ok(message)
    }
}

/// Take the counts present in a streamed `usage` (they are cumulative: replace, never add).
fn update_usage(usage: &mut Usage, partial: &Value) {
    let set = |key: &str, field: &mut u64| {
        if let Some(n) = partial.get(key).and_then(Value::as_u64) {
            *field = n;
        }
    };
    set("input_tokens", &mut usage.input_tokens);
    set("output_tokens", &mut usage.output_tokens);
    set("cache_creation_input_tokens", &mut usage.cache_creation_input_tokens);
    set("cache_read_input_tokens", &mut usage.cache_read_input_tokens);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_usage_replaces_the_counts_it_carries() {
        let mut usage = Usage { input_tokens: 10, output_tokens: 1, ..Usage::default() };
        update_usage(&mut usage, &serde_json::json!({"output_tokens": 42}));
        assert_eq!((usage.input_tokens, usage.output_tokens), (10, 42));
    }

    /// The SDK's own fixture, `basic_response.txt`, with a ping after the block's start.
    const BASIC: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-opus-latest\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":6}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn assemble(chunks: &[&[u8]]) -> (Result<Reply, StreamError>, String) {
        let mut decoder = Decoder::default();
        let mut assembler = Assembler::default();
        let mut text = String::new();
        for chunk in chunks {
            for event in decoder.push(chunk) {
                match assembler.apply(&event) {
                    Ok(piece) => text.push_str(&piece.unwrap_or_default()),
                    Err(error) => return (Err(error), text),
                }
            }
        }
        (assembler.finish(), text)
    }

    #[test]
    fn the_basic_fixture_assembles_into_one_message_whatever_the_chunking() {
        let bytes = BASIC.as_bytes();
        for size in [1, 2, 7, 64, bytes.len()] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            let (reply, text) = assemble(&chunks);
            let reply = reply.unwrap();
            assert_eq!((reply.text(), text.as_str()), ("Hello".to_owned(), "Hello"), "chunks of {size}");
            assert_eq!(reply.stop_reason.as_deref(), Some("end_turn"));
            assert_eq!((reply.usage.input_tokens, reply.usage.output_tokens), (11, 6));
        }
    }

    #[test]
    fn crlf_line_ends_and_comments_are_understood() {
        let crlf = BASIC.replace('\n', "\r\n");
        let with_comment = format!(": keep-alive\r\n\r\n{crlf}");
        let (reply, _) = assemble(&[with_comment.as_bytes()]);
        assert_eq!(reply.unwrap().text(), "Hello");
    }

    #[test]
    fn tool_input_json_is_joined_from_its_fragments() {
        let stream = r#"event: message_start
data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"x","stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"locati"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"on\": \"Paris\"}"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}

event: message_stop
data: {"type":"message_stop"}

"#;
        let reply = assemble(&[stream.as_bytes()]).0.unwrap();
        assert_eq!(
            reply.content,
            [Block::ToolUse {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                input: serde_json::json!({"location": "Paris"})
            }]
        );
    }

    #[test]
    fn an_error_event_after_200_is_an_error_not_a_short_reply() {
        let cut = BASIC.split("event: content_block_stop").next().unwrap().to_owned()
            + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (reply, text) = assemble(&[cut.as_bytes()]);
        assert_eq!(
            reply.unwrap_err(),
            StreamError::Api { kind: "overloaded_error".into(), message: "Overloaded".into() }
        );
        assert_eq!(text, "Hello", "what arrived before the error was passed on");
    }

    #[test]
    fn a_stream_that_stops_before_message_stop_is_incomplete() {
        let cut = &BASIC[..BASIC.find("event: message_delta").unwrap()];
        assert_eq!(assemble(&[cut.as_bytes()]).0.unwrap_err(), StreamError::Incomplete { deltas: 1 });
    }

    #[test]
    fn unknown_events_and_pings_are_ignored() {
        let extra = BASIC.replacen("event: ping", "event: brand_new_event", 1);
        assert_eq!(assemble(&[extra.as_bytes()]).0.unwrap().text(), "Hello");
    }
}
