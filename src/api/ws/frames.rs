//! The WebSocket's messages, both ways, as tagged serde enums: what a client may send
//! ([`ClientMessage`]) and every frame the server sends ([`ServerFrame`]). The `type` field is
//! the tag; a new kind of frame is a new variant, so no frame is built by hand.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use tracebox_model::{PolicyHit, TraceId};

use super::super::claude::ClaudeReply;
use super::super::error::{ApiError, ErrorCode};
use super::super::execute::{ExecuteBody, ExecuteReply};
use crate::claude::Question;

/// What a client sends, by its `type` ([`ClientMessage::decode`]).
#[derive(Debug)]
pub(super) enum ClientMessage {
    /// Run a program: the `/execute` body plus the run's `id` and `stdin_open`.
    Execute(Run<ExecuteBody>),
    /// Ask Claude: the `/claude` body plus the call's `id`.
    Claude(Run<Question>),
    /// More stdin for a run; `eof: true` closes it after `data`.
    Stdin(Stdin),
    /// Stop a run.
    Kill(Kill),
}

/// A request body of another door (`B`), with the fields the socket adds: the client's `id`
/// for it, and `stdin_open` (default true: more stdin may follow until a `stdin` says `eof`).
/// `B`'s own checks hold, unknown fields refused, which `#[serde(flatten)]` would lose.
#[derive(Debug)]
pub(super) struct Run<B> {
    pub id: String,
    pub stdin_open: Option<bool>,
    /// Run in this stateful sandbox instead: the body's `code` as a cell, or `cmd` as a command.
    pub sandbox_id: Option<String>,
    pub cmd: Option<String>,
    pub body: B,
}

impl<'de, B: DeserializeOwned> Deserialize<'de> for Run<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let id = match fields.remove("id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(D::Error::custom("`id` must be a string")),
            None => return Err(D::Error::custom("`id` is required: the client's name for the run")),
        };
        let stdin_open = match fields.remove("stdin_open") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(open)) => Some(open),
            Some(_) => return Err(D::Error::custom("`stdin_open` must be true or false")),
        };
        let text = |fields: &mut Map<String, Value>, key: &str| match fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(D::Error::custom(format!("`{key}` must be a string"))),
        };
        let sandbox_id = text(&mut fields, "sandbox_id")?;
        let cmd = text(&mut fields, "cmd")?;
        let body = decode_fields(Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Run { id, stdin_open, sandbox_id, cmd, body })
    }
}

/// `{"type": "stdin", "id", "data", "eof"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Stdin {
    pub id: String,
    pub data: Option<String>,
    #[serde(default)]
    pub eof: bool,
}

/// `{"type": "kill", "id"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Kill {
    pub id: String,
}

/// A message's `type`: the tag of [`ClientMessage`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Execute,
    Claude,
    Stdin,
    Kill,
}

impl ClientMessage {
    /// Decode a message: its `type`, then the fields that type takes. (Two steps rather than
    /// serde's internally tagged enum, which buffers the fields and so loses the name of the one
    /// at fault.) A refusal carries the `id` the message named, when it named one, so that the
    /// answer can say which run it was about.
    pub fn decode(text: &[u8]) -> Result<ClientMessage, (Option<String>, ApiError)> {
        let message: Value = serde_json::from_slice(text).map_err(|e| {
            (None, ApiError::new(ErrorCode::InvalidJson, format!("the message is not valid JSON: {e}")))
        })?;
        let Value::Object(mut fields) = message else {
            return Err((None, invalid_message("a message must be a JSON object")));
        };
        let id = fields.get("id").and_then(Value::as_str).map(str::to_owned);
        let refuse = |error: ApiError| (id.clone(), error);
        let kind = fields
            .remove("type")
            .ok_or_else(|| invalid_message("a message needs a `type`: execute, claude, stdin or kill"))
            .and_then(|kind| decode_fields::<Kind>(kind).map_err(|e| invalid_message(&format!("`type`: {e}"))))
            .map_err(refuse)?;
        let fields = Value::Object(fields);
        match kind {
            Kind::Execute => decode_fields(fields).map(ClientMessage::Execute),
            Kind::Claude => decode_fields(fields).map(ClientMessage::Claude),
            Kind::Stdin => decode_fields(fields).map(ClientMessage::Stdin),
            Kind::Kill => decode_fields(fields).map(ClientMessage::Kill),
        }
        .map_err(|message| refuse(invalid_message(&message)))
    }
}

/// Decode `value`, naming the field at fault.
fn decode_fields<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { format!("`{path}`: ") };
        format!("{field}{}", error.into_inner())
    })
}

/// Every frame the server sends. Each run gets `started`, then its output, then exactly one
/// of `exit`, `blocked` or `error`; a refused message gets `rejected` (the run it named goes
/// on) or `error`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ServerFrame {
    Started {
        id: String,
        trace_id: TraceId,
    },
    Stdout {
        id: String,
        data: String,
    },
    Stderr {
        id: String,
        data: String,
    },
    /// Claude's reply text as it streams.
    Text {
        id: String,
        data: String,
    },
    /// A code block of Claude's reply ran.
    Execution {
        id: String,
        execution: Box<ExecuteReply>,
    },
    /// A run ended: the `/execute` reply without its output (it came in frames), or a Claude
    /// call's `/claude` reply.
    Exit {
        id: String,
        #[serde(flatten)]
        ending: Box<Ending>,
    },
    Blocked {
        id: String,
        trace_id: TraceId,
        rules: Vec<String>,
        message: Option<String>,
        policy_hits: Vec<PolicyHit>,
    },
    Error {
        id: Option<String>,
        code: &'static str,
        message: String,
        trace_id: Option<TraceId>,
    },
    Rejected {
        id: Option<String>,
        code: &'static str,
        message: String,
        trace_id: Option<TraceId>,
    },
}

/// How a run or a call ended, as its `exit` frame tells it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Ending {
    Run(ExecuteReply),
    /// `status` is always `success`: a call that got no reply ends in `error`.
    Claude {
        status: &'static str,
        #[serde(flatten)]
        reply: ClaudeReply,
    },
}

impl ServerFrame {
    /// An `error` frame for `id`, or a `rejected` one when `going` (the run goes on).
    pub fn refusal(id: Option<String>, error: &ApiError, going: bool) -> ServerFrame {
        let (code, message, trace_id) = (error.code().as_str(), error.message().to_owned(), error.trace_id());
        match going {
            true => ServerFrame::Rejected { id, code, message, trace_id },
            false => ServerFrame::Error { id, code, message, trace_id },
        }
    }

    /// The JSON text sent for it.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(super) fn invalid_message(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessage, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(message: Value) -> (Option<String>, String) {
        let (id, error) = ClientMessage::decode(message.to_string().as_bytes()).unwrap_err();
        (id, error.message().to_owned())
    }

    #[test]
    fn an_execute_message_is_the_execute_body_with_an_id() {
        let message = json!({"type": "execute", "id": "r1", "code": "print(1)", "stdin_open": false});
        match ClientMessage::decode(message.to_string().as_bytes()).unwrap() {
            ClientMessage::Execute(run) => assert_eq!((run.id.as_str(), run.stdin_open), ("r1", Some(false))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_message_names_its_field_and_keeps_its_id() {
        let (id, message) = refused(json!({"type": "execute", "id": "r1", "code": "x", "timeuot": 3}));
        assert_eq!(id.as_deref(), Some("r1"));
        assert!(message.contains("timeuot"), "{message}");
        let (_, message) = refused(json!({"type": "execute", "id": "r1", "timeout": "soon"}));
        assert!(message.contains("`timeout`"), "{message}");
        let (_, message) = refused(json!({"type": "launch", "id": "r1"}));
        assert!(message.contains("launch") && message.contains("execute"), "{message}");
        let (id, message) = refused(json!({"id": "r1"}));
        assert_eq!((id.as_deref(), message.contains("`type`")), (Some("r1"), true), "{message}");
        let (_, message) = refused(json!({"type": "execute", "code": "x"}));
        assert!(message.contains("`id` is required"), "{message}");
        let (_, message) = refused(json!({"type": "kill", "id": "r1", "now": true}));
        assert!(message.contains("now"), "{message}");
        let (_, message) = refused(json!({"type": "stdin", "id": "r1", "data": 42}));
        assert!(message.contains("data"), "the field is named: {message}");
    }

    #[test]
    fn frames_carry_their_type_and_only_their_fields() {
        let frame = ServerFrame::Stdout { id: "r1".into(), data: "hi\n".into() };
        assert_eq!(serde_json::to_value(&frame).unwrap(), json!({"type": "stdout", "id": "r1", "data": "hi\n"}));
        let error = ApiError::new(ErrorCode::NoSuchRun, "gone");
        let frame = ServerFrame::refusal(Some("r1".into()), &error, true);
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"type": "rejected", "id": "r1", "code": "no_such_run", "message": "gone", "trace_id": null})
        );
    }
}
