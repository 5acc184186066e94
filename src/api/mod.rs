//! The HTTP doors: one file per resource, each a thin translation between HTTP and the
//! pipeline. The whole route table is [`routes`], every route of it behind [`guard`].

mod auth;
mod batch;
mod claude;
mod error;
mod execute;
mod export;
mod files;
mod guard;
mod health;
mod mcp;
mod nodes;
mod playground;
mod sandboxes;
mod schedule;
mod tools;
mod trace_view;
mod traces;
mod units;
mod ws;

use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::Config;
use crate::services::Services;

pub use error::{ApiError, ErrorCode};
pub use guard::{Authority, WebOrigin};
pub use mcp::McpDoor;

/// Every route of the server, in one scope behind the guard (`guard.rs`: the `Host` and where a
/// browser request comes from) and then access (`auth.rs`: who it is from), so that no route, an
/// unknown path's 404 included, can be added without both. (actix runs the last `wrap` first.)
pub fn routes(config: &mut web::ServiceConfig) {
    config.app_data(web::QueryConfig::default().error_handler(error::query_error)).service(
        web::scope("")
            .wrap(actix_web::middleware::from_fn(auth::authenticate))
            .wrap(actix_web::middleware::from_fn(guard::guard))
            .configure(table),
    );
}

/// `/sandboxes` and what a sandbox does.
fn sandbox_routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/sandboxes", "GET, POST")
                .route(web::get().to(sandboxes::list))
                .route(web::post().to(sandboxes::create)),
        )
        .service(resource("/sandboxes/cleanup", "POST").route(web::post().to(sandboxes::cleanup)))
        .service(
            resource("/sandboxes/{id}", "GET, DELETE")
                .route(web::get().to(sandboxes::show))
                .route(web::delete().to(sandboxes::delete)),
        )
        .service(resource("/sandboxes/{id}/timeout", "POST").route(web::post().to(sandboxes::timeout)))
        .service(resource("/sandboxes/{id}/pause", "POST").route(web::post().to(sandboxes::pause)))
        .service(resource("/sandboxes/{id}/resume", "POST").route(web::post().to(sandboxes::resume)))
        .service(resource("/sandboxes/{id}/commands", "POST").route(web::post().to(sandboxes::command)))
        .service(resource("/sandboxes/{id}/code", "POST").route(web::post().to(sandboxes::code)))
        .service(resource("/sandboxes/{id}/code/restart", "POST").route(web::post().to(sandboxes::restart)))
        .service(
            resource("/sandboxes/{id}/files", "GET, POST")
                .route(web::get().to(sandboxes::list_files))
                .route(web::post().to(sandboxes::upload)),
        )
        .service(
            resource("/sandboxes/{id}/files/content", "GET, PUT, DELETE")
                .route(web::get().to(sandboxes::read_file))
                .route(web::put().to(sandboxes::write_file))
                .route(web::delete().to(sandboxes::remove_file)),
        )
        .service(
            resource("/sandboxes/{id}/snapshots", "GET, POST")
                .route(web::get().to(sandboxes::snapshots))
                .route(web::post().to(sandboxes::snapshot)),
        )
        .service(resource("/sandboxes/{id}/reset", "POST").route(web::post().to(sandboxes::reset)))
        .service(resource("/sandboxes/{id}/tools/{name}", "POST").route(web::post().to(tools::call)))
        .service(resource("/sandboxes/{id}/trajectory", "GET").route(web::get().to(tools::trajectory)))
        .service(resource("/sandboxes/{id}/replay", "POST").route(web::post().to(tools::replay)));
}

/// The route table. A known path with the wrong method answers 405 naming the right one.
fn table(config: &mut web::ServiceConfig) {
    config
        .service(resource("/execute", "POST").route(web::post().to(execute::execute)))
        .service(resource("/auth/token", "POST").route(web::post().to(auth::token)))
        .service(resource("/auth/login", "POST").route(web::post().to(auth::login)))
        .service(resource("/auth/logout", "POST").route(web::post().to(auth::logout)))
        .service(resource("/login", "GET").route(web::get().to(auth::login_page)))
        .service(resource("/ws", "GET").route(web::get().to(ws::upgrade)))
        .service(resource("/claude", "POST").route(web::post().to(claude::claude)))
        .service(resource("/batch", "POST").route(web::post().to(batch::batch)))
        .service(resource("/schedule", "POST").route(web::post().to(schedule::schedule)))
        .service(resource("/nodes", "GET").route(web::get().to(nodes::list)))
        .service(resource("/nodes/{name}/drain", "POST").route(web::post().to(nodes::drain)))
        .service(resource("/nodes/{name}/undrain", "POST").route(web::post().to(nodes::undrain)))
        .service(
            resource("/mcp", "GET, POST, DELETE")
                .route(web::get().to(mcp::serve))
                .route(web::post().to(mcp::serve))
                .route(web::delete().to(mcp::serve)),
        )
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
        .configure(sandbox_routes)
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
            "no route for {} {}; see docs/api.md (POST /execute, POST /claude, POST /batch, POST /mcp, GET /traces, GET /trace/{{id}}, GET /traces/export, POST /upload, GET /files, GET /download/{{name}}, GET /download/artifacts/{{trace_id}}/{{name}}, POST /sandboxes, GET /sandboxes/{{id}} and its routes, GET /health, GET /metrics)",
            request.method(),
            request.path()
        ),
    ))
}

/// Read a JSON object body of at most `limit` bytes, whatever its `Content-Type` (so that a
/// bare `curl -d '{…}'` works), at the pace the settings ask (see [`BodyPace`]), and decode it,
/// naming the field that does not fit. `why` says what the limit is made of, for the refusal.
async fn read_json<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    why: &str,
) -> Result<T, ApiError> {
    decode_json(&read_body(request, payload, limit, why).await?)
}

/// Read a body of at most `limit` bytes, uncompressed, at the pace the settings ask.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    why: &str,
) -> Result<web::BytesMut, ApiError> {
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
    let unreadable = |error: PayloadError| match stall_of(&error) {
        Some(stall) => ApiError::from(stall),
        None => ApiError::new(ErrorCode::InvalidJson, format!("cannot read the request body: {error}")),
    };
    let mut payload = std::pin::pin!(paced(payload, pace_of(request)?));
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How slowly a request body may come before the server stops waiting for it: at most `gap`
/// between two chunks, and once it has taken `gap`, at least `min_rate` bytes a second on average
/// (Apache's mod_reqtimeout works the same way). Each rule alone falls short: a pause limit lets a
/// body trickled a byte every `gap` hold its connection for as long as its size allows, and a
/// limit on the whole time would cut a large upload on a slow but steady link.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BodyPace {
    gap: Duration,
    /// Bytes a second; 0 sets no floor.
    min_rate: u64,
}

impl BodyPace {
    fn of(config: &Config) -> BodyPace {
        BodyPace { gap: config.body_read_timeout(), min_rate: config.body_min_bytes_per_sec }
    }

    /// When the next chunk must have come, and what it will have broken if it has not, for a
    /// body read since `start` that sent its last chunk at `last` and `received` bytes in all.
    fn deadline(self, start: Instant, last: Instant, received: u64) -> (Instant, Rule) {
        let paused = last + self.gap;
        if self.min_rate == 0 {
            return (paused, Rule::Pause);
        }
        // Each byte earns 1/min_rate s more; so many that the sum overflows is no deadline at all.
        let earned = Duration::try_from_secs_f64(received as f64 / self.min_rate as f64).ok();
        match earned.and_then(|earned| start.checked_add(self.gap + earned)) {
            Some(slow) if slow < paused => (slow, Rule::Pace),
            _ => (paused, Rule::Pause),
        }
    }

    /// The refusal for a body that broke `rule` after `received` bytes in `elapsed`.
    fn stall(self, rule: Rule, received: u64, elapsed: Duration) -> Stall {
        match rule {
            Rule::Pause => Stall::Paused { gap: self.gap },
            Rule::Pace => Stall::TooSlow { min_rate: self.min_rate, received, elapsed, gap: self.gap },
        }
    }
}

/// Which rule of [`BodyPace`] a deadline keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Pause,
    Pace,
}

/// A request body that came too slowly, and what it should have done: a 408 (see `error.rs`).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
enum Stall {
    #[error(
        "the request body paused for more than {} s between two chunks, the limit \
         (TRACEBOX_BODY_READ_TIMEOUT_SECS); send it without pauses that long",
        gap.as_secs_f64()
    )]
    Paused { gap: Duration },
    #[error(
        "the request body came at under {min_rate} bytes/s on average ({received} bytes in {:.1} s), the \
         least allowed once a body has taken {} s (TRACEBOX_BODY_MIN_BYTES_PER_SEC); send it faster",
        elapsed.as_secs_f64(),
        gap.as_secs_f64()
    )]
    TooSlow { min_rate: u64, received: u64, elapsed: Duration, gap: Duration },
}

/// The pace of this server's settings (every request of the app carries its services).
fn pace_of(request: &HttpRequest) -> Result<BodyPace, ApiError> {
    let services = request
        .app_data::<web::Data<Services>>()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the app has no services to read the body pace from"))?;
    Ok(BodyPace::of(&services.config))
}

/// `body`, failing with a [`Stall`] when it comes slower than `pace` allows. The stall travels
/// as an I/O error of kind `TimedOut`, the one way a multipart parser passes it on unchanged;
/// [`stall_of`] finds it again. Nothing is read after a stall, and the stream may be polled
/// after its end (the multipart parser does).
fn paced<S>(body: S, pace: BodyPace) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'static
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let start = Instant::now();
    futures_util::stream::unfold(Some((body, start, 0u64)), move |state| async move {
        let (mut body, last, received) = state?;
        let (deadline, rule) = pace.deadline(start, last, received);
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                let received = received + chunk.len() as u64;
                Some((Ok(chunk), Some((body, Instant::now(), received))))
            }
            Ok(Some(Err(error))) => Some((Err(error), Some((body, last, received)))),
            Ok(None) => None,
            Err(_late) => {
                let stall = pace.stall(rule, received, start.elapsed());
                Some((Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, stall))), None))
            }
        }
    })
    .fuse()
}

/// The [`Stall`] a read of a [`paced`] body failed with, if that is why it failed.
fn stall_of(error: &PayloadError) -> Option<Stall> {
    let PayloadError::Io(error) = error else { return None };
    error.get_ref()?.downcast_ref::<Stall>().copied()
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
        // Nothing of a URL (a trace id, a search) leaves for another site. Not `no-referrer`:
        // under it a browser sends `Origin: null` with the page's own forms (sign-in, sign-out),
        // which the guard must refuse as it refuses a sandboxed frame's.
        .add((header::REFERRER_POLICY, "same-origin"))
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

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn a_pause_up_to_the_limit_is_allowed_and_one_past_it_is_not() {
        let pace = BodyPace { gap: secs(1.0), min_rate: 0 };
        let start = Instant::now();
        let last = start + secs(30.0);
        // The next chunk may come as late as the limit itself; the read fails only past it.
        assert_eq!(pace.deadline(start, last, 5), (last + secs(1.0), Rule::Pause));
    }

    #[test]
    fn a_steady_body_earns_time_and_a_trickle_does_not() {
        let pace = BodyPace { gap: secs(10.0), min_rate: 1024 };
        let start = Instant::now();
        // Before any byte, the first chunk has the pause allowed.
        assert_eq!(pace.deadline(start, start, 0), (start + secs(10.0), Rule::Pause));
        // A slow link that keeps sending (1 MiB in 60 s, 17 KiB/s) is held only to its pauses,
        // however long the whole body takes.
        let last = start + secs(60.0);
        assert_eq!(pace.deadline(start, last, 1024 * 1024), (last + secs(10.0), Rule::Pause));
        // A byte every two seconds pauses less than allowed, but its pace runs out at 10 s.
        let (deadline, rule) = pace.deadline(start, start + secs(8.0), 4);
        assert_eq!(rule, Rule::Pace);
        assert_eq!(deadline, start + secs(10.0) + secs(4.0 / 1024.0));
        // At exactly the floor, the body earns its time as it goes.
        let (deadline, _) = pace.deadline(start, start + secs(19.0), 10 * 1024);
        assert_eq!(deadline, start + secs(20.0));
    }

    #[test]
    fn a_refusal_names_its_limit_and_setting() {
        let pace = BodyPace { gap: secs(2.5), min_rate: 100 };
        let paused = ApiError::from(pace.stall(Rule::Pause, 7, secs(3.0)));
        assert_eq!((paused.code(), paused.code().status().as_u16()), (ErrorCode::RequestTimeout, 408));
        assert!(paused.message().contains("2.5 s") && paused.message().contains("TRACEBOX_BODY_READ_TIMEOUT_SECS"));
        let slow = pace.stall(Rule::Pace, 7, secs(3.0)).to_string();
        assert!(slow.contains("100 bytes/s") && slow.contains("7 bytes in 3.0 s"), "{slow}");
        assert!(slow.contains("TRACEBOX_BODY_MIN_BYTES_PER_SEC"), "{slow}");
    }

    /// A body of `chunks`, each after its pause.
    fn body(chunks: &[(f64, &'static str)]) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static {
        let chunks = chunks.to_vec();
        Box::pin(futures_util::stream::iter(chunks).then(|(pause, text)| async move {
            tokio::time::sleep(secs(pause)).await;
            Ok(Bytes::from_static(text.as_bytes()))
        }))
    }

    #[tokio::test]
    async fn a_paced_body_passes_whole_and_a_stalled_one_stops_at_its_stall() {
        let pace = BodyPace { gap: secs(0.3), min_rate: 0 };
        let read: Vec<_> = paced(body(&[(0.0, "a"), (0.1, "b"), (0.1, "c")]), pace).collect().await;
        let read: Vec<Bytes> = read.into_iter().map(|chunk| chunk.unwrap()).collect();
        assert_eq!(read.concat(), b"abc");

        let mut ended = std::pin::pin!(paced(body(&[(0.0, "a")]), pace));
        while ended.next().await.is_some() {}
        assert!(ended.next().await.is_none(), "polled after its end, a body stays ended");

        let read: Vec<_> = paced(body(&[(0.0, "a"), (0.6, "b")]), pace).collect().await;
        assert_eq!(read.len(), 2, "nothing is read after the stall");
        assert_eq!(read[0].as_ref().unwrap().as_ref(), b"a");
        let error = read[1].as_ref().unwrap_err();
        assert_eq!(stall_of(error), Some(Stall::Paused { gap: secs(0.3) }), "{error}");
        assert_eq!(stall_of(&PayloadError::Overflow), None);
    }

    #[test]
    fn a_wrong_field_is_named() {
        assert!(refusal(r#"{"code": 1}"#).contains("`code`"));
        assert!(refusal(r#"{"cod": "1"}"#).contains("cod"));
        assert!(refusal(r#"{"code": "1""#).contains("not valid JSON"));
    }
}
