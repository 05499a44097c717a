//! POST …/decode — the Web UI, the CLI and remote-codec workers read payloads through here.

use actix_web::{HttpRequest, HttpResponse};

use super::codec::payloads_response;
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest};
use crate::state::AppState;

/// Authorize, open our payloads (others pass through), answer in the same order.
pub async fn decode(req: &HttpRequest, request: CodecRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let grant = state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Decode).await?;
    let count = request.payloads.payloads.len();
    let decoded = state.codec.decode(&grant, request.payloads.payloads).await?;
    tracing::debug!(namespace = %grant.namespace(), count, decoded = decoded.decoded, "Decoded payloads.");
    Ok(payloads_response(decoded.payloads))
}
