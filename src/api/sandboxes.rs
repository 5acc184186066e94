//! `/sandboxes`: stateful sandboxes (docs/api.md, "Sandboxes"). Each handler reads its request,
//! asks `Sandboxes`, and answers; commands and code cells answer as `/execute` does.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tracebox_model::sandbox::{SandboxOp, SandboxStatus};
use tracebox_model::{Execution, Status};

use super::error::{ApiError, ErrorCode};
use super::execute::ExecuteReply;
use super::{read_body, read_json};
use crate::access::Caller;
use crate::files::FileError;
use crate::sandboxes::{CodeRequest, CommandRequest, CreateRequest};
use crate::services::Services;

/// The `{id}` of a sandbox route, once the sandbox is found and the caller may see it: another
/// tenant's answers 404 exactly as one that does not exist (a 403 would confirm it exists). Every
/// route of one sandbox takes its id through this, so none can forget the check.
pub struct OwnedSandbox(String);

impl OwnedSandbox {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Display for OwnedSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for OwnedSandbox {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl actix_web::FromRequest for OwnedSandbox {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<OwnedSandbox, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let id = request.match_info().get("id").unwrap_or_default().to_owned();
        let services = request.app_data::<web::Data<Services>>().cloned();
        let caller = Caller::from_request(request, payload).into_inner();
        Box::pin(async move {
            let services = services.ok_or_else(|| ApiError::new(ErrorCode::Internal, "the app has no services"))?;
            owned(&services, &caller?, &id).await?;
            Ok(OwnedSandbox(id))
        })
    }
}

/// Ok when sandbox `id` exists and `caller` may see it; the same 404 as a missing one otherwise.
/// A token limited to another sandbox is refused first (the middleware judged the path too).
pub(super) async fn owned(services: &Services, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if let Some(only) = caller.grant().and_then(|grant| grant.sandbox.as_deref())
        && only != id
    {
        return Err(crate::access::AccessError::Forbidden(format!(
            "this token is limited to sandbox {only}: it reaches /sandboxes/{only} and its routes only"
        ))
        .into());
    }
    let record = services.sandboxes.record(id).await?;
    if caller.sees(record.tenant.as_deref()) {
        return Ok(());
    }
    Err(crate::sandboxes::SandboxesError::NotFound(id.to_owned()).into())
}

/// The largest JSON body of a sandbox request (a command or a cell with its stdin).
fn json_limit(services: &Services) -> usize {
    let config = &services.config;
    (config.max_code_bytes + config.max_stdin_bytes + crate::submission::MAX_ENV_BYTES).saturating_mul(6) + 64 * 1024
}

const WHY: &str = "more than the largest code and stdin allowed (TRACEBOX_MAX_CODE_BYTES, TRACEBOX_MAX_STDIN_BYTES)";

/// `POST /sandboxes`
pub async fn create(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut body: CreateRequest = read_json(&request, payload, json_limit(&services), WHY).await?;
    if let Some(repo) = &body.repo
        && crate::sandboxes::repo_acts_as_server(&repo.url)
        && !caller.is_admin()
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "`repo`: a path on the server or a file:// URL reads whatever the server's user can, and an ssh:// URL \
             goes with the server's SSH identity; with API keys only an admin key may clone one. Use an https:// URL",
        ));
    }
    body.tenant = caller.owner().map(str::to_owned);
    // A clone and setup commands are work of the key's like any run.
    let _run = if body.repo.is_some() || !body.setup.is_empty() { caller.run_permit()? } else { None };
    let sandboxes = services.sandboxes.clone();
    // Held until the new sandbox is recorded, so two creates at once cannot both take the last one.
    let _slot =
        services.access.sandbox_slot(&caller, |tenant| async move { sandboxes.count_of(&tenant).await }).await?;
    let view = services.sandboxes.detached(|sandboxes| async move { sandboxes.create(body).await }).await?;
    Ok(HttpResponse::Created().json(view))
}

/// `GET /sandboxes?status=…&metadata.KEY=VALUE`
pub async fn list(
    services: web::Data<Services>,
    caller: Caller,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let mut status = None;
    let mut tenant = None;
    let mut metadata = BTreeMap::new();
    for (key, value) in query.into_inner() {
        match key.strip_prefix("metadata.") {
            Some(name) => {
                metadata.insert(name.to_owned(), value);
            }
            None if key == "status" => {
                let parsed = value
                    .parse::<SandboxStatus>()
                    .map_err(|e| invalid_query(&format!("`status`: {e}; use running or paused")))?;
                status = Some(parsed);
            }
            None if key == "tenant" => tenant = Some(value),
            None => {
                return Err(invalid_query(&format!("unknown filter {key:?}; use status, tenant or metadata.KEY")));
            }
        }
    }
    let tenant = caller.list_tenant(tenant.as_deref())?;
    let sandboxes = services.sandboxes.list(status, &metadata, tenant.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "sandboxes": sandboxes })))
}

fn invalid_query(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// `GET /sandboxes/{id}`
pub async fn show(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(services.sandboxes.view(&id).await?))
}

/// `DELETE /sandboxes/{id}`
pub async fn delete(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    services.sandboxes.detached(|sandboxes| async move { sandboxes.delete(&id).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /sandboxes/cleanup`
pub async fn cleanup(services: web::Data<Services>, caller: Caller) -> Result<HttpResponse, ApiError> {
    // A user key's cleanup is of its own sandboxes; an admin's (or an open server's), of all.
    let tenant = caller.list_tenant(None)?;
    let removed =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.cleanup(tenant.as_deref()).await }).await?;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutBody {
    timeout: Option<f64>,
    on_timeout: Option<String>,
}

/// `POST /sandboxes/{id}/timeout`
pub async fn timeout(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: TimeoutBody = read_json(&request, payload, 4096, "a timeout and what to do then").await?;
    let id = id.into_inner();
    let view = services
        .sandboxes
        .detached(|sandboxes| async move { sandboxes.set_timeout(&id, body.timeout, body.on_timeout.as_deref()).await })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /sandboxes/{id}/pause`
pub async fn pause(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    Ok(HttpResponse::Ok()
        .json(services.sandboxes.detached(|sandboxes| async move { sandboxes.pause(&id).await }).await?))
}

/// `POST /sandboxes/{id}/resume`
pub async fn resume(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    Ok(HttpResponse::Ok()
        .json(services.sandboxes.detached(|sandboxes| async move { sandboxes.resume(&id).await }).await?))
}

/// `POST /sandboxes/{id}/commands`
pub async fn command(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    id: OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CommandRequest = read_json(&request, payload, json_limit(&services), WHY).await?;
    let _run = caller.run_permit()?;
    reply(services.sandboxes.command(&id, body).await?)
}

/// `POST /sandboxes/{id}/code`
pub async fn code(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    id: OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CodeRequest = read_json(&request, payload, json_limit(&services), WHY).await?;
    let _run = caller.run_permit()?;
    reply(services.sandboxes.code(&id, body).await?)
}

/// A step's answer: `/execute`'s, a refusal by the policy included.
fn reply(execution: Execution) -> Result<HttpResponse, ApiError> {
    if execution.status == Status::Blocked {
        return Err(ApiError::blocked(&execution));
    }
    Ok(HttpResponse::Ok().json(ExecuteReply::from(execution)))
}

/// `POST /sandboxes/{id}/code/restart`
pub async fn restart(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    services.sandboxes.detached(|sandboxes| async move { sandboxes.restart_kernel(&id).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PathQuery {
    pub path: Option<String>,
}

impl PathQuery {
    fn required(&self) -> Result<&str, ApiError> {
        self.path.as_deref().ok_or_else(|| {
            ApiError::new(ErrorCode::BadPath, "`path` is required: ?path=dir/file.txt (relative to /workspace)")
        })
    }
}

/// `GET /sandboxes/{id}/files?path=DIR`
pub async fn list_files(
    services: web::Data<Services>,
    id: OwnedSandbox,
    query: web::Query<PathQuery>,
) -> Result<HttpResponse, ApiError> {
    let entries = services.sandboxes.list_files(&id, query.path.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

/// `GET /sandboxes/{id}/files/content?path=P`: the bytes, a `Range: bytes=a-b` honoured, never
/// as something a browser would run.
pub async fn read_file(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    query: web::Query<PathQuery>,
) -> Result<HttpResponse, ApiError> {
    let path = query.required()?;
    let range = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(parse_range).transpose()?;
    let (id, owned) = (id.into_inner(), path.to_owned());
    let read =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.read_file(&id, &owned, range).await }).await?;
    let mut response = match range {
        Some(_) => {
            let end = (read.offset + read.bytes.len() as u64).saturating_sub(1);
            let mut partial = HttpResponse::PartialContent();
            partial.insert_header((header::CONTENT_RANGE, format!("bytes {}-{end}/{}", read.offset, read.size)));
            partial
        }
        None => HttpResponse::Ok(),
    };
    if read.redacted {
        response.insert_header(("x-tracebox-redacted", "true"));
    }
    let name = path.rsplit('/').next().unwrap_or("file").to_owned();
    Ok(response
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", name.replace('"', "_"))))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .body(read.bytes))
}

/// `bytes=a-b` or `bytes=a-`: (offset, length).
fn parse_range(range: &str) -> Result<(u64, Option<u64>), ApiError> {
    let invalid =
        || ApiError::new(ErrorCode::InvalidQuery, format!("Range {range:?}: use bytes=START-END or bytes=START-"));
    let spec = range.strip_prefix("bytes=").ok_or_else(invalid)?;
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end = end.trim();
    if end.is_empty() {
        return Ok((start, None));
    }
    let end: u64 = end.parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    Ok((start, Some(end - start + 1)))
}

/// `PUT /sandboxes/{id}/files/content?path=P`: the raw body as the file.
pub async fn write_file(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    query: web::Query<PathQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let path = query.required()?;
    let limit = usize::try_from(services.sandboxes.settings().max_file_bytes).unwrap_or(usize::MAX);
    let body = read_body(&request, payload, limit, "the largest file written at once (TRACEBOX_UPLOAD_MAX_FILE_BYTES)")
        .await
        .map_err(|error| match error.code() {
            ErrorCode::BodyTooLarge => ApiError::new(ErrorCode::FileTooLarge, error.message().to_owned()),
            _ => error,
        })?;
    let (id, path) = (id.into_inner(), path.to_owned());
    let entry = services
        .sandboxes
        .detached(|sandboxes| async move { sandboxes.write_file(&id, &path, &body, SandboxOp::Write).await })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "entry": entry })))
}

/// `POST /sandboxes/{id}/files?path=DIR`: multipart/form-data files (fields named `file`) into
/// the directory DIR of `/workspace` (default: `/workspace` itself), made when missing.
pub async fn upload(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    query: web::Query<PathQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let dir = query.path.as_deref().unwrap_or(".");
    let settings = services.sandboxes.settings();
    let info = request.connection_info().clone();
    let how = format!(
        "send the files as multipart/form-data fields named `file`, e.g. curl -F file=@data.csv '{}://{}/sandboxes/{id}/files?path=data'",
        info.scheme(),
        info.host()
    );
    let body = super::paced(payload, super::BodyPace::of(&services.config));
    let mut parts = super::files::Parts::new(&request, body, settings.max_upload_bytes, how)?;
    let mut files = Vec::new();
    let mut total = 0u64;
    while let Some((name, mut chunks)) = parts.next_file().await? {
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| parts.refused(error))?;
            total += chunk.len() as u64;
            if total > settings.max_upload_bytes {
                return Err(FileError::UploadTooLarge { limit: settings.max_upload_bytes }.into());
            }
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > settings.max_file_bytes {
                return Err(ApiError::new(
                    ErrorCode::FileTooLarge,
                    format!(
                        "the file {name:?} is over {} bytes, the most written at once (TRACEBOX_UPLOAD_MAX_FILE_BYTES); nothing was written",
                        settings.max_file_bytes
                    ),
                ));
            }
        }
        files.push((name, bytes));
    }
    if files.is_empty() {
        return Err(parts.empty());
    }
    let (id, dir) = (id.into_inner(), dir.to_owned());
    let entries =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.upload(&id, &dir, &files).await }).await?;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

/// `DELETE /sandboxes/{id}/files/content?path=P`
pub async fn remove_file(
    services: web::Data<Services>,
    id: OwnedSandbox,
    query: web::Query<PathQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, path) = (id.into_inner(), query.required()?.to_owned());
    services.sandboxes.detached(|sandboxes| async move { sandboxes.remove_file(&id, &path).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    label: Option<String>,
    snapshot_id: Option<String>,
}

/// `POST /sandboxes/{id}/snapshots`
pub async fn snapshot(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SnapshotBody = read_optional_json(&request, payload).await?;
    let id = id.into_inner();
    let snapshot =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.snapshot(&id, body.label).await }).await?;
    Ok(HttpResponse::Created().json(snapshot_view(&snapshot)))
}

/// A snapshot as the API shows it.
fn snapshot_view(snapshot: &tracebox_model::sandbox::SnapshotRecord) -> serde_json::Value {
    json!({
        "snapshot_id": snapshot.id, "label": snapshot.label, "bytes": snapshot.bytes,
        "created_at": tracebox_model::format_us(snapshot.created_at_us),
    })
}

/// `GET /sandboxes/{id}/snapshots`
pub async fn snapshots(services: web::Data<Services>, id: OwnedSandbox) -> Result<HttpResponse, ApiError> {
    let snapshots: Vec<_> = services.sandboxes.snapshots(&id).await?.iter().map(snapshot_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "snapshots": snapshots })))
}

/// `POST /sandboxes/{id}/reset`
pub async fn reset(
    services: web::Data<Services>,
    request: HttpRequest,
    id: OwnedSandbox,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SnapshotBody = read_optional_json(&request, payload).await?;
    let id = id.into_inner();
    let view =
        services.sandboxes.detached(|sandboxes| async move { sandboxes.reset(&id, body.snapshot_id).await }).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A small JSON body that may also be empty (`curl -X POST` without `-d`).
async fn read_optional_json<T: serde::de::DeserializeOwned + Default>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let body = read_body(request, payload, 4096, "a label or a snapshot id").await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::decode_json(&body)
}
