//! Who is calling and whether they may run this operation in this namespace.
//!
//! What must stay true: the codec cannot be called without a `Grant`, and a `Grant` can only be made
//! here, after the decision — so skipping authorization does not compile. JWT verification and
//! per-namespace policies plug in here (issue 4); today the only mode is the explicit `disabled` one.

use actix_web::http::header::HeaderMap;

use crate::protocol::{CodecOp, Namespace};

/// Who made the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Authentication is disabled by configuration.
    Anonymous,
    /// The local operator, through the `encode`/`decode` subcommands.
    Operator,
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

/// How requests are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every request is allowed. Only by explicit configuration.
    Disabled,
}

/// Authentication and authorization failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("not allowed to {op} in namespace {namespace}")]
    Forbidden { op: &'static str, namespace: String },
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

    /// Authenticates the caller from the headers and authorizes `op` in `namespace`.
    pub async fn authorize(
        &self,
        _headers: &HeaderMap,
        namespace: &Namespace,
        op: CodecOp,
    ) -> Result<Grant, AuthError> {
        match self.mode {
            AuthMode::Disabled => Ok(Grant { namespace: namespace.clone(), op, subject: Subject::Anonymous }),
        }
    }
}

impl Authorizer {
    /// A grant for the operator running the `encode`/`decode` subcommands: whoever can run them
    /// already holds the key configuration, so there is nothing to check.
    pub fn operator_grant(namespace: &Namespace, op: CodecOp) -> Grant {
        Grant { namespace: namespace.clone(), op, subject: Subject::Operator }
    }
}
