//! The HTTP doors: one file per resource, each a thin translation between HTTP and the
//! pipeline. The whole route table is [`routes`].

mod error;
mod execute;
mod health;
mod traces;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

pub use error::ApiError;
pub use execute::ExecuteBody;

use crate::policy::Policy;
use crate::runner::Runner;
use crate::sandbox::Sandbox;
use crate::trace::TraceStore;

/// What every handler may use.
pub struct AppState {
    pub runner: Runner,
    pub store: TraceStore,
    pub sandbox: Sandbox,
    pub policy: Arc<Policy>,
}

/// Every route of the server.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .route("/execute", web::post().to(execute::execute))
        .route("/health", web::get().to(health::health))
        .route("/traces", web::get().to(traces::list))
        .route("/trace/{id}", web::get().to(traces::show))
        .route("/static/{file}", web::get().to(static_file))
        .default_service(web::to(not_found));
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "no_such_route",
        format!(
            "no route for {} {}; see the API in the README (POST /execute, GET /traces, GET /trace/{{id}}, GET /health)",
            request.method(),
            request.path()
        ),
    ))
}

/// Read a JSON body of at most `limit` bytes, whatever its `Content-Type` (so that a bare
/// `curl -d '{…}'` works), and decode it, naming the field that does not fit.
async fn read_json<T: DeserializeOwned>(
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "body_too_large",
            format!(
                "the request body is over {limit} bytes (TRACEBOX_MAX_CODE_BYTES + TRACEBOX_MAX_STDIN_BYTES allow that much)"
            ),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("cannot read the request body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let mut json = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = if path == "." || inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            format!("`{path}`: {inner}")
        };
        ApiError::bad_request("invalid_json", message)
    })
}

/// Does the client want JSON rather than a page? `?format=json` or an `Accept` that prefers it.
fn wants_json(request: &HttpRequest, format: Option<&str>) -> bool {
    if let Some(format) = format {
        return format == "json";
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// A rendered page.
fn page(template: &impl askama::Template) -> Result<HttpResponse, ApiError> {
    let html = template
        .render()
        .map_err(|e| ApiError::internal(format!("rendering a page failed: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// The stylesheet and scripts, compiled in so the binary serves its pages from anywhere.
const STATIC_FILES: &[(&str, &str, &str)] = &[(
    "style.css",
    "text/css; charset=utf-8",
    include_str!("../../static/style.css"),
)];

async fn static_file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = STATIC_FILES
        .iter()
        .find(|(file, _, _)| *file == name.as_str())
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_file",
                format!("no static file {:?}", name.as_str()),
            )
        })?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(*body))
}

/// Headers on every answer: pages may load only their own assets and run no inline script.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}
