//! Suffix routing for every codec path: `…/encode`, `…/decode`, `…/download` (DESIGN §3).

use actix_web::http::Method;
use actix_web::http::header::ALLOW;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{decode, encode};
use crate::error::ApiError;
use crate::protocol::request::NAMESPACE_HEADER;
use crate::protocol::{CodecOp, CodecPath, CodecRequest, Payload, reply};
use crate::state::AppState;

/// Finds the operation from the path and runs it; everything that is not a codec path is 404.
/// CORS preflights never reach here: the CORS middleware answers them.
pub async fn dispatch(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let namespace_header = req.headers().get(NAMESPACE_HEADER).map(|v| v.as_bytes());
    let path =
        CodecPath::resolve(req.path(), &state.protocol.path_prefix, namespace_header).ok_or(ApiError::NotFound)?;
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return Ok(HttpResponse::NoContent().insert_header((ALLOW, "POST, OPTIONS")).finish()),
        _ => return Err(ApiError::MethodNotAllowed),
    }
    if path.op == CodecOp::Download {
        return Err(ApiError::DownloadUnsupported);
    }
    // Headers only: the body is read by the handler after it has authorized the caller.
    let request = CodecRequest::from_head(&req, &path, &state.protocol)?;
    let payloads = match request.op {
        CodecOp::Encode => encode::encode(&req, request, body, &state).await?,
        CodecOp::Decode | CodecOp::Download => decode::decode(&req, request, body, &state).await?,
    };
    Ok(payloads_response(payloads))
}

/// A JSON response with the Payloads body (the handlers return the payloads, so they need nothing here);
/// large ones are streamed (`protocol::reply`).
fn payloads_response(payloads: Vec<Payload>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(reply::body(&payloads))
}
