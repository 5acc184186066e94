//! `/mcp`: MCP's streamable HTTP transport (`GET`, `POST`, `DELETE`), behind the guard like
//! every route. The protocol is rmcp's (`crate::mcp::http`); this file only carries requests
//! across: the actix request and its body (read at the server's pace) into an `http` request,
//! rmcp's answer back as a streamed response, event streams included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use http_body_util::{BodyExt, Full};

use super::error::{ApiError, ErrorCode};
use super::read_body;
use crate::access::Caller;
use crate::mcp::http::McpHttp;
use crate::services::Services;

/// The MCP endpoint, opened once the server knows the address it is bound to (its tools call
/// the API there, and with port 0 the port is known only after the bind), and whose each of its
/// sessions is.
#[derive(Default)]
pub struct McpDoor {
    endpoint: OnceLock<McpHttp>,
    /// Each session's tenant (None on an open server), by session id: a session is used only by
    /// its own tenant's keys, and is no other's to end.
    owners: Mutex<HashMap<String, Option<String>>>,
}

/// The header naming an MCP session.
const SESSION: &str = "mcp-session-id";

impl McpDoor {
    /// Open the endpoint for a server bound to `bound`, with the settings of `config`.
    pub fn open(&self, bound: SocketAddr, config: &crate::config::Config) -> Result<(), crate::mcp::ClientError> {
        let idle = Duration::from_secs_f64(config.mcp_session_idle_secs);
        let endpoint = McpHttp::new(bound, idle, max_body(config))?;
        // Opened once, at the start; a second call keeps the first.
        let _ = self.endpoint.set(endpoint);
        Ok(())
    }

    /// End the endpoint's sessions and event streams (the server is stopping).
    pub fn stop(&self) {
        if let Some(endpoint) = self.endpoint.get() {
            endpoint.stop();
        }
    }
}

impl McpDoor {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.owners.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The largest MCP message: a `write_file` of the largest file written at once, escaped.
fn max_body(config: &crate::config::Config) -> usize {
    let bytes = config.upload_max_file_bytes.saturating_mul(6).saturating_add(64 * 1024);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// `GET`, `POST` or `DELETE /mcp`.
pub async fn serve(
    services: web::Data<Services>,
    caller: Caller,
    door: web::Data<McpDoor>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The middleware judged the path; MCP's tools run code, so its door asks again itself.
    caller.may(request.method(), "/mcp")?;
    let session = request.headers().get(SESSION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(session) = &session {
        let owner = door.owners().get(session).cloned();
        // Another tenant's session is one this caller cannot tell from one that does not exist.
        if owner.is_some_and(|owner| !caller.sees(owner.as_deref())) {
            return Err(ApiError::new(ErrorCode::NoSuchRoute, "no such MCP session; start one with initialize"));
        }
    }
    let endpoint = door.endpoint.get().cloned().ok_or_else(|| {
        ApiError::new(ErrorCode::Internal, "the MCP endpoint is not open: the server has not bound yet")
    })?;
    let body = read_body(
        &request,
        payload,
        max_body(&services.config),
        "the largest MCP message (a write_file of TRACEBOX_UPLOAD_MAX_FILE_BYTES)",
    )
    .await?;
    let forwarded = forward(&request, body.freeze(), super::auth::credential(&request))?;
    // On the server's runtime, like every run: a session rmcp starts there outlives this worker's request.
    let answer = services
        .runner
        .runtime()
        .spawn(async move { endpoint.handle(forwarded).await })
        .await
        .map_err(|error| ApiError::new(ErrorCode::Internal, format!("the MCP endpoint failed: {error}")))?;
    let made = answer.headers().get(SESSION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match (made, session) {
        (Some(made), _) => {
            door.owners().entry(made).or_insert_with(|| caller.owner().map(str::to_owned));
        }
        (None, Some(ended)) if request.method() == actix_web::http::Method::DELETE => {
            door.owners().remove(&ended);
        }
        _ => {}
    }
    Ok(respond(answer))
}

/// The actix request as an `http` request, with `body`; its key or token (`credential`, from
/// whichever header or cookie it came in) as `Authorization: Bearer`, the one place the tools
/// read it from (`mcp/mod.rs`).
fn forward(
    request: &HttpRequest,
    body: bytes::Bytes,
    credential: Option<String>,
) -> Result<http::Request<Full<bytes::Bytes>>, ApiError> {
    let mut forwarded = http::Request::builder().method(request.method().as_str()).uri(request.uri().to_string());
    let carries_credential = |name: &str| matches!(name, "authorization" | "x-api-key" | "cookie");
    for (name, value) in request.headers().iter().filter(|(name, _)| !carries_credential(name.as_str())) {
        forwarded = forwarded.header(name.as_str(), value.as_bytes());
    }
    if let Some(credential) = credential {
        forwarded = forwarded.header("authorization", format!("Bearer {credential}"));
    }
    forwarded.body(Full::new(body)).map_err(|error| {
        ApiError::new(ErrorCode::Internal, format!("cannot pass the request to the MCP endpoint: {error}"))
    })
}

/// rmcp's answer as an actix response whose body streams as rmcp writes it.
fn respond(
    answer: http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>>,
) -> HttpResponse {
    let (parts, body) = answer.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    // The length and framing are actix's to set for the stream it sends.
    let hop = [http::header::CONTENT_LENGTH, http::header::TRANSFER_ENCODING, http::header::CONNECTION];
    for (name, value) in parts.headers.iter().filter(|(name, _)| !hop.contains(name)) {
        response.append_header((name.as_str(), value.as_bytes()));
    }
    response.streaming(body.into_data_stream())
}
