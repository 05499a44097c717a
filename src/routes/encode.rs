//! POST …/encode — workers and the CLI (`workflow start --input … --codec-endpoint`) seal payloads here.

use actix_web::{HttpRequest, HttpResponse};

use super::codec::payloads_response;
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest};
use crate::state::AppState;

/// Authorize, seal every payload, answer with the sealed payloads in the same order.
pub async fn encode(req: &HttpRequest, request: CodecRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let grant = state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Encode).await?;
    let count = request.payloads.payloads.len();
    let encoded = state.codec.encode(&grant, request.payloads.payloads).await?;
    tracing::debug!(namespace = %grant.namespace(), count, "Encoded payloads.");
    Ok(payloads_response(encoded.payloads))
}
