//! Claude in the loop: the Anthropic Messages API client (reqwest, streaming, retries), the
//! code blocks of a reply, the cost estimate, and the traced call that runs a reply's code
//! through the execution pipeline ([`Claude::ask`]). A faithful fake of the API, for tests and
//! for trying tracebox without a key, is the `fake-anthropic` crate (crates/fake-anthropic).

mod blocks;
mod call;
mod client;
mod messages;
mod price;
mod question;
mod retry;
mod settings;
mod sse;

pub use blocks::{CodeBlock, code_blocks};
pub use call::{Answer, Ask, AskError, AskEvent, Call, Claude};
pub use client::{ANTHROPIC_VERSION, ClaudeError, Exchange, MessagesClient};
pub use messages::{Block, MessagesRequest, Reply};
pub use price::{Price, PriceError, PriceTable};
pub use question::{MAX_TOKENS_LIMIT, Question, QuestionError};
pub use settings::{ApiKey, CallSettings, ClaudeSettings, ClientSettings};
pub use sse::StreamError;
