//! The `[fake:…]` directives: how a prompt asks the fake to misbehave. They travel in the last
//! user message, so a client under test needs nothing special to trigger them.

use std::time::Duration;

/// What the directives of one prompt ask for; an absent one leaves the fake's normal behaviour.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Directives {
    /// `status:NNN`: every attempt fails with this status.
    pub status: Option<u16>,
    /// `flaky:NNN:K`: the first K attempts of the same body fail with NNN.
    pub flaky: Option<(u16, u32)>,
    /// `retry_after:SECS`, kept as written so that `0.2` goes out as `0.2`.
    pub retry_after: Option<String>,
    /// `no_retry_after`: the faked error carries no `retry-after` at all.
    pub no_retry_after: bool,
    /// `retry_after_ms:MS`: adds `retry-after-ms`, which the SDKs prefer to `retry-after`.
    pub retry_after_ms: Option<String>,
    /// `should_retry:true|false`: adds `x-should-retry`, which overrides the SDKs' status rules.
    pub should_retry: Option<bool>,
    /// `midstream_error:K`: K text deltas, then an `error` event and the end of the stream.
    pub midstream_error: Option<usize>,
    /// `drop:K`: the connection is cut after K events (or half the JSON body).
    pub drop: Option<usize>,
    pub slow_first_byte: Option<Duration>,
    pub slow_tokens: Option<Duration>,
    pub stop: Option<FakedStop>,
    pub refusal: bool,
    pub tool_use: bool,
    /// `usage:IN:OUT`: exact input and output tokens.
    pub usage: Option<(u64, u64)>,
    /// `cache:CREATE:READ`: exact cache creation and cache read tokens.
    pub cache: Option<(u64, u64)>,
}

/// A stop reason claimed without the cause that would really produce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FakedStop {
    MaxTokens,
    StopSequence,
}

/// A directive the fake does not understand. The request is refused rather than guessed at, so
/// that a typo in a test fails loudly instead of testing the happy path.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("[fake:{directive}]: {reason}")]
pub(super) struct DirectiveError {
    directive: String,
    reason: String,
}

const OPEN: &str = "[fake:";

/// The directives written in `text`, and the text with them taken out (they are never echoed).
pub(super) fn parse(text: &str) -> Result<(Directives, String), DirectiveError> {
    let mut directives = Directives::default();
    let mut rest = String::with_capacity(text.len());
    let mut remaining = text;
    while let Some(start) = remaining.find(OPEN) {
        rest.push_str(&remaining[..start]);
        let after = &remaining[start + OPEN.len()..];
        let Some(end) = after.find(']') else {
            return Err(DirectiveError { directive: after.to_owned(), reason: "no closing `]`".to_owned() });
        };
        apply(&mut directives, &after[..end])?;
        remaining = &after[end + 1..];
    }
    rest.push_str(remaining);
    Ok((directives, rest))
}

/// Record one directive (the text between `[fake:` and `]`).
fn apply(directives: &mut Directives, directive: &str) -> Result<(), DirectiveError> {
    let fail = |reason: &str| DirectiveError { directive: directive.to_owned(), reason: reason.to_owned() };
    let parts: Vec<&str> = directive.split(':').collect();
    match parts.as_slice() {
        ["status", status] => directives.status = Some(parse_status(status).ok_or_else(|| fail(STATUS))?),
        ["flaky", status, count] => {
            let status = parse_status(status).ok_or_else(|| fail(STATUS))?;
            let count = count.parse().map_err(|_| fail("the count of failures must be a whole number"))?;
            directives.flaky = Some((status, count));
        }
        ["retry_after", secs] => {
            parse_non_negative(secs).ok_or_else(|| fail("the seconds must be a number ≥ 0, e.g. 0.2"))?;
            directives.retry_after = Some((*secs).to_owned());
        }
        ["retry_after_ms", ms] => {
            parse_non_negative(ms).ok_or_else(|| fail("the milliseconds must be a number ≥ 0"))?;
            directives.retry_after_ms = Some((*ms).to_owned());
        }
        ["no_retry_after"] => directives.no_retry_after = true,
        ["should_retry", "true"] => directives.should_retry = Some(true),
        ["should_retry", "false"] => directives.should_retry = Some(false),
        ["midstream_error", count] => directives.midstream_error = Some(parse_count(count).ok_or_else(|| fail(COUNT))?),
        ["drop", count] => directives.drop = Some(parse_count(count).ok_or_else(|| fail(COUNT))?),
        ["slow_first_byte", ms] => directives.slow_first_byte = Some(parse_ms(ms).ok_or_else(|| fail(MS))?),
        ["slow_tokens", ms] => directives.slow_tokens = Some(parse_ms(ms).ok_or_else(|| fail(MS))?),
        ["stop", "max_tokens"] => directives.stop = Some(FakedStop::MaxTokens),
        ["stop", "stop_sequence"] => directives.stop = Some(FakedStop::StopSequence),
        ["refusal"] => directives.refusal = true,
        ["tool_use"] => directives.tool_use = true,
        ["usage", input, output] => directives.usage = Some(parse_pair(input, output).ok_or_else(|| fail(TOKENS))?),
        ["cache", create, read] => directives.cache = Some(parse_pair(create, read).ok_or_else(|| fail(TOKENS))?),
        _ => return Err(fail(KNOWN)),
    }
    Ok(())
}

const STATUS: &str = "the status must be an HTTP error status, 400 to 599";
const COUNT: &str = "the count must be a whole number";
const MS: &str = "the delay must be a whole number of milliseconds";
const TOKENS: &str = "token counts must be whole numbers";
const KNOWN: &str = "unknown directive; the fake knows status:NNN, flaky:NNN:K, retry_after:SECS, retry_after_ms:MS, \
     no_retry_after, should_retry:true|false, midstream_error:K, drop:K, slow_first_byte:MS, slow_tokens:MS, \
     stop:max_tokens, stop:stop_sequence, refusal, tool_use, usage:IN:OUT, cache:CREATE:READ";

fn parse_status(text: &str) -> Option<u16> {
    text.parse().ok().filter(|status| (400..=599).contains(status))
}

fn parse_count(text: &str) -> Option<usize> {
    text.parse().ok()
}

fn parse_ms(text: &str) -> Option<Duration> {
    text.parse().ok().map(Duration::from_millis)
}

fn parse_non_negative(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0)
}

fn parse_pair(first: &str, second: &str) -> Option<(u64, u64)> {
    Some((first.parse().ok()?, second.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn directives_are_read_anywhere_and_taken_out_of_the_text() {
        let (directives, rest) =
            parse("Write [fake:flaky:529:2]a program[fake:retry_after:0.2] that prints 29 [fake:tool_use]").unwrap();
        assert_eq!(directives.flaky, Some((529, 2)));
        assert_eq!(directives.retry_after.as_deref(), Some("0.2"));
        assert!(directives.tool_use);
        assert_eq!(rest, "Write a program that prints 29 ");
    }

    #[test]
    fn a_text_without_directives_is_left_as_it_is() {
        let (directives, rest) = parse("print [1] and [fake later").unwrap();
        assert_eq!(directives, Directives::default());
        assert_eq!(rest, "print [1] and [fake later");
    }

    #[test]
    fn every_directive_with_arguments_is_understood() {
        let text = "[fake:status:429][fake:midstream_error:3][fake:drop:4][fake:slow_first_byte:50]\
                    [fake:slow_tokens:5][fake:stop:stop_sequence][fake:usage:10:20][fake:cache:30:40]\
                    [fake:no_retry_after][fake:should_retry:false][fake:retry_after_ms:1][fake:refusal]";
        let (directives, _) = parse(text).unwrap();
        assert_eq!(
            directives,
            Directives {
                status: Some(429),
                midstream_error: Some(3),
                drop: Some(4),
                slow_first_byte: Some(Duration::from_millis(50)),
                slow_tokens: Some(Duration::from_millis(5)),
                stop: Some(FakedStop::StopSequence),
                usage: Some((10, 20)),
                cache: Some((30, 40)),
                no_retry_after: true,
                should_retry: Some(false),
                retry_after_ms: Some("1".to_owned()),
                refusal: true,
                ..Directives::default()
            }
        );
    }

    #[test]
    fn a_misspelt_or_malformed_directive_is_refused_naming_it() {
        let error = parse("[fake:flakey:529:2]").unwrap_err().to_string();
        assert!(error.starts_with("[fake:flakey:529:2]: unknown directive"), "{error}");
        let error = parse("[fake:status:200]").unwrap_err().to_string();
        assert_eq!(error, format!("[fake:status:200]: {STATUS}"));
        assert!(parse("[fake:retry_after:-1]").is_err());
        assert!(parse("[fake:drop:3").is_err());
    }
}
