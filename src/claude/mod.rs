//! Claude, the model behind the Anthropic Messages API: here, the fake that tests talk to.

pub mod fake;
