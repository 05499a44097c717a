//! `GET /healthz` — liveness: the process serves HTTP. `GET /readyz` — readiness of this replica
//! (configuration loaded, listening, not shutting down), answered from memory so the probe never waits
//! on a KMS or a database. `GET /readyz?verbose` adds the dependencies (each KMS backend in use, the
//! audit database) for people and alerts; their state never changes the status code. See
//! `crate::readiness` for why.

use actix_web::http::header::{ALLOW, CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Always 200 while the server runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 `{"status":"ready","checks":{…}}`, or 503 `not-ready` while shutting down. With `?verbose`
/// (any value) the body also has `"dependencies":{"kms:aws-kms":"ok"|"<reason>", …}` (short reasons only).
pub async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let local = state.readiness.local();
    let status = if local.ready() { "ready" } else { "not-ready" };
    let mut body = serde_json::json!({ "status": status, "checks": local.to_json() });
    if wants_verbose(req.query_string()) {
        let dependencies = state.readiness.dependencies().await;
        body["dependencies"] = dependencies.to_json();
    }
    let mut response = if local.ready() { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store"))).json(body)
}

/// `verbose`, `verbose=`, `verbose=1`, … anywhere in the query; `verbose=0`/`false` is off.
fn wants_verbose(query: &str) -> bool {
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == "verbose" && !matches!(value, "0" | "false")
    })
}

/// Any other method on `/healthz`, `/readyz` or `/metrics`: the usual 405 body, with `Allow` naming the one method this path has.
pub async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
    response
}

#[cfg(test)]
mod tests {
    use super::wants_verbose;

    #[test]
    fn verbose_is_a_flag_in_the_query() {
        for on in ["verbose", "verbose=", "verbose=1", "a=b&verbose=true"] {
            assert!(wants_verbose(on), "{on}");
        }
        for off in ["", "verbose=0", "verbose=false", "verbosex", "x=verbose"] {
            assert!(!wants_verbose(off), "{off}");
        }
    }
}
