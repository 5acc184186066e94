//! tracebox: a self-hosted code-execution sandbox for AI agents. Untrusted Python and Node
//! run in hardened Docker containers behind one pipeline (policy → sandbox → redaction →
//! trace); HTTP and the CLI are doors onto it. See ARCHITECTURE.md for the map.

pub mod access;
pub mod api;
pub mod batch;
pub mod boot;
pub mod claude;
pub mod config;
pub mod files;
pub mod http_client;
pub mod mcp;
pub mod nodes;
pub mod policy;
pub mod runner;
pub mod sandbox;
pub mod sandboxes;
pub mod schedule;
pub mod server;
pub mod services;
pub mod stats;
pub mod submission;
pub mod trace;
