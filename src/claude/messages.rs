//! The Messages API on the wire: the request body tracebox sends and the message it gets back,
//! as Anthropic documents them (see ../shared/ANTHROPIC.md §2–§3).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracebox_model::Usage;

/// The body of `POST /v1/messages`. `messages` and `system` pass through in Anthropic's own
/// shape, so anything the API accepts can be sent.
#[derive(Debug, Clone, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// A message Claude sent back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub model: String,
    #[serde(deserialize_with = "blocks")]
    pub content: Vec<Block>,
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

impl Reply {
    /// The text of every text block, joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                Block::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// One content block of a reply. Types tracebox does not use are kept by name only: a client
/// must skip unknown blocks rather than fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(untagged)]
    Other {
        r#type: String,
    },
}

impl Block {
    /// A block as the API sent it.
    pub fn from_value(value: Value) -> Block {
        let kind = value.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind.as_str() {
            "text" => Block::Text { text: text("text") },
            "tool_use" => Block::ToolUse {
                id: text("id"),
                name: text("name"),
                input: value.get("input").cloned().unwrap_or_else(|| Value::Object(Default::default())),
            },
            _ => Block::Other { r#type: kind },
        }
    }
}

fn blocks<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Block>, D::Error> {
    let values = Vec::<Value>::deserialize(deserializer)?;
    Ok(values.into_iter().map(Block::from_value).collect())
}

/// The error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reply_keeps_text_and_tool_use_and_skips_unknown_blocks() {
        let reply: Reply = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "text", "text": "Here "},
                {"type": "thinking", "thinking": "…", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "run_code", "input": {"code": "print(1)"}},
                {"type": "text", "text": "you go"}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 34, "cache_creation_input_tokens": null, "cache_read_input_tokens": 5}
        }))
        .unwrap();
        assert_eq!(reply.text(), "Here you go");
        assert_eq!(reply.content[1], Block::Other { r#type: "thinking".into() });
        assert!(matches!(&reply.content[2], Block::ToolUse { name, .. } if name == "run_code"));
        assert_eq!((reply.usage.cache_creation_input_tokens, reply.usage.total_input()), (0, 17));
    }

    #[test]
    fn the_request_leaves_out_what_was_not_asked() {
        let request = MessagesRequest {
            model: "m".into(),
            max_tokens: 10,
            messages: vec![json!({"role": "user", "content": "hi"})],
            system: None,
            temperature: None,
            stop_sequences: Vec::new(),
            stream: false,
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
        );
    }
}
