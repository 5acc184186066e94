//! `tracebox keys create/list/revoke`: API keys in a data directory's store, whether or not a
//! server runs on it (a running server sees a new or revoked key at its next request).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tracebox::access;
use tracebox::trace::TraceStore;
use tracebox_model::access::{KeyLimits, Role};

#[derive(clap::Args)]
pub struct KeysArgs {
    /// The data directory whose server the keys are for
    #[arg(long, env = "TRACEBOX_DATA_DIR", default_value = ".", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Make a key and print it, once: the store keeps only its hash
    Create(CreateArgs),
    /// The keys, newest last (never the keys themselves)
    List {
        /// As JSON, one object per key
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: requests carrying it (or a token made from it) are refused from now on
    Revoke {
        /// The key's name
        name: String,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// A name to know the key by (letters, digits, '-' and '_'); its tenant unless --tenant
    #[arg(long)]
    name: String,
    /// The tenant whose things the key's requests make and see (default: the name). Two keys
    /// of one tenant share them: make the new key with the same tenant, then revoke the old one
    #[arg(long)]
    tenant: Option<String>,
    /// user: its tenant's things only; admin: every tenant's, and /metrics
    #[arg(long, default_value = "user", value_parser = parse_role)]
    role: Role,
    /// Requests a second, on average (bursts of as many); e.g. 10 or 0.5. Default: no limit
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Sandboxes the tenant may hold at once
    #[arg(long)]
    max_sandboxes: Option<u64>,
    /// Runs (one-shot runs, sandbox steps, Claude calls, batches) going at once
    #[arg(long)]
    max_concurrent_runs: Option<u64>,
    /// Bytes the tenant's uploaded files may hold together
    #[arg(long)]
    upload_quota: Option<u64>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: tracebox_model::UnknownName| e.to_string())
}

/// `N` or `N/s`, above 0.
fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate; write requests a second above 0, e.g. 10 or 0.5")),
    }
}

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data_dir.join("traces");
    let store = TraceStore::open(&dir)
        .with_context(|| format!("cannot open the store of the data directory {}", dir.display()))?;
    let code = match args.command {
        KeysCommand::Create(create) => create_key(&store, create)?,
        KeysCommand::List { json } => list_keys(&store, json)?,
        KeysCommand::Revoke { name } => {
            if store.revoke_key(&name)? {
                eprintln!("revoked key {name:?}: it stops working at once");
                ExitCode::SUCCESS
            } else {
                eprintln!("tracebox: no active key named {name:?}; `tracebox keys list` shows them");
                ExitCode::from(1)
            }
        }
    };
    store.close();
    Ok(code)
}

fn create_key(store: &TraceStore, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let limits = KeyLimits {
        rate_per_sec: args.rate,
        max_sandboxes: args.max_sandboxes,
        max_concurrent_runs: args.max_concurrent_runs,
        upload_quota_bytes: args.upload_quota,
    };
    let (text, record) = match access::new_key(&args.name, args.tenant.as_deref(), args.role, limits) {
        Ok(made) => made,
        Err(message) => {
            eprintln!("tracebox: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    if !store.add_key(&record)? {
        eprintln!(
            "tracebox: a key named {:?} exists already (revoked keys keep their names); choose another name",
            args.name
        );
        return Ok(ExitCode::from(1));
    }
    // The key alone on stdout, so `KEY=$(tracebox keys create …)` works; the rest on stderr.
    println!("{text}");
    eprintln!(
        "made {} key {:?} for tenant {:?}: keep it now, it is not shown again (the store keeps only its hash)",
        record.role, record.name, record.tenant
    );
    Ok(ExitCode::SUCCESS)
}

fn list_keys(store: &TraceStore, json: bool) -> anyhow::Result<ExitCode> {
    let keys = store.keys_all()?;
    for key in &keys {
        let state = if key.revoked_at_us.is_some() { "revoked" } else { "active" };
        let limits = &key.limits;
        if json {
            let line = serde_json::json!({
                "name": key.name, "id": key.id, "tenant": key.tenant, "role": key.role, "state": state,
                "created_at": tracebox_model::format_us(key.created_at_us),
                "revoked_at": key.revoked_at_us.map(tracebox_model::format_us),
                "rate_per_sec": limits.rate_per_sec, "max_sandboxes": limits.max_sandboxes,
                "max_concurrent_runs": limits.max_concurrent_runs, "upload_quota_bytes": limits.upload_quota_bytes,
            });
            println!("{line}");
        } else {
            let show = |value: Option<String>| value.unwrap_or_else(|| "-".into());
            println!(
                "{:<24} {:<8} {:<6} tenant={:<16} tbx_{}_… rate={} sandboxes={} runs={} upload={}",
                key.name,
                state,
                key.role,
                key.tenant,
                key.id,
                show(limits.rate_per_sec.map(|r| format!("{r}/s"))),
                show(limits.max_sandboxes.map(|n| n.to_string())),
                show(limits.max_concurrent_runs.map(|n| n.to_string())),
                show(limits.upload_quota_bytes.map(|n| n.to_string())),
            );
        }
    }
    if keys.is_empty() && !json {
        eprintln!("no keys: the server is open on loopback; `tracebox keys create --name NAME` makes one");
    }
    Ok(ExitCode::SUCCESS)
}
