//! The HTTP doors: one file per resource, each a thin translation between HTTP and the
//! pipeline. The whole route table is [`routes`].

mod batch;
mod claude;
mod error;
mod execute;
mod export;
mod files;
mod health;
mod playground;
mod trace_view;
mod traces;
mod units;
mod ws;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

pub use error::{ApiError, ErrorCode};

/// Every route of the server. A known path with the wrong method answers 405 naming the right one.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .service(resource("/execute", "POST").route(web::post().to(execute::execute)))
        .service(resource("/ws", "GET").route(web::get().to(ws::upgrade)))
        .service(resource("/claude", "POST").route(web::post().to(claude::claude)))
        .service(resource("/batch", "POST").route(web::post().to(batch::batch)))
        .service(
            resource("/", "GET, HEAD").route(web::get().to(playground::show)).route(web::head().to(playground::show)),
        )
        .service(
            resource("/health", "GET, HEAD").route(web::get().to(health::health)).route(web::head().to(health::health)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(health::metrics)))
        .service(
            resource("/traces", "GET, HEAD").route(web::get().to(traces::list)).route(web::head().to(traces::list)),
        )
        .service(
            resource("/traces/export", "GET, HEAD")
                .route(web::get().to(traces::export))
                .route(web::head().to(traces::export)),
        )
        .service(
            resource("/trace/{id}", "GET, HEAD").route(web::get().to(traces::show)).route(web::head().to(traces::show)),
        )
        .service(
            resource("/trace/{id}/output/{stream}", "GET, HEAD")
                .route(web::get().to(traces::output))
                .route(web::head().to(traces::output)),
        )
        .service(
            resource("/trace/{id}/artifacts/{name:.+}", "GET, HEAD")
                .route(web::get().to(files::trace_artifact))
                .route(web::head().to(files::trace_artifact)),
        )
        .service(resource("/upload", "POST").route(web::post().to(files::upload)))
        .service(
            resource("/download/{name}", "GET, HEAD")
                .route(web::get().to(files::download))
                .route(web::head().to(files::download)),
        )
        .service(
            resource("/download/artifacts/{trace_id}/{name:.+}", "GET, HEAD")
                .route(web::get().to(files::download_artifact))
                .route(web::head().to(files::download_artifact)),
        )
        .service(resource("/files", "GET, HEAD").route(web::get().to(files::list)).route(web::head().to(files::list)))
        .service(resource("/files/{name}", "DELETE").route(web::delete().to(files::delete)))
        .service(
            resource("/static/{file:.+}", "GET, HEAD")
                .route(web::get().to(static_file))
                .route(web::head().to(static_file)),
        )
        .default_service(web::to(not_found));
}

/// A resource whose other methods answer 405 with `Allow: allowed`.
fn resource(path: &'static str, allowed: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |request: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::method_not_allowed(request.method().as_str(), path, allowed))
    }))
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NoSuchRoute,
        format!(
            "no route for {} {}; see the API in the README (POST /execute, POST /claude, POST /batch, GET /traces, GET /trace/{{id}}, GET /traces/export, POST /upload, GET /files, GET /download/{{name}}, GET /download/artifacts/{{trace_id}}/{{name}}, GET /health, GET /metrics)",
            request.method(),
            request.path()
        ),
    ))
}

/// Read a JSON object body of at most `limit` bytes, whatever its `Content-Type` (so that a
/// bare `curl -d '{…}'` works), and decode it, naming the field that does not fit. `why` says
/// what the limit is made of, for the refusal.
async fn read_json<T: DeserializeOwned>(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    why: &str,
) -> Result<T, ApiError> {
    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING)
        && encoding.as_bytes() != b"identity"
    {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
        return Err(ApiError::new(
            ErrorCode::UnsupportedEncoding,
            format!("Content-Encoding {encoding:?} is not supported; send the body uncompressed"),
        ));
    }
    let too_large = || ApiError::new(ErrorCode::BodyTooLarge, format!("the request body is over {limit} bytes, {why}"));
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    decode_json(&body)
}

/// Decode a JSON object, refusing anything else (arrays, trailing data) with a message that
/// names the field at fault.
fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidJson, message);
    let example = "e.g. {\"code\": \"print(1)\"}";
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(invalid(format!("the body is empty; send a JSON object, {example}")));
    }
    if first != Some(&b'{') {
        return Err(invalid(format!("the body must be a JSON object, {example}")));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            invalid(format!("the body is not valid JSON: {inner}"))
        } else {
            invalid(format!("`{path}`: {inner}"))
        }
    })?;
    json.end().map_err(|e| invalid(format!("the body is not valid JSON: {e} (one JSON object, nothing after it)")))?;
    Ok(value)
}

/// How often a long answer (server-sent events, JSON Lines) says it is alive while nothing
/// else comes: proxies cut connections that stay silent for a minute.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// A response body of what `frames` receives, with `ping` sent whenever it was quiet for
/// [`KEEP_ALIVE`]; it ends when `frames` does.
fn keep_alive(
    frames: tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
    ping: bytes::Bytes,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(frames, move |mut frames| {
        let ping = ping.clone();
        async move {
            let next = match tokio::time::timeout(KEEP_ALIVE, frames.recv()).await {
                Ok(frame) => frame?,
                Err(_quiet) => ping,
            };
            Some((Ok(next), frames))
        }
    })
}

/// Does the client want JSON rather than a page? `?format=json` or an `Accept` that prefers it.
fn wants_json(request: &HttpRequest, format: Option<&str>) -> bool {
    if let Some(format) = format {
        return format == "json";
    }
    let accept = request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// A rendered page.
fn page(template: &impl askama::Template) -> Result<HttpResponse, ApiError> {
    let html =
        template.render().map_err(|e| ApiError::new(ErrorCode::Internal, format!("rendering a page failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html))
}

const CSS: &str = "text/css; charset=utf-8";
/// Scripts are ES modules too (trace.js imports highlight.js), and browsers run a module only
/// when it is served with a JavaScript type.
const JS: &str = "text/javascript; charset=utf-8";

/// The stylesheet, scripts and vendored highlight.js, compiled in so the binary serves its
/// pages from anywhere and the pages load nothing from elsewhere.
const STATIC_FILES: &[(&str, &str, &str)] = &[
    ("style.css", CSS, include_str!("../../static/style.css")),
    ("playground.css", CSS, include_str!("../../static/playground.css")),
    ("playground.js", JS, include_str!("../../static/playground.js")),
    ("traces.js", JS, include_str!("../../static/traces.js")),
    ("trace.js", JS, include_str!("../../static/trace.js")),
    ("vendor/highlight/core.min.js", JS, include_str!("../../static/vendor/highlight/core.min.js")),
    ("vendor/highlight/python.min.js", JS, include_str!("../../static/vendor/highlight/python.min.js")),
    ("vendor/highlight/javascript.min.js", JS, include_str!("../../static/vendor/highlight/javascript.min.js")),
    ("vendor/highlight/github.min.css", CSS, include_str!("../../static/vendor/highlight/github.min.css")),
    ("vendor/highlight/github-dark.min.css", CSS, include_str!("../../static/vendor/highlight/github-dark.min.css")),
    ("vendor/highlight/LICENSE", "text/plain; charset=utf-8", include_str!("../../static/vendor/highlight/LICENSE")),
];

async fn static_file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = STATIC_FILES
        .iter()
        .find(|(file, _, _)| *file == name.as_str())
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchFile, format!("no static file {:?}", name.as_str())))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        code: Option<String>,
    }

    fn refusal(body: &str) -> String {
        decode_json::<Body>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn only_one_json_object_is_a_body() {
        assert!(decode_json::<Body>(b" {\"code\": \"x\"} \n").is_ok());
        assert!(refusal(r#"["print(1)"]"#).contains("must be a JSON object"));
        assert!(refusal(r#""print(1)""#).contains("must be a JSON object"));
        assert!(refusal(r#"{"code": "1"}{"code": "2"}"#).contains("nothing after it"));
        assert!(refusal(r#"{"code": "1"} trailing"#).contains("nothing after it"));
    }

    #[test]
    fn a_wrong_field_is_named() {
        assert!(refusal(r#"{"code": 1}"#).contains("`code`"));
        assert!(refusal(r#"{"cod": "1"}"#).contains("cod"));
        assert!(refusal(r#"{"code": "1""#).contains("not valid JSON"));
    }
}
