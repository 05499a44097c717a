//! `GET /healthz` — liveness: the process serves HTTP.

use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::ApiError;

/// Always 200 while the server runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Any other method on `/healthz`: the usual 405 body, with `Allow` naming the one method this path has.
pub async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
    response
}
