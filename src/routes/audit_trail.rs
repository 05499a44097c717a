//! The audit steps the codec handlers share: start an event from the request, record refusals.

use actix_web::{HttpRequest, web};

use crate::audit::{AuditEvent, Outcome};
use crate::auth::AuthError;
use crate::error::ApiError;
use crate::protocol::CodecRequest;
use crate::protocol::body::InFlight;
use crate::state::AppState;

/// The event for this request, before the decision. The payload count is 0 until the body is read,
/// which happens only for authorized callers; a refused request's row says 0. With the audit log off
/// nothing will be written, so nothing is gathered (the client address, the id and names are copies).
pub fn begin_event(req: &HttpRequest, request: &CodecRequest, state: &AppState) -> AuditEvent {
    if !state.audit.enabled() {
        return AuditEvent::unrecorded();
    }
    let proxies = &state.protocol.trusted_proxies;
    AuditEvent::begin(req, &request.namespace, request.op, state.clock.unix_millis(), proxies)
}

/// Reads the body of an authorized request; a failure to read it is recorded like any other failure.
pub async fn read_payloads(
    state: &AppState,
    event: &mut AuditEvent,
    request: &CodecRequest,
    body: web::Payload,
) -> Result<(Vec<crate::protocol::Payload>, InFlight), ApiError> {
    match request.read_payloads(body, &state.protocol).await {
        Ok((payloads, in_flight)) => {
            event.payload_count(payloads.payloads.len());
            Ok((payloads.payloads, in_flight))
        }
        Err(error) => Err(refused(state, event.clone(), error.into()).await),
    }
}

/// Records a denial or a failure and hands the error back. Refusals are never blocked by the audit
/// log (there is nothing to withhold); a lost event is counted.
pub async fn refused(state: &AppState, mut event: AuditEvent, error: ApiError) -> ApiError {
    let parts = error.parts();
    let status = parts.status.as_u16();
    match &error {
        ApiError::Auth(AuthError::Unauthenticated(failure)) => {
            event.outcome(Outcome::Denied, status, Some(failure.as_str()));
        }
        ApiError::Auth(AuthError::Forbidden { identity, .. }) => {
            if let Some(identity) = identity {
                event.identity(identity);
            }
            event.outcome(Outcome::Denied, status, Some("policy"));
        }
        _ => {
            event.outcome(Outcome::Failed, status, Some(parts.code));
        }
    }
    let _ = state.audit.record(event).await;
    error
}
