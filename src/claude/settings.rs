//! What Claude calls are given of the server's configuration (built by
//! `Config::claude_settings`; this module does not know the configuration exists).

use std::time::Duration;

/// The Anthropic API key: its `Debug` hides it, it is never serialised, and
/// [`ApiKey::expose`] is for the one header that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(hidden)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<ApiKey, Self::Err> {
        Ok(ApiKey(value.to_owned()))
    }
}

/// Where the Messages API is, with what key, and how long a call may take and retry.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where the API is, without `/v1` (`/v1/messages` is added).
    pub base_url: String,
    /// None (or empty): every call fails with `ClaudeError::NoApiKey`.
    pub api_key: Option<ApiKey>,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest silence between the events of a streamed reply.
    pub read_timeout: Duration,
    /// Longest one attempt of an unstreamed call may take.
    pub attempt_timeout: Duration,
    /// Retries of a call that failed in a way that heals.
    pub max_retries: u32,
    /// Longest a call may go on retrying, waits included.
    pub retry_budget: Duration,
}

/// What a Claude call takes where its question does not say, and how much of its reply runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    /// The model of a question that names none.
    pub model: String,
    /// The `max_tokens` of a question that asks for none.
    pub max_tokens: u32,
    /// Most code blocks of one reply that run (in order); the rest are named, not run.
    pub max_blocks: usize,
}

#[cfg(test)]
impl CallSettings {
    /// The shipped defaults, spelled out for tests (a test in config.rs checks they are
    /// `Config::defaults()`'s).
    pub fn defaults() -> CallSettings {
        CallSettings { model: "claude-sonnet-4-5".into(), max_tokens: 1024, max_blocks: 10 }
    }
}

/// Everything of Claude's that comes from the configuration.
#[derive(Debug, Clone)]
pub struct ClaudeSettings {
    pub client: ClientSettings,
    pub calls: CallSettings,
}
