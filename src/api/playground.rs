//! `GET /`: the playground, a page that runs code over `/ws` (static/playground.js).

use actix_web::{HttpResponse, web};
use askama::Template;

use super::error::ApiError;
use super::page;
use crate::access::Caller;
use crate::services::Services;

#[derive(Template)]
#[template(path = "playground.html")]
struct Playground {
    default_timeout_secs: f64,
    max_timeout_secs: f64,
    /// The page offers to sign out.
    signed_in: bool,
}

/// `GET /`
pub async fn show(services: web::Data<Services>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let config = &services.config;
    page(&Playground {
        default_timeout_secs: config.default_timeout_secs,
        max_timeout_secs: config.max_timeout_secs,
        signed_in: caller.grant().is_some(),
    })
}
