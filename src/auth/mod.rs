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
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::HeaderMap;

use crate::protocol::{CodecOp, Namespace};
use policy::{Decision, OnDeny, PolicyStore};
use verify::{AuthFailure, TokenVerifier};

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    /// The issuer's configured `name`, which `sub@<name>:` policy principals refer to.
    pub issuer_name: Option<String>,
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
    /// Denied under `on_deny = "passthrough"` (decode only): answer with the payloads unchanged. Holds
    /// the caller when the token was valid (for the audit log).
    PassThrough { identity: Option<Arc<Identity>> },
}

/// Authentication and authorization failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid bearer token")]
    Unauthenticated(AuthFailure),
    #[error("not allowed to {op} in namespace {namespace}")]
    Forbidden {
        op: &'static str,
        namespace: String,
        /// The authenticated caller who was refused (for the audit log; never in the message).
        identity: Option<Arc<Identity>>,
    },
}

/// How requests are authenticated.
pub enum AuthMode {
    /// No authentication: every request is allowed. Only by explicit configuration.
    Disabled,
    /// Bearer JWTs from configured issuers, then per-namespace policies.
    Jwt { verifier: TokenVerifier, policies: Arc<PolicyStore> },
}

/// Refused requests since start, by reason (`/metrics`); never anything about the token itself.
#[derive(Debug, Default)]
pub struct AuthFailureCounts {
    unauthenticated: [AtomicU64; AuthFailure::ALL.len()],
    forbidden: AtomicU64,
    passthrough_policy: AtomicU64,
    passthrough_without_token: AtomicU64,
}

impl AuthFailureCounts {
    /// `(reason, count)` for every reason, zeros included: the `AuthFailure` labels, then `forbidden`
    /// (a verified caller whose policy denies the operation).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<_> = AuthFailure::ALL
            .iter()
            .map(|f| (f.as_str(), self.unauthenticated[*f as usize].load(Ordering::Relaxed)))
            .collect();
        counts.push(("forbidden", self.forbidden.load(Ordering::Relaxed)));
        counts
    }

    /// Decodes answered with the payloads unchanged under `on_deny = "passthrough"`, by reason:
    /// `policy` (a verified caller without permission) and `no-token` (opted in per rule).
    pub fn passthroughs(&self) -> [(&'static str, u64); 2] {
        [
            ("policy", self.passthrough_policy.load(Ordering::Relaxed)),
            ("no-token", self.passthrough_without_token.load(Ordering::Relaxed)),
        ]
    }
}

/// Decides requests.
pub struct Authorizer {
    mode: AuthMode,
    failures: AuthFailureCounts,
}

impl Authorizer {
    /// An authorizer for the configured mode.
    pub fn new(mode: AuthMode) -> Authorizer {
        Authorizer { mode, failures: AuthFailureCounts::default() }
    }

    /// Refusals so far, by reason.
    pub fn failures(&self) -> &AuthFailureCounts {
        &self.failures
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
        let deny = |on_deny: OnDeny, error: AuthError, identity: Option<Arc<Identity>>| match (on_deny, op) {
            (OnDeny::Passthrough, CodecOp::Decode) => Ok(Authorization::PassThrough { identity }),
            _ => Err(error),
        };
        let identity = match verifier.authenticate(headers).await {
            Ok(identity) => identity,
            Err(failure) => {
                self.failures.unauthenticated[failure as usize].fetch_add(1, Ordering::Relaxed);
                tracing::info!(%namespace, op = op.as_str(), reason = failure.as_str(), "Authentication failed.");
                // A token that is present but fails verification is always 401, so a broken token
                // setup shows up as an error instead of as "not allowed" forever.
                let on_deny = match failure {
                    AuthFailure::Missing => policies.on_missing_token(namespace),
                    _ => OnDeny::Reject,
                };
                let passed = deny(on_deny, AuthError::Unauthenticated(failure), None);
                if passed.is_ok() {
                    self.failures.passthrough_without_token.fetch_add(1, Ordering::Relaxed);
                }
                return passed;
            }
        };
        match policies.decide(&identity, namespace, op) {
            Decision::Allow => Ok(grant(Subject::User(identity))),
            Decision::Deny(on_deny) => {
                self.failures.forbidden.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%namespace, op = op.as_str(), subject = %identity.subject, "Policy denied the request.");
                let error = AuthError::Forbidden {
                    op: op.as_str(),
                    namespace: namespace.to_string(),
                    identity: Some(identity.clone()),
                };
                let passed = deny(on_deny, error, Some(identity));
                if passed.is_ok() {
                    self.failures.passthrough_policy.fetch_add(1, Ordering::Relaxed);
                }
                passed
            }
        }
    }

    /// A grant for the operator running the `encode`/`decode` subcommands: whoever can run them
    /// already holds the key configuration, so there is nothing to check.
    pub fn operator_grant(namespace: &Namespace, op: CodecOp) -> Grant {
        Grant { namespace: namespace.clone(), op, subject: Subject::Operator }
    }
}
