//! The assistant's message: its text chosen from the script or the prompt's code, cut where
//! the request's `stop_sequences` and `max_tokens` say, shaped as the API's `Message`.

use serde::Serialize;
use serde_json::{Value, json};

use super::ScriptRule;
use super::directive::{Directives, FakedStop};
use super::random_id;
use super::request::MessagesRequest;

/// The API's `Message` (ANTHROPIC.md §3). Streaming sends the same one piece by piece.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<ContentBlock>,
    /// Never null in a finished message; null only in `message_start`.
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock {
    Text { text: String },
    ToolUse { id: String, name: String, input: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    Refusal,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    pub service_tier: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

/// What the fake says when it has nothing to give: how to give it something.
pub(super) const NO_CODE: &str = "This is the fake Anthropic API, and it has no code for this prompt. \
     To get a program back, put it in a fenced code block (```python … ```) in the message, \
     or give the fake a script rule whose `contains` occurs in the message.";

const REFUSAL: &str = "I can't help with that.";
const TOOL_USE_TEXT: &str = "I'll run the program.";
/// The stop sequence claimed by `[fake:stop:stop_sequence]` when the request names none.
const DEFAULT_STOP_SEQUENCE: &str = "\n\nHuman:";
/// The API's rough rule of thumb, which the fake takes as its tokenizer.
const CHARS_PER_TOKEN: usize = 4;

/// Token estimate of `chars` characters: at least one, as the API never reports zero output.
pub(super) fn tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(CHARS_PER_TOKEN).max(1)).unwrap_or(u64::MAX)
}

/// The message answering `request`, whose last user text without its directives is `prompt`.
pub(super) fn message(
    request: &MessagesRequest,
    directives: &Directives,
    prompt: &str,
    script: &[ScriptRule],
) -> Message {
    let (text, mut stop_reason, mut stop_sequence) = if directives.refusal {
        (REFUSAL.to_owned(), StopReason::Refusal, None)
    } else if directives.tool_use {
        let (text, stop_reason, stop_sequence) = cut(TOOL_USE_TEXT.to_owned(), request);
        (text, if stop_reason == StopReason::EndTurn { StopReason::ToolUse } else { stop_reason }, stop_sequence)
    } else {
        cut(reply_text(prompt, script), request)
    };
    let mut output_chars = text.chars().count();
    let mut content = vec![ContentBlock::Text { text }];
    if stop_reason == StopReason::ToolUse {
        let input = json!({"language": "python", "code": "print(1)"});
        output_chars += input.to_string().chars().count();
        content.push(ContentBlock::ToolUse { id: random_id("toolu_"), name: "run_code".to_owned(), input });
    }
    match directives.stop {
        Some(FakedStop::MaxTokens) => (stop_reason, stop_sequence) = (StopReason::MaxTokens, None),
        Some(FakedStop::StopSequence) => {
            stop_reason = StopReason::StopSequence;
            let claimed = request.stop_sequences.first().map_or(DEFAULT_STOP_SEQUENCE, String::as_str);
            stop_sequence = Some(claimed.to_owned());
        }
        None => {}
    }
    let (input_tokens, output_tokens) = directives.usage.unwrap_or((tokens(request.input_chars), tokens(output_chars)));
    let (cache_creation, cache_read) = directives.cache.unwrap_or((0, 0));
    Message {
        id: random_id("msg_"),
        kind: "message",
        role: "assistant",
        model: request.model.clone(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence,
        usage: Usage {
            input_tokens,
            output_tokens,
            cache_creation_input_tokens: cache_creation,
            cache_read_input_tokens: cache_read,
            cache_creation: CacheCreation { ephemeral_5m_input_tokens: cache_creation, ephemeral_1h_input_tokens: 0 },
            service_tier: "standard",
        },
    }
}

/// The first script rule found in the prompt, else the prompt's code, else [`NO_CODE`].
pub(super) fn reply_text(prompt: &str, script: &[ScriptRule]) -> String {
    if let Some(rule) = script.iter().find(|rule| prompt.contains(&rule.contains)) {
        return rule.reply.clone();
    }
    let blocks = fenced_blocks(prompt);
    match blocks.as_slice() {
        [] => NO_CODE.to_owned(),
        [block] => format!("Here is the program:\n\n{block}"),
        blocks => format!("Here are the programs:\n\n{}", blocks.join("\n")),
    }
}

/// Where generation would have stopped: before the earliest stop sequence, or at
/// `max_tokens` worth of characters, whichever comes first.
fn cut(mut text: String, request: &MessagesRequest) -> (String, StopReason, Option<String>) {
    let mut stop = (StopReason::EndTurn, None);
    let earliest = request
        .stop_sequences
        .iter()
        .filter(|sequence| !sequence.is_empty())
        .filter_map(|sequence| text.find(sequence.as_str()).map(|at| (at, sequence)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, sequence)) = earliest {
        text.truncate(at);
        stop = (StopReason::StopSequence, Some(sequence.clone()));
    }
    let max_chars = usize::try_from(request.max_tokens).unwrap_or(usize::MAX).saturating_mul(CHARS_PER_TOKEN);
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        text.truncate(at);
        stop = (StopReason::MaxTokens, None);
    }
    (text, stop.0, stop.1)
}

/// The fenced code blocks of `text`, each verbatim from its opening fence line (with its info
/// string) to its closing fence, ending in a newline. A block left open runs to the end and
/// is closed.
pub(super) fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(fence) = opening_fence(trimmed) {
                    let mut block = trimmed.to_owned();
                    if !block.ends_with('\n') {
                        block.push('\n');
                    }
                    open = Some((fence, block));
                }
            }
            Some((fence, block)) => {
                let bare = trimmed.trim_end();
                if bare.len() >= *fence && bare.bytes().all(|b| b == b'`') {
                    block.push_str(bare);
                    block.push('\n');
                    blocks.push(std::mem::take(block));
                    open = None;
                } else {
                    block.push_str(line);
                }
            }
        }
    }
    if let Some((fence, mut block)) = open {
        if !block.ends_with('\n') {
            block.push('\n');
        }
        block.push_str(&"`".repeat(fence));
        block.push('\n');
        blocks.push(block);
    }
    blocks
}

/// The length of the backtick run opening a fence on this line, if it opens one (CommonMark:
/// three or more backticks, and no backtick in the info string).
fn opening_fence(line: &str) -> Option<usize> {
    let fence = line.bytes().take_while(|b| *b == b'`').count();
    (fence >= 3 && !line[fence..].contains('`')).then_some(fence)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(max_tokens: u64, stop_sequences: &[&str]) -> MessagesRequest {
        MessagesRequest {
            model: "claude-test".to_owned(),
            max_tokens,
            stream: false,
            stop_sequences: stop_sequences.iter().map(|s| (*s).to_owned()).collect(),
            last_user_text: String::new(),
            input_chars: 10,
        }
    }

    fn text_of(message: &Message) -> &str {
        match message.content.first() {
            Some(ContentBlock::Text { text }) => text,
            _ => panic!("no text block"),
        }
    }

    #[test]
    fn a_fenced_block_is_repeated_verbatim_with_its_info_string() {
        let prompt = "Run this:\n```python\nprint(29)\n```\nthanks";
        assert_eq!(reply_text(prompt, &[]), "Here is the program:\n\n```python\nprint(29)\n```\n");
    }

    #[test]
    fn several_blocks_are_all_repeated_and_an_open_one_is_closed() {
        let prompt = "  ````js\nconsole.log(1)\n```\n````\ntext\n```\nunclosed";
        assert_eq!(
            reply_text(prompt, &[]),
            "Here are the programs:\n\n````js\nconsole.log(1)\n```\n````\n\n```\nunclosed\n```\n"
        );
    }

    #[test]
    fn the_first_matching_script_rule_wins_over_code() {
        let script = [
            ScriptRule { contains: "primes".to_owned(), reply: "first".to_owned() },
            ScriptRule { contains: "".to_owned(), reply: "catch-all".to_owned() },
        ];
        assert_eq!(reply_text("list primes\n```\nx\n```", &script), "first");
        assert_eq!(reply_text("anything", &script), "catch-all");
        assert_eq!(reply_text("no code here", &[]), NO_CODE);
    }

    #[test]
    fn the_reply_is_cut_before_the_earliest_stop_sequence() {
        let message = message(&request(1000, &["END", "Here"]), &Directives::default(), "```\nEND\n```", &[]);
        assert_eq!(text_of(&message), "");
        assert_eq!(message.stop_reason, Some(StopReason::StopSequence));
        assert_eq!(message.stop_sequence.as_deref(), Some("Here"));
    }

    #[test]
    fn the_reply_is_cut_at_max_tokens_and_never_inside_a_character() {
        let script = [ScriptRule { contains: "".to_owned(), reply: "ééééé".repeat(4) }];
        let message = message(&request(3, &[]), &Directives::default(), "", &script);
        assert_eq!(text_of(&message), "é".repeat(12));
        assert_eq!(message.stop_reason, Some(StopReason::MaxTokens));
        assert_eq!(message.usage.output_tokens, 3);
    }

    #[test]
    fn usage_estimates_four_characters_a_token_unless_told() {
        let script = [ScriptRule { contains: "".to_owned(), reply: "12345".to_owned() }];
        let estimated = message(&request(100, &[]), &Directives::default(), "", &script);
        assert_eq!((estimated.usage.input_tokens, estimated.usage.output_tokens), (3, 2));
        let told = Directives { usage: Some((7, 8)), cache: Some((9, 10)), ..Directives::default() };
        let exact = message(&request(100, &[]), &told, "", &script);
        let usage = exact.usage;
        assert_eq!((usage.input_tokens, usage.output_tokens), (7, 8));
        assert_eq!((usage.cache_creation_input_tokens, usage.cache_read_input_tokens), (9, 10));
    }

    #[test]
    fn tool_use_follows_a_text_block_and_stops_for_the_tool() {
        let directives = Directives { tool_use: true, ..Directives::default() };
        let message = message(&request(100, &[]), &directives, "", &[]);
        assert_eq!(message.stop_reason, Some(StopReason::ToolUse));
        let ContentBlock::ToolUse { id, name, input } = &message.content[1] else { panic!("no tool_use block") };
        assert!(id.starts_with("toolu_"));
        assert_eq!(name, "run_code");
        assert_eq!(input, &json!({"language": "python", "code": "print(1)"}));
    }
}
