//! `GET /health`: is everything a run needs there? 200 when it is, 503 with the reason when not.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::error::{ApiError, ErrorCode};
use crate::access::Caller;
use crate::nodes::NodeState;
use crate::services::Services;

/// `GET /health`
pub async fn health(services: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    let sandbox = services.nodes.health().await;
    let traces = services.store.count().await;
    // Runs can go somewhere: the first node's engine, runtime and image are there, or another
    // node is up.
    let elsewhere = services.nodes.all().iter().skip(1).any(|node| node.state() == NodeState::Up);
    let healthy = (sandbox.ready() || elsewhere) && traces.is_ok();
    let (input_rules, output_rules) = services.policy.rule_counts();
    let sandboxes = services.sandboxes.counts().await;
    let config = &services.config;
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "auth": {
            "mode": services.access.mode()?,
            "insecure_no_auth": config.insecure_no_auth,
        },
        "docker": sandbox,
        "runs": {
            "active": services.runner.active_runs(),
            "max_concurrent": config.runs_at_once(),
            "queued": services.runner.queued_runs(),
            "max_queued": config.max_queued_runs,
        },
        "sandboxes": sandboxes,
        "nodes": {
            "up": services.nodes.all().iter().filter(|node| node.state() == NodeState::Up).count(),
            "total": services.nodes.all().len(),
        },
        "traces": {
            "path": services.store.path(),
            "count": traces.as_ref().ok(),
            "error": traces.as_ref().err().map(ToString::to_string),
        },
        "policy": {
            "origin": services.policy.origin(),
            "input_rules": input_rules,
            "output_rules": output_rules,
        },
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(HttpResponse::build(status).json(body))
}

/// `GET /metrics`: the state of the runs, the warm pool and each key, in Prometheus' text format.
/// With keys on, for admin keys only: it names every key.
pub async fn metrics(services: web::Data<Services>, caller: Caller) -> Result<HttpResponse, ApiError> {
    use std::fmt::Write;
    if !caller.is_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "/metrics names every key and tenant: it needs an admin key (tracebox keys create --role admin)",
        ));
    }
    let pool = services.nodes.pool_state();
    let sandboxes = services.sandboxes.counts().await;
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let plain = |value: f64| vec![(String::new(), value)];
    let per_profile = |pick: fn(&crate::sandbox::ProfileState) -> usize| -> Vec<(String, f64)> {
        pool.profiles.iter().map(|p| (format!("{{profile=\"{}\"}}", p.profile), pick(p) as f64)).collect()
    };
    let runtime: Vec<(String, f64)> = services
        .nodes
        .all()
        .iter()
        .map(|node| (format!("{{node=\"{}\",runtime=\"{}\"}}", node.name(), node.sandbox().runtime()), 1.0))
        .collect();
    metric("tracebox_sandbox_runtime_info", "gauge", "The Docker runtime each node's containers run under.", &runtime);
    metric("tracebox_runs_active", "gauge", "Runs executing now.", &plain(services.runner.active_runs() as f64));
    metric("tracebox_runs_queued", "gauge", "Runs waiting for a slot.", &plain(services.runner.queued_runs() as f64));
    let by_state: Vec<(String, f64)> =
        sandboxes.iter().map(|(state, count)| (format!("{{state=\"{state}\"}}"), *count as f64)).collect();
    metric("tracebox_sandboxes", "gauge", "Stateful sandboxes, by state.", &by_state);
    let warm: Vec<(String, f64)> = services
        .sandboxes
        .warm_idle()
        .iter()
        .map(|(language, count)| (format!("{{language=\"{language}\"}}"), *count as f64))
        .collect();
    metric("tracebox_sandbox_pool_idle", "gauge", "Sandbox containers started ahead, waiting.", &warm);
    metric("tracebox_pool_size", "gauge", "Warm containers kept per stocked profile.", &plain(pool.size as f64));
    metric("tracebox_pool_idle", "gauge", "Warm containers waiting for a run.", &per_profile(|p| p.idle));
    metric("tracebox_pool_starting", "gauge", "Containers starting for the pool.", &per_profile(|p| p.starting));
    metric("tracebox_pool_in_use", "gauge", "Containers of the pool serving a run.", &per_profile(|p| p.in_use));
    metric("tracebox_pool_waiting", "gauge", "Runs waiting for a warm container.", &per_profile(|p| p.waiting));
    metric("tracebox_pool_started_total", "counter", "Containers started for the pool.", &plain(pool.started as f64));
    metric("tracebox_pool_taken_total", "counter", "Runs served by a warm container.", &plain(pool.taken as f64));
    metric(
        "tracebox_pool_recycled_total",
        "counter",
        "Recycled containers readied again.",
        &plain(pool.recycled as f64),
    );
    metric(
        "tracebox_pool_discarded_total",
        "counter",
        "Warm containers removed unused.",
        &plain(pool.discarded as f64),
    );
    metric(
        "tracebox_pool_failed_starts_total",
        "counter",
        "Pool containers that failed to start.",
        &plain(pool.failed_starts as f64),
    );
    metric(
        "tracebox_pool_waits_total",
        "counter",
        "Runs that found no warm container waiting.",
        &plain(pool.waits as f64),
    );
    metric(
        "tracebox_pool_wait_seconds_total",
        "counter",
        "Time runs waited for a warm container.",
        &plain(pool.waited_ms / 1000.0),
    );
    let nodes = services.nodes.views();
    let per_node = |value: &dyn Fn(&crate::nodes::NodeView) -> f64| -> Vec<(String, f64)> {
        nodes.iter().map(|node| (format!("{{node=\"{}\"}}", node.name), value(node))).collect()
    };
    metric(
        "tracebox_node_up",
        "gauge",
        "1 when the node takes work, 0 when it is down or draining.",
        &per_node(&|n| f64::from(u8::from(n.state == crate::nodes::NodeState::Up))),
    );
    metric("tracebox_node_runs", "gauge", "Runs on each node now.", &per_node(&|n| n.running.runs as f64));
    metric(
        "tracebox_node_sandboxes",
        "gauge",
        "Sandboxes on each node now.",
        &per_node(&|n| n.running.sandboxes as f64),
    );
    metric(
        "tracebox_node_capacity_runs",
        "gauge",
        "Each node's max_concurrent_runs.",
        &per_node(&|n| n.capacity.runs as f64),
    );
    metric(
        "tracebox_node_missed_heartbeats",
        "gauge",
        "Heartbeats each node missed in a row.",
        &per_node(&|n| f64::from(n.missed_heartbeats)),
    );
    metric(
        "tracebox_node_pool_idle",
        "gauge",
        "Warm containers waiting on each node.",
        &per_node(&|n| n.pool.idle as f64),
    );
    let usage = services.access.usage();
    let per_key = |value: &dyn Fn(&crate::access::KeyUsage) -> Option<f64>| -> Vec<(String, f64)> {
        usage.iter().filter_map(|key| Some((format!("{{key=\"{}\"}}", key.name), value(key)?))).collect()
    };
    let count = |n: &std::sync::atomic::AtomicU64| Some(n.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metric("tracebox_key_requests_total", "counter", "Requests made with each key.", &per_key(&|k| count(&k.requests)));
    metric(
        "tracebox_key_rate_limited_total",
        "counter",
        "Requests refused 429 for the key's rate.",
        &per_key(&|k| count(&k.rate_limited)),
    );
    metric("tracebox_key_runs_active", "gauge", "Runs of each key going now.", &per_key(&|k| Some(k.running() as f64)));
    metric(
        "tracebox_key_runs_refused_total",
        "counter",
        "Runs refused 429 for the key's max concurrent runs.",
        &per_key(&|k| count(&k.runs_refused)),
    );
    metric("tracebox_key_limit_rate_per_sec", "gauge", "Each key's rate limit.", &per_key(&|k| k.limits.rate_per_sec));
    metric(
        "tracebox_key_limit_concurrent_runs",
        "gauge",
        "Each key's max concurrent runs.",
        &per_key(&|k| k.limits.max_concurrent_runs.map(|n| n as f64)),
    );
    metric(
        "tracebox_key_limit_sandboxes",
        "gauge",
        "Each key's max sandboxes.",
        &per_key(&|k| k.limits.max_sandboxes.map(|n| n as f64)),
    );
    metric(
        "tracebox_key_limit_upload_bytes",
        "gauge",
        "Each key's upload quota.",
        &per_key(&|k| k.limits.upload_quota_bytes.map(|n| n as f64)),
    );
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
