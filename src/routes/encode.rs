//! POST …/encode — workers and the CLI (`workflow start --input … --codec-endpoint`) seal payloads here.

use actix_web::{HttpRequest, web};

use super::audit_trail::{begin_event, read_payloads, refused};
use crate::audit::Outcome;
use crate::auth::{AuthError, Authorization};
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest, Payload};
use crate::state::AppState;

/// Authorize on the headers, read the body, seal every payload, audit, return the sealed payloads
/// in the same order.
pub async fn encode(
    req: &HttpRequest,
    request: CodecRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<Vec<Payload>, ApiError> {
    let mut event = begin_event(req, &request, state);
    let grant = match state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Encode).await {
        Ok(Authorization::Granted(grant)) => grant,
        // The authorizer never passes an encode through; refuse rather than echo plaintext.
        Ok(Authorization::PassThrough { identity }) => {
            let namespace = request.namespace.to_string();
            let error = AuthError::Forbidden { op: "encode", namespace, identity };
            request.discard_body(body, &state.protocol).await;
            return Err(refused(state, event, error.into()).await);
        }
        Err(error) => {
            request.discard_body(body, &state.protocol).await;
            return Err(refused(state, event, error.into()).await);
        }
    };
    event.caller(grant.subject());
    let (payloads, _in_flight) = read_payloads(state, &mut event, &request, body).await?;
    let count = payloads.len();
    let encoded = match state.codec.encode(&grant, payloads).await {
        Ok(encoded) => encoded,
        Err(error) => return Err(refused(state, event, error.into()).await),
    };
    event.keys(&encoded.kek_refs, 0).outcome(Outcome::Success, 200, None);
    state.audit.record(event).await?;
    tracing::debug!(namespace = %grant.namespace(), count, "Encoded payloads.");
    Ok(encoded.payloads)
}
