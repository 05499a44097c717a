//! `GET /healthz` — liveness: the process serves HTTP. `GET /readyz` — readiness: the configuration is
//! loaded and every dependency (KMS backends, audit database) answers; see `crate::readiness`.

use actix_web::http::header::{ALLOW, CACHE_CONTROL, HeaderValue};
use actix_web::{HttpResponse, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Always 200 while the server runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 with every check `ok`, or 503 naming the checks that failed (short reasons only).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let report = state.readiness.report().await;
    let mut response = if report.ready() { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store"))).json(report.to_json())
}

/// Any other method on `/healthz`, `/readyz` or `/metrics`: the usual 405 body, with `Allow` naming the one method this path has.
pub async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
    response
}
