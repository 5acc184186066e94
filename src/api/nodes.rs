//! `GET /nodes` (each Docker engine: state, heartbeat, capacity, what runs there, its pool) and
//! `POST /nodes/{name}/drain` · `/undrain` (admin): stop or resume placing new work on one.

use actix_web::{HttpResponse, web};

use super::error::{ApiError, ErrorCode};
use crate::access::Caller;
use crate::services::Services;

/// `GET /nodes`: any caller may see where work can go (no tenant's things are in it); the
/// engines' addresses and errors are for admins.
pub async fn list(services: web::Data<Services>, caller: Caller) -> HttpResponse {
    let mut views = services.nodes.views();
    if !caller.is_admin() {
        views = views.into_iter().map(crate::nodes::NodeView::redacted).collect();
    }
    HttpResponse::Ok().json(serde_json::json!({ "nodes": views }))
}

/// `POST /nodes/{name}/drain`
pub async fn drain(
    services: web::Data<Services>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_draining(&services, &caller, &name, true)
}

/// `POST /nodes/{name}/undrain`
pub async fn undrain(
    services: web::Data<Services>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_draining(&services, &caller, &name, false)
}

fn set_draining(services: &Services, caller: &Caller, name: &str, draining: bool) -> Result<HttpResponse, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "draining a node changes where every tenant's work goes: it needs an admin key",
        ));
    }
    Ok(HttpResponse::Ok().json(services.nodes.drain(name, draining)?))
}
