//! `GET /health`: is everything a run needs there? 200 when it is, 503 with the reason when not.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use crate::services::Services;

/// `GET /health`
pub async fn health(services: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    let sandbox = services.sandbox.health().await;
    let traces = services.store.count().await;
    let healthy = sandbox.docker_reachable && sandbox.image_present && traces.is_ok();
    let (input_rules, output_rules) = services.policy.rule_counts();
    let config = services.runner.config();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "docker": sandbox,
        "runs": {
            "active": services.runner.active_runs(),
            "max_concurrent": config.max_concurrent_runs,
            "queued": services.runner.queued_runs(),
            "max_queued": config.max_queued_runs,
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
