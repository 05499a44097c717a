//! POST …/decode — the Web UI, the CLI and remote-codec workers read payloads through here.

use actix_web::{HttpRequest, HttpResponse};

use super::codec::payloads_response;
use crate::auth::Authorization;
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest};
use crate::state::AppState;

/// Authorize, open our payloads (others pass through), answer in the same order.
pub async fn decode(req: &HttpRequest, request: CodecRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let grant = match state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Decode).await? {
        Authorization::Granted(grant) => grant,
        // on_deny = "passthrough": Temporal's convention for callers who may not read.
        Authorization::PassThrough => return Ok(payloads_response(request.payloads.payloads)),
    };
    let count = request.payloads.payloads.len();
    let decoded = state.codec.decode(&grant, request.payloads.payloads).await?;
    tracing::debug!(namespace = %grant.namespace(), count, decoded = decoded.decoded, "Decoded payloads.");
    Ok(payloads_response(decoded.payloads))
}
