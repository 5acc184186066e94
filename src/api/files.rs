//! `POST /upload`, `GET /download/{name}`, `GET /files`, `DELETE /files/{name}`: multipart and
//! HTTP in, the `files` module behind. Uploads and downloads are recorded as traces.

use std::cell::Cell;
use std::rc::Rc;

use actix_files::NamedFile;
use actix_multipart::{Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use tracebox_model::record::{DownloadInput, DownloadOutput, ErrorReport, StoredFile, UploadInput, UploadOutput};
use tracebox_model::{Status, TraceId};

use super::error::{ApiError, ErrorCode};
use super::{BodyPace, paced, stall_of};
use crate::access::Caller;
use crate::files::{FileName, is_image};
use crate::services::Services;

/// What multipart framing (boundaries, part headers) may add to the files of a request.
const FRAMING_BYTES: u64 = 1024 * 1024;

/// How to call `POST /upload` on this server, for every refusal of its shape.
fn how(request: &HttpRequest) -> String {
    let info = request.connection_info();
    format!(
        "send the files as multipart/form-data fields named `file`, e.g. curl -F file=@data.csv -F file=@more.csv {}://{}/upload",
        info.scheme(),
        info.host()
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Replace a file of the same name instead of storing under a numbered name.
    #[serde(default)]
    overwrite: bool,
}

fn client(request: &HttpRequest) -> Option<String> {
    request.peer_addr().map(|addr| addr.to_string())
}

fn failure(error: &ApiError) -> ErrorReport {
    ErrorReport { code: Some(error.code().as_str().to_owned()), message: error.message().to_owned() }
}

/// `POST /upload`
pub async fn upload(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let overwrite = query.overwrite;
    let trace = services.files.begin_trace(UploadInput { client: client(&request), overwrite }, caller.owner());
    let id = trace.id();
    let body = paced(payload, BodyPace::of(&services.config));
    let upload = services.files.upload(caller.owner(), caller.limits().upload_quota_bytes);
    match receive(upload, services.files.max_request_bytes(), &request, body, overwrite, id).await {
        Ok(stored) => {
            let reply = json!({"files": stored, "trace_id": id});
            trace.finish(Status::Success, UploadOutput::Stored { files: stored }).await;
            Ok(HttpResponse::Ok().json(reply))
        }
        Err(error) => {
            let error = error.with_trace(id);
            trace.finish(Status::Error, UploadOutput::Refused { error: failure(&error) }).await;
            Err(error)
        }
    }
}

async fn receive(
    mut upload: crate::files::Upload,
    max_request_bytes: u64,
    request: &HttpRequest,
    payload: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
    overwrite: bool,
    trace_id: TraceId,
) -> Result<Vec<StoredFile>, ApiError> {
    let mut parts = Parts::new(request, payload, max_request_bytes, how(request))?;
    while let Some((name, mut field)) = parts.next_file().await? {
        upload.begin_file(FileName::parse(&name).map_err(crate::files::FileError::from)?).await?;
        while let Some(chunk) = field.next().await {
            upload.write(&chunk.map_err(|error| parts.refused(error))?).await?;
        }
    }
    if upload.is_empty() {
        return Err(parts.empty());
    }
    Ok(upload.commit(overwrite, trace_id).await?)
}

/// The files of a multipart/form-data body, one field named `file` each: what `POST /upload`
/// and a sandbox's upload read. The whole body, framing included, is counted against the
/// request's limit, so that framing without files cannot stream for ever.
pub(super) struct Parts {
    multipart: Multipart,
    read: Rc<Cell<u64>>,
    cap: u64,
    /// The request's limit on its files' bytes.
    limit: u64,
    /// How to call the route, for every refusal of the body's shape.
    how: String,
    files: usize,
}

impl Parts {
    /// Refuses at once a body that declares itself over `limit` (plus framing).
    pub(super) fn new(
        request: &HttpRequest,
        payload: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
        limit: u64,
        how: String,
    ) -> Result<Parts, ApiError> {
        let cap = limit.saturating_add(FRAMING_BYTES);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > cap) {
            return Err(crate::files::FileError::UploadTooLarge { limit }.into());
        }
        let read = Rc::new(Cell::new(0u64));
        let counter = Rc::clone(&read);
        let body = payload.map(move |chunk| {
            let chunk = chunk?;
            counter.set(counter.get() + chunk.len() as u64);
            if counter.get() > cap { Err(PayloadError::Overflow) } else { Ok(chunk) }
        });
        Ok(Parts { multipart: Multipart::new(request.headers(), body), read, cap, limit, how, files: 0 })
    }

    /// The next file: its name, and its bytes as a stream of chunks (read them before asking
    /// for the next file; map their errors with [`Parts::refused`]).
    pub(super) async fn next_file(
        &mut self,
    ) -> Result<Option<(String, impl Stream<Item = Result<Bytes, MultipartError>> + Unpin + use<>)>, ApiError> {
        let field = match self.multipart.next().await {
            None => return Ok(None),
            Some(Ok(field)) => field,
            // An empty multipart body (a closing boundary alone) parses as cut short.
            Some(Err(MultipartError::Incomplete)) if self.files == 0 && self.read.get() <= self.cap => return Ok(None),
            Some(Err(error)) => return Err(self.refused(error)),
        };
        if field.name() != Some("file") {
            let name = field.name().unwrap_or_default().to_owned();
            return Err(ApiError::new(ErrorCode::InvalidUpload, format!("unexpected field {name:?}; {}", self.how)));
        }
        let Some(name) = file_name(field.content_disposition()) else {
            return Err(ApiError::new(
                ErrorCode::InvalidUpload,
                format!("the field `file` carries no file name (a plain value, not a file); {}", self.how),
            ));
        };
        self.files += 1;
        Ok(Some((name, field)))
    }

    /// The error a broken body stands for: over the limit, too slow, or not multipart.
    pub(super) fn refused(&self, error: MultipartError) -> ApiError {
        if self.read.get() > self.cap {
            return crate::files::FileError::UploadTooLarge { limit: self.limit }.into();
        }
        if let MultipartError::Payload(payload) = &error
            && let Some(stall) = stall_of(payload)
        {
            return ApiError::from(stall);
        }
        let detail = match error {
            MultipartError::ContentTypeMissing
            | MultipartError::ContentTypeParse
            | MultipartError::ContentTypeIncompatible
            | MultipartError::BoundaryMissing => "the body is not multipart/form-data".to_owned(),
            other => format!("the multipart body is malformed or was cut short: {other}"),
        };
        ApiError::new(ErrorCode::InvalidUpload, format!("{detail}; {}", self.how))
    }

    /// The refusal of a body without a file.
    pub(super) fn empty(&self) -> ApiError {
        ApiError::new(ErrorCode::InvalidUpload, format!("the request holds no file; {}", self.how))
    }
}

/// The name a part gives its file: `filename*` (RFC 5987, any bytes) before `filename`.
fn file_name(disposition: Option<&ContentDisposition>) -> Option<String> {
    let disposition = disposition?;
    if let Some(extended) = disposition.get_filename_ext() {
        return Some(String::from_utf8_lossy(&extended.value).into_owned());
    }
    disposition.get_filename().map(str::to_owned)
}

fn parse_name(name: &str) -> Result<FileName, ApiError> {
    FileName::parse(name).map_err(|e| crate::files::FileError::from(e).into())
}

/// `GET /download/{name}` (and HEAD): the bytes, with ranges, as an inert attachment: an upload
/// is whatever a client sent, so it is served like a run's artifact, never as a type a browser runs.
pub async fn download(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<FilesQuery>,
) -> Result<HttpResponse, ApiError> {
    let space = caller.space(query.tenant.as_deref())?;
    traced_download(&services, &caller, &request, (name.to_string(), None), async {
        let name = parse_name(&name)?;
        let located = services.files.locate(&name, space.as_deref()).await?;
        let response = inert(&request, &located.path, name.as_str(), Shown::Download).await?;
        let served =
            DownloadOutput::Served { name: name.to_string(), run: None, size: located.size, sha256: located.sha256 };
        Ok((response, served))
    })
    .await
}

/// `GET /download/artifacts/{trace_id}/{name}` (and HEAD): a file a run left in
/// `/workspace/out/`, as an attachment, traced like any download.
pub async fn download_artifact(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (run, name) = path.into_inner();
    traced_download(&services, &caller, &request, (name.clone(), Some(run.clone())), async {
        let located = locate_artifact(&services, &caller, &run, &name, true).await?;
        let response = inert(&request, &located.path, &name, Shown::Download).await?;
        let served = DownloadOutput::Served {
            name: name.clone(),
            run: Some(run.clone()),
            size: located.size,
            sha256: located.sha256,
        };
        Ok((response, served))
    })
    .await
}

/// `GET /trace/{id}/artifacts/{name}` (and HEAD): an image a run made, as part of reading its
/// trace (the trace page shows it), so reading a trace makes no download traces. Only images:
/// everything else is downloaded, and traced.
pub async fn trace_artifact(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (run, name) = path.into_inner();
    if !is_image(&name) {
        return Err(ApiError::new(
            ErrorCode::NoSuchFile,
            format!("only images are shown with a trace; download {name:?} from /download/artifacts/{run}/{name}"),
        ));
    }
    let located = locate_artifact(&services, &caller, &run, &name, false).await?;
    inert(&request, &located.path, &name, Shown::Preview).await
}

/// A run's artifact, when `caller` may see the run: another tenant's is missing, as an artifact
/// of a run that does not exist is.
async fn locate_artifact(
    services: &Services,
    caller: &Caller,
    run: &str,
    name: &str,
    with_hash: bool,
) -> Result<crate::files::Located, ApiError> {
    let trace_id: TraceId = run.parse().map_err(|_| {
        ApiError::new(ErrorCode::NoSuchTrace, format!("{run:?} is not a trace id; trace ids are UUIDs from /traces"))
    })?;
    match services.store.tenant_of(trace_id).await? {
        Some(owner) if caller.sees(owner.as_deref()) => {
            Ok(services.files.locate_artifact(trace_id, name, with_hash).await?)
        }
        _ => Err(crate::files::FileError::NoSuchArtifact { trace_id, name: name.to_owned() }.into()),
    }
}

/// Where a served file is shown, which decides the types it may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A download (an upload or an artifact): only types a browser displays and never runs.
    Download,
    /// The trace page's preview of an artifact image, in an `<img>`: SVG too, since an image
    /// element runs no script.
    Preview,
}

/// The types a download keeps, by extension: ones a browser only ever displays. Everything
/// else (HTML, scripts of any extension, SVG, XML, PDF…) is plain bytes.
const INERT_TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
];

/// The policy of every served file: nothing may load, nothing may run, and the document (should a
/// browser ever render one) is in a sandbox of its own origin, not this server's. A file under it
/// can never become a `script-src 'self'` source for a page of this server either: with
/// `nosniff`, browsers refuse a script whose type is not JavaScript.
const INERT_POLICY: &str = "default-src 'none'; sandbox";

/// The `Content-Type` of `name` served where `shown`: its own type when a browser only displays
/// it there, `application/octet-stream` otherwise.
fn served_type(name: &str, shown: Shown) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    if shown == Shown::Preview && extension == "svg" {
        return "image/svg+xml";
    }
    INERT_TYPES.iter().find(|(known, _)| *known == extension).map_or("application/octet-stream", |(_, kind)| kind)
}

/// Serve a file that came from outside (an upload, or what a sandboxed program wrote) so that no
/// browser runs it: an attachment, of a type it only displays (see [`served_type`]), with
/// `nosniff` and [`INERT_POLICY`]. The one way uploads and artifacts are served, so the two
/// cannot drift apart.
async fn inert(
    request: &HttpRequest,
    path: &std::path::Path,
    name: &str,
    shown: Shown,
) -> Result<HttpResponse, ApiError> {
    let mut response = attachment(request, path, name).await?;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(served_type(name, shown)));
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(INERT_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// Serve a download of `(name, run)` (an artifact's run, or None for an upload) and record it
/// as a trace (for GET; a HEAD only asks about it).
async fn traced_download(
    services: &Services,
    caller: &Caller,
    request: &HttpRequest,
    (name, run): (String, Option<String>),
    served: impl Future<Output = Result<(HttpResponse, DownloadOutput), ApiError>>,
) -> Result<HttpResponse, ApiError> {
    if request.method() != actix_web::http::Method::GET {
        return served.await.map(|(response, _)| response);
    }
    let range = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let input = DownloadInput { name, run, client: client(request), range };
    let mut trace = services.files.begin_trace(input, caller.owner());
    let id = trace.id();
    match served.await {
        Ok((response, output)) => {
            trace.record("served", json!({"status": response.status().as_u16()}));
            trace.finish(Status::Success, output).await;
            Ok(response)
        }
        Err(error) => {
            let error = error.with_trace(id);
            trace.finish(Status::Error, DownloadOutput::Refused { error: failure(&error) }).await;
            Err(error)
        }
    }
}

/// The file at `path` as an attachment named after the last part of `name`: `Content-Length`,
/// `ETag`, `Last-Modified` and ranges (its type is [`inert`]'s to set).
async fn attachment(request: &HttpRequest, path: &std::path::Path, name: &str) -> Result<HttpResponse, ApiError> {
    let owned = path.to_owned();
    let failed = |e: &dyn std::fmt::Display| ApiError::new(ErrorCode::Internal, format!("opening {name} failed: {e}"));
    let file =
        web::block(move || NamedFile::open(owned)).await.map_err(|e| failed(&e))?.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ApiError::new(ErrorCode::NoSuchFile, format!("{name:?} was removed as it was about to be sent"))
            }
            _ => failed(&e),
        })?;
    let base = name.rsplit('/').next().unwrap_or(name).to_owned();
    let mut parameters = vec![DispositionParam::Filename(base.clone())];
    if !base.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: base.into_bytes(),
        }));
    }
    let disposition = ContentDisposition { disposition: DispositionType::Attachment, parameters };
    Ok(file.set_content_disposition(disposition).into_response(request))
}

/// Whose uploads a request reaches: `?tenant=` lets an admin key reach another tenant's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    tenant: Option<String>,
}

/// `GET /files`
pub async fn list(
    services: web::Data<Services>,
    caller: Caller,
    query: web::Query<FilesQuery>,
) -> Result<HttpResponse, ApiError> {
    let files = services.files.list(caller.space(query.tenant.as_deref())?.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "files": files })))
}

/// `DELETE /files/{name}`
pub async fn delete(
    services: web::Data<Services>,
    caller: Caller,
    name: web::Path<String>,
    query: web::Query<FilesQuery>,
) -> Result<HttpResponse, ApiError> {
    services.files.delete(&parse_name(&name)?, caller.space(query.tenant.as_deref())?.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_keeps_only_a_type_browsers_never_run() {
        for name in ["x.js", "x.mjs", "x.html", "x.htm", "x.svg", "x.xml", "x.xhtml", "x.pdf", "x.wasm", "x", "x.JS"] {
            assert_eq!(served_type(name, Shown::Download), "application/octet-stream", "{name}");
        }
        assert_eq!(served_type("plot.PNG", Shown::Download), "image/png");
        assert_eq!(served_type("out/a.b.jpeg", Shown::Download), "image/jpeg");
        assert_eq!(served_type("table.csv", Shown::Download), "text/csv");
    }

    #[test]
    fn only_a_preview_shows_svg_as_an_image() {
        assert_eq!(served_type("plot.svg", Shown::Preview), "image/svg+xml");
        assert_eq!(served_type("plot.svg", Shown::Download), "application/octet-stream");
        assert_eq!(served_type("page.html", Shown::Preview), "application/octet-stream");
    }
}
