//! An agent's tools in a sandbox, its trajectory and the replay of one (docs/api.md, "Agent
//! tools and trajectories"). Each handler reads its request, asks `Sandboxes`, and answers.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use tracebox_model::tool::{ToolName, Trajectory};

use super::error::{ApiError, ErrorCode};
use super::read_json;
use crate::access::Caller;
use crate::services::Services;

/// `POST /sandboxes/{id}/tools/{name}` with the tool's params as the body.
pub async fn call(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    sandbox: super::sandboxes::OwnedSandbox,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = (sandbox.into_inner(), path.into_inner().1);
    let tool: ToolName = name
        .parse()
        .map_err(|error: tracebox_model::tool::UnknownTool| ApiError::new(ErrorCode::NoSuchTool, error.to_string()))?;
    let limit = services.config.upload_max_file_bytes.saturating_mul(6).saturating_add(64 * 1024);
    let params: Value = read_json(&request, payload, usize::try_from(limit).unwrap_or(usize::MAX), WHY).await?;
    let _run = caller.run_permit()?;
    let reply =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.tool(&id, tool, params, None).await }).await?;
    if let Some(execution) = &reply.blocked {
        return Err(ApiError::blocked(execution));
    }
    let mut body =
        serde_json::to_value(&reply.output).map_err(|error| ApiError::new(ErrorCode::Internal, error.to_string()))?;
    body["trace_id"] = json!(reply.trace_id);
    Ok(HttpResponse::Ok().json(body))
}

const WHY: &str = "more than a file written at once may hold (TRACEBOX_UPLOAD_MAX_FILE_BYTES)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrajectoryQuery {
    /// `tracebox` (the default: the shape a replay takes back) or `swe-agent` (SWE-agent's `.traj`).
    format: Option<String>,
}

/// `GET /sandboxes/{id}/trajectory[?format=swe-agent]`
pub async fn trajectory(
    services: web::Data<Services>,
    id: super::sandboxes::OwnedSandbox,
    query: web::Query<TrajectoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let swe_agent = match query.format.as_deref() {
        None | Some("tracebox") => false,
        Some("swe-agent") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`format`: no format {other:?}; use tracebox or swe-agent"),
            ));
        }
    };
    let trajectory = services.sandboxes.trajectory(&id).await?;
    if swe_agent {
        return Ok(HttpResponse::Ok().json(trajectory.to_swe_agent()));
    }
    Ok(HttpResponse::Ok().json(trajectory))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    trajectory: Trajectory,
    /// Go back to the creation state first (the default).
    #[serde(default = "yes")]
    reset: bool,
}

fn yes() -> bool {
    true
}

/// `POST /sandboxes/{id}/replay` `{"trajectory": {…}, "reset": true}`
pub async fn replay(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    id: super::sandboxes::OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = usize::try_from(services.config.upload_max_request_bytes).unwrap_or(usize::MAX);
    let why = "more than the largest upload (TRACEBOX_UPLOAD_MAX_REQUEST_BYTES); replay the trajectory in parts";
    let body: ReplayBody = read_json(&request, payload, limit, why).await?;
    let _run = caller.run_permit()?;
    let id = id.into_inner();
    let report = services
        .sandboxes
        .detached(|sandboxes| async move { sandboxes.replay(&id, body.trajectory, body.reset).await })
        .await?;
    Ok(HttpResponse::Ok().json(report))
}
