//! POST …/encode — workers and the CLI (`workflow start --input … --codec-endpoint`) seal payloads here.

use actix_web::{HttpRequest, HttpResponse};

use super::codec::payloads_response;
use crate::auth::{AuthError, Authorization};
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest};
use crate::state::AppState;

/// Authorize, seal every payload, answer with the sealed payloads in the same order.
pub async fn encode(req: &HttpRequest, request: CodecRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let Authorization::Granted(grant) =
        state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Encode).await?
    else {
        // The authorizer never passes an encode through; refuse rather than echo plaintext.
        return Err(ApiError::Auth(AuthError::Forbidden { op: "encode", namespace: request.namespace.to_string() }));
    };
    let count = request.payloads.payloads.len();
    let encoded = state.codec.encode(&grant, request.payloads.payloads).await?;
    tracing::debug!(namespace = %grant.namespace(), count, "Encoded payloads.");
    Ok(payloads_response(encoded.payloads))
}
