//! Integration tests: a real `tracebox serve`, real HTTP, the real Docker engine and a real
//! SQLite file. Each test starts its own server on its own data directory.

// A failed unwrap in a test is a failed test, with its location: exactly what is wanted.
#![allow(clippy::unwrap_used)]

mod access;
mod agent_tools;
mod artifacts;
mod batch;
mod browser;
mod channel;
mod claude;
mod cli;
mod common;
mod docs;
mod execute;
mod export;
mod fake_anthropic;
mod files;
mod handler;
mod hostile;
mod isolation;
mod kernel;
mod lifecycle;
mod limits;
mod mcp;
mod nodes;
mod origin;
mod policy;
mod pool;
mod refused;
mod requests;
mod runtime;
mod sandbox_files;
mod sandbox_reads;
mod sandbox_restarts;
mod sandbox_steps;
mod sandbox_upload;
mod sandboxes;
mod timeouts;
mod traces;
mod ws;
