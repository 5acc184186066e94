//! `GET /health`: is everything a run needs there? 200 when it is, 503 with the reason when not.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use crate::services::Services;

/// `GET /health`
pub async fn health(state: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    let sandbox = state.sandbox.health().await;
    let traces = state.store.count().await;
    let healthy = sandbox.docker_reachable && sandbox.image_present && traces.is_ok();
    let (input_rules, output_rules) = state.policy.rule_counts();
    let config = state.runner.config();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "docker": sandbox,
        "runs": {
            "active": state.runner.active_runs(),
            "max_concurrent": config.max_concurrent_runs,
        },
        "traces": {
            "path": state.store.path(),
            "count": traces.as_ref().ok(),
            "error": traces.as_ref().err().map(ToString::to_string),
        },
        "policy": {
            "origin": state.policy.origin(),
            "input_rules": input_rules,
            "output_rules": output_rules,
        },
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(HttpResponse::build(status).json(body))
}
