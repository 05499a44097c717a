//! `GET /healthz` — liveness: the process serves HTTP.

use actix_web::HttpResponse;

use crate::error::ApiError;

/// Always 200 while the server runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Any other method on `/healthz`.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
