//! POST …/decode — the Web UI, the CLI and remote-codec workers read payloads through here.

use actix_web::{HttpRequest, web};

use super::audit_trail::{begin_event, read_payloads, refused};
use crate::audit::Outcome;
use crate::auth::Authorization;
use crate::error::ApiError;
use crate::protocol::{CodecOp, CodecRequest, Payload};
use crate::state::AppState;

/// Authorize on the headers, read the body, open our payloads (others pass through), audit, return them in
/// the same order.
pub async fn decode(
    req: &HttpRequest,
    request: CodecRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<Vec<Payload>, ApiError> {
    let mut event = begin_event(req, &request, state);
    let grant = match state.authorizer.authorize(req.headers(), &request.namespace, CodecOp::Decode).await {
        Ok(Authorization::Granted(grant)) => grant,
        // on_deny = "passthrough": Temporal's convention for callers who may not read.
        Ok(Authorization::PassThrough { identity }) => {
            if let Some(identity) = &identity {
                event.identity(identity);
            }
            let (payloads, _in_flight) = read_payloads(state, &mut event, &request, body).await?;
            let reason = if identity.is_some() { "policy" } else { "no-token" };
            event.outcome(Outcome::PassThrough, 200, Some(reason));
            state.audit.record(event).await?;
            return Ok(payloads);
        }
        Err(error) => {
            request.discard_body(body, &state.protocol).await;
            return Err(refused(state, event, error.into()).await);
        }
    };
    event.caller(grant.subject());
    let (payloads, _in_flight) = read_payloads(state, &mut event, &request, body).await?;
    let count = payloads.len();
    let decoded = match state.codec.decode(&grant, payloads).await {
        Ok(decoded) => decoded,
        Err(error) => return Err(refused(state, event, error.into()).await),
    };
    event.keys(&decoded.kek_refs, decoded.decoded).outcome(Outcome::Success, 200, None);
    // Under fail-closed this returns only once the row is committed; otherwise 503 and nothing leaves.
    state.audit.record(event).await?;
    tracing::debug!(namespace = %grant.namespace(), count, decoded = decoded.decoded, "Decoded payloads.");
    Ok(decoded.payloads)
}
