//! Commands of the `tracebox` binary too long for main.rs; only the binary uses them.

pub mod batch;
pub mod keys;
pub mod mcp;
pub mod sandbox;
