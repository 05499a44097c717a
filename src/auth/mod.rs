//! Who is calling and whether they may run this operation in this namespace.
//!
//! What must stay true: the codec cannot be called without a `Grant`, and a `Grant` can only be made
//! here, after the decision — so skipping authorization does not compile. The decision comes before
//! any cache lookup or KMS call. Encode never passes through: returning its input would store
//! plaintext in Temporal.

pub mod jwks;
pub mod policy;
pub mod verify;

use std::sync::Arc;

use actix_web::http::header::HeaderMap;

use crate::protocol::{CodecOp, Namespace};
use policy::{Decision, OnDeny, PolicyStore};
use verify::{AuthFailure, TokenVerifier};

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// Lower-cased; `None` when the tokens carry no (verified) email.
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// Who made the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Authentication is disabled by configuration.
    Anonymous,
    /// The local operator, through the `encode`/`decode` subcommands.
    Operator,
    /// A caller with a verified token.
    User(Arc<Identity>),
}

/// Proof that `subject` may run `op` in `namespace`. Only `Authorizer` constructs it.
#[derive(Debug)]
pub struct Grant {
    namespace: Namespace,
    op: CodecOp,
    subject: Subject,
}

impl Grant {
    /// The namespace the caller is authorized for; the codec uses this one and no other.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The authorized operation.
    pub fn op(&self) -> CodecOp {
        self.op
    }

    /// The caller.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
}

/// The outcome of authorization.
#[derive(Debug)]
pub enum Authorization {
    /// Go ahead, with this proof.
    Granted(Grant),
    /// Denied under `on_deny = "passthrough"` (decode only): answer with the payloads unchanged.
    PassThrough,
}

/// Authentication and authorization failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid bearer token")]
    Unauthenticated(AuthFailure),
    #[error("not allowed to {op} in namespace {namespace}")]
    Forbidden { op: &'static str, namespace: String },
}

/// How requests are authenticated.
pub enum AuthMode {
    /// No authentication: every request is allowed. Only by explicit configuration.
    Disabled,
    /// Bearer JWTs from configured issuers, then per-namespace policies.
    Jwt { verifier: TokenVerifier, policies: Arc<PolicyStore> },
}

/// Decides requests.
pub struct Authorizer {
    mode: AuthMode,
}

impl Authorizer {
    /// An authorizer for the configured mode.
    pub fn new(mode: AuthMode) -> Authorizer {
        Authorizer { mode }
    }

    /// The mode (tests and diagnostics).
    pub fn mode(&self) -> &AuthMode {
        &self.mode
    }

    /// Authenticates the caller from the headers and authorizes `op` in `namespace`.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        namespace: &Namespace,
        op: CodecOp,
    ) -> Result<Authorization, AuthError> {
        let grant = |subject| Authorization::Granted(Grant { namespace: namespace.clone(), op, subject });
        let (verifier, policies) = match &self.mode {
            AuthMode::Disabled => return Ok(grant(Subject::Anonymous)),
            AuthMode::Jwt { verifier, policies } => (verifier, policies.current()),
        };
        let deny = |on_deny: OnDeny, error: AuthError| match (on_deny, op) {
            (OnDeny::Passthrough, CodecOp::Decode) => Ok(Authorization::PassThrough),
            _ => Err(error),
        };
        let identity = match verifier.authenticate(headers).await {
            Ok(identity) => identity,
            Err(failure) => {
                tracing::info!(%namespace, op = op.as_str(), reason = failure.as_str(), "Authentication failed.");
                return deny(policies.on_deny(namespace), AuthError::Unauthenticated(failure));
            }
        };
        match policies.decide(&identity, namespace, op) {
            Decision::Allow => Ok(grant(Subject::User(identity))),
            Decision::Deny(on_deny) => {
                tracing::info!(%namespace, op = op.as_str(), "Policy denied the request.");
                deny(on_deny, AuthError::Forbidden { op: op.as_str(), namespace: namespace.to_string() })
            }
        }
    }

    /// A grant for the operator running the `encode`/`decode` subcommands: whoever can run them
    /// already holds the key configuration, so there is nothing to check.
    pub fn operator_grant(namespace: &Namespace, op: CodecOp) -> Grant {
        Grant { namespace: namespace.clone(), op, subject: Subject::Operator }
    }
}
