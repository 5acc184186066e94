//! Access at the door (docs/access.md): [`authenticate`] is the middleware, inside the guard, that
//! finds who every request is from (a key or token in `Authorization: Bearer`, `X-API-Key` or the
//! sign-in cookie) and hands handlers a [`Caller`]; the routes here make tokens and sign browsers
//! in and out. What a caller may see, the handlers ask the `Caller`.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::{ApiError, ErrorCode};
use super::{page, read_json};
use crate::access::{AccessError, AuthMode, Caller, TokenRequest};
use crate::services::Services;

/// The cookie a signed-in browser holds: a token (never the key), `HttpOnly`, `SameSite=Strict`.
pub const SESSION_COOKIE: &str = "tracebox_session";

/// Routes anyone may reach: the health check, the assets and the sign-in page need no key.
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/login" | "/auth/login" | "/auth/logout") || path.starts_with("/static/")
}

/// The middleware: a request needing a key it does not carry well gets 401 (a browser asking for
/// a page is sent to sign in), one its token does not reach 403, one over its key's rate 429.
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if public(request.path()) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    match caller_of(request.request()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(next.call(request).await?.map_into_left_body())
        }
        // No key, or a stale one (an expired sign-in): a browser is sent to sign in again.
        Err(AccessError::Missing | AccessError::BadKey | AccessError::BadToken(_)) if wants_page(request.request()) => {
            let next_path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
            let location = format!("/login?{}", serde_urlencoded::to_string([("next", next_path)]).unwrap_or_default());
            let response = HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish();
            Ok(request.into_response(response).map_into_right_body())
        }
        Err(error) => Ok(request.error_response(ApiError::from(error)).map_into_right_body()),
    }
}

fn caller_of(request: &HttpRequest) -> Result<Caller, AccessError> {
    let services = request
        .app_data::<web::Data<Services>>()
        .ok_or_else(|| AccessError::Forbidden("the app has no services to check keys with".into()))?;
    let caller = services.access.authenticate(credential(request).as_deref())?;
    // The path as the router matches it, percent-decoded: `/%77s` reaches `/ws`.
    caller.may(request.method(), request.match_info().as_str())?;
    Ok(caller)
}

/// The key or token a request carries: `Authorization: Bearer`, else `X-API-Key`, else the cookie.
pub(super) fn credential(request: &HttpRequest) -> Option<String> {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
    let api_key = || headers.get("x-api-key").and_then(|value| value.to_str().ok());
    let found = bearer.or_else(api_key).map(|value| value.trim().to_owned());
    found.or_else(|| request.cookie(SESSION_COOKIE).map(|cookie| cookie.value().to_owned()))
}

/// A browser following a link to a page, which is better sent to sign in than shown a 401.
fn wants_page(request: &HttpRequest) -> bool {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    request.method() == Method::GET && accept.contains("text/html")
}

/// Handlers take the caller the middleware found.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(request.extensions().get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(ErrorCode::Internal, "this route is public, but its handler asked who the caller is")
        }))
    }
}

/// `POST /auth/token`: a key exchanged for a short-lived token, optionally limited to one sandbox
/// and to reads.
pub async fn token(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let empty = request.headers().get(header::CONTENT_LENGTH).is_some_and(|length| length == "0");
    let asked: TokenRequest = if empty {
        TokenRequest::default()
    } else {
        read_json(&request, payload, 4096, "more than a token request needs").await?
    };
    if let Some(sandbox) = &asked.sandbox {
        // A token for a sandbox the key cannot see would confirm that it exists; refuse as a 404.
        let owner = services.store.sandbox(sandbox).await?.map(|record| record.tenant);
        if !owner.is_some_and(|owner| caller.sees(owner.as_deref())) {
            return Err(crate::sandboxes::SandboxesError::NotFound(sandbox.clone()).into());
        }
    }
    Ok(HttpResponse::Ok().json(services.access.issue(&caller, &asked)?))
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    next: String,
    error: Option<String>,
    open: bool,
    /// The sign-in page never offers to sign out.
    signed_in: bool,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path of this server, never another site (`//evil`, `/\evil`,
/// or `/<tab>/evil`, which a browser reads as `//evil` once it drops the tab).
fn local_path(next: Option<&str>) -> String {
    let plain = |path: &str| !path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && plain(path) => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `GET /login`: the sign-in page.
pub async fn login_page(
    services: web::Data<Services>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let open = services.access.mode()? == AuthMode::Open;
    page(&Login { next: local_path(query.next.as_deref()), error: None, open, signed_in: false })
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    next: Option<String>,
}

/// `POST /auth/login` (the page's form): a key in, a session cookie out, then back to the page.
pub async fn login(
    services: web::Data<Services>,
    request: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    let next = local_path(form.next.as_deref());
    match services.access.session(form.key.trim()) {
        Ok(issued) => {
            let cookie = session_cookie(&request, issued.token, CookieDuration::seconds(issued.expires_in as i64));
            Ok(HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, next)).finish())
        }
        Err(error) => {
            let message = match error {
                AccessError::RateLimited { .. } => error.to_string(),
                _ => "that key is not valid (unknown, mistyped or revoked)".to_owned(),
            };
            let html = Login { next, error: Some(message), open: false, signed_in: false }
                .render()
                .map_err(|e| ApiError::new(ErrorCode::Internal, format!("rendering a page failed: {e}")))?;
            Ok(HttpResponse::Unauthorized().content_type("text/html; charset=utf-8").body(html))
        }
    }
}

/// `POST /auth/logout`: the session's token is ended (a copy of the cookie is worth nothing from
/// now on), the cookie cleared and the browser sent to sign in.
pub async fn logout(services: web::Data<Services>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(session) = request.cookie(SESSION_COOKIE) {
        services.access.end(session.value())?;
    }
    let mut cookie = session_cookie(&request, String::new(), CookieDuration::ZERO);
    cookie.make_removal();
    Ok(HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, "/login")).finish())
}

/// The session cookie: script cannot read it, no other site's request carries it, and it goes
/// only over HTTPS when the page came over HTTPS.
fn session_cookie(request: &HttpRequest, value: String, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(request.connection_info().scheme() == "https")
        .max_age(max_age)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_server_are_gone_back_to() {
        assert_eq!(local_path(Some("/traces?q=x")), "/traces?q=x");
        for elsewhere in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil",
            "/ /x",
            "traces",
            "",
        ] {
            assert_eq!(local_path(Some(elsewhere)), "/", "{elsewhere:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn only_health_assets_and_sign_in_are_public() {
        for path in ["/health", "/login", "/auth/login", "/auth/logout", "/static/style.css"] {
            assert!(public(path), "{path}");
        }
        for path in ["/", "/traces", "/metrics", "/execute", "/ws", "/mcp", "/auth/token", "/healthz", "/login/x"] {
            assert!(!public(path), "{path}");
        }
    }
}
