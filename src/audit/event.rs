//! The audit event: who did what, in which namespace, when, and how it ended (DESIGN §7).
//!
//! What must stay true: an event holds identities, names and counts only — never a token, a key or a
//! payload byte. Text the caller controls (the user agent) is truncated and kept as text.

use std::collections::BTreeSet;
use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::USER_AGENT;

use crate::auth::{Identity, Subject};
use crate::decimal;
use crate::protocol::client_addr::TrustedProxies;
use crate::protocol::{CodecOp, Namespace};
use crate::request_id::RequestId;

/// Longest user agent kept, in bytes.
const MAX_USER_AGENT: usize = 256;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The operation ran (decode: the payloads listed were opened).
    Success,
    /// Authentication or policy refused the request.
    Denied,
    /// Policy refused a decode and `on_deny = "passthrough"` returned the payloads unchanged.
    PassThrough,
    /// The request was authorized but failed (tampered payload, KMS down, audit unavailable).
    Failed,
}

impl Outcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::PassThrough => "passthrough",
            Outcome::Failed => "failed",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Denied, Outcome::PassThrough, Outcome::Failed]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// One row of `audit_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    pub request_id: String,
    pub email: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub namespace: String,
    pub operation: String,
    pub payload_count: i64,
    pub decoded_count: i64,
    /// KEK URIs used, space-separated (names of keys, not keys).
    pub kek_refs: String,
    pub outcome: Outcome,
    /// A stable code: the auth failure reason, `policy`, or the API error code.
    pub reason: Option<String>,
    pub http_status: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

impl AuditEvent {
    /// The event for a request about to be decided: identity and outcome are filled in later.
    pub fn begin(
        req: &HttpRequest,
        namespace: &Namespace,
        op: CodecOp,
        unix_ms: i64,
        proxies: &TrustedProxies,
    ) -> Self {
        let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(truncate_user_agent);
        AuditEvent {
            time_ms: unix_ms,
            request_id: RequestId::of(req).as_str().to_owned(),
            namespace: namespace.to_string(),
            operation: op.as_str().to_owned(),
            client_addr: proxies.client_ip(req.peer_addr().map(|a| a.ip()), req.headers()).map(ip_text),
            user_agent,
            ..AuditEvent::unrecorded()
        }
    }

    /// An empty event: what a server whose audit log is off passes along (and drops), and the fields
    /// [`Self::begin`] leaves to be filled in later.
    pub fn unrecorded() -> Self {
        AuditEvent {
            time_ms: 0,
            request_id: String::new(),
            email: None,
            subject: None,
            issuer: None,
            namespace: String::new(),
            operation: String::new(),
            payload_count: 0,
            decoded_count: 0,
            kek_refs: String::new(),
            outcome: Outcome::Failed,
            reason: None,
            http_status: 500,
            client_addr: None,
            user_agent: None,
        }
    }

    /// Records how many payloads the request carried (known once its body is read).
    pub fn payload_count(&mut self, count: usize) -> &mut Self {
        self.payload_count = i64::try_from(count).unwrap_or(i64::MAX);
        self
    }

    /// Records who the caller is.
    pub fn caller(&mut self, subject: &Subject) -> &mut Self {
        match subject {
            Subject::User(identity) => self.identity(identity),
            Subject::Anonymous => self.subject = Some("anonymous".into()),
            Subject::Operator => self.subject = Some("operator".into()),
        }
        self
    }

    /// Records a verified identity.
    pub fn identity(&mut self, identity: &Identity) {
        self.email = identity.email.clone();
        self.subject = Some(identity.subject.clone());
        self.issuer = Some(identity.issuer.clone());
    }

    /// Sets how the request ended.
    pub fn outcome(&mut self, outcome: Outcome, http_status: u16, reason: Option<&str>) -> &mut Self {
        self.outcome = outcome;
        self.http_status = i64::from(http_status);
        self.reason = reason.map(str::to_owned);
        self
    }

    /// Records which KEKs were used and how many payloads were opened.
    pub fn keys(&mut self, kek_refs: &BTreeSet<String>, decoded_count: usize) -> &mut Self {
        // Nearly every request uses one KEK: a copy of it, not a joined list.
        self.kek_refs = match kek_refs.len() {
            1 => kek_refs.first().cloned().unwrap_or_default(),
            _ => kek_refs.iter().map(String::as_str).collect::<Vec<_>>().join(" "),
        };
        self.decoded_count = i64::try_from(decoded_count).unwrap_or(i64::MAX);
        self
    }

    /// Whether this event releases plaintext: under fail-closed it must be persisted before the response.
    pub fn releases_plaintext(&self) -> bool {
        self.operation == CodecOp::Decode.as_str() && self.outcome == Outcome::Success && self.decoded_count > 0
    }
}

/// The address as `IpAddr`'s `Display` writes it; IPv4 (most clients) by hand, since through `fmt` it
/// was ~0.9k instructions of every audited request (docs/performance.md).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                decimal::push(&mut text, u64::from(octet), 1);
            }
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// At most [`MAX_USER_AGENT`] bytes, control characters replaced: the value comes from the caller and is
/// later printed on an operator's terminal by `audit query`.
fn truncate_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    without_controls(&ua[..end])
}

/// `text` with every control character replaced by U+FFFD, so it cannot drive a terminal.
pub fn without_controls(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_round_trip() {
        for o in [Outcome::Success, Outcome::Denied, Outcome::PassThrough, Outcome::Failed] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("maybe"), None);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "::1", "2001:db8::8a2e:370:7334"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn kek_refs_are_listed_space_separated() {
        let mut event = AuditEvent::unrecorded();
        let one: BTreeSet<String> = ["vault://a".to_owned()].into();
        assert_eq!(event.keys(&one, 1).kek_refs, "vault://a");
        let two: BTreeSet<String> = ["vault://b".to_owned(), "aws://a".to_owned()].into();
        assert_eq!(event.keys(&two, 2).kek_refs, "aws://a vault://b");
        assert_eq!(event.keys(&BTreeSet::new(), 0).kek_refs, "");
    }

    #[test]
    fn user_agent_control_characters_cannot_reach_a_terminal() {
        assert_eq!(truncate_user_agent("curl\u{1b}[31m\nX"), "curl\u{FFFD}[31m\u{FFFD}X");
    }

    #[test]
    fn long_user_agents_are_cut_on_a_character_boundary() {
        let ua = "é".repeat(200);
        let cut = truncate_user_agent(&ua);
        assert!(cut.len() <= MAX_USER_AGENT && cut.chars().all(|c| c == 'é'));
    }
}
