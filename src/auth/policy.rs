//! Per-namespace access policies: who may decode and who may encode, by email, `*@domain`,
//! `group:<name>` (people) or `sub:<pattern>` (workloads: Kubernetes service accounts, CI jobs); and
//! what a denial does (`reject` or `passthrough`).
//!
//! What must stay true: no matching rule means no access; emails compare lower-case; people need a
//! verified email and workloads are admitted only by a `sub:` rule (`*` never admits a caller without
//! an email); a policy file that does not parse or validate never replaces the one in force; a
//! principal that can never match (e.g. `group:` with no issuer that has a `groups_claim`) is refused
//! at startup, by `check-config` and on reload (`Policies::check_matchable`), instead of silently
//! denying everyone it names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Identity;
use crate::protocol::{CodecOp, Namespace};

/// What a denied request gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDeny {
    /// 401 (no or invalid token) or 403 (not allowed).
    #[default]
    Reject,
    /// Decode answers 200 with the payloads unchanged (Temporal's convention). Encode always rejects:
    /// returning its input would store plaintext.
    Passthrough,
}

/// One rule: a namespace name or glob, and the principals allowed per operation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub decode: Vec<String>,
    #[serde(default)]
    pub encode: Vec<String>,
    #[serde(default)]
    pub on_deny: OnDeny,
    /// With `on_deny = "passthrough"`, also pass through decodes that carry no token at all (the Web
    /// UI without "pass access token"). A token that is present but fails verification is always 401.
    #[serde(default)]
    pub passthrough_without_token: bool,
}

/// The shape of a policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policies: Vec<PolicyRule>,
}

/// What the trusted issuers can put into an `Identity`. A principal that needs something no issuer
/// provides can never match. Built from the issuer configuration (`AuthConfig::identity_claims`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityClaims {
    /// Some issuer yields an email.
    pub email: bool,
    /// Some issuer has a `groups_claim`.
    pub groups: bool,
}

impl IdentityClaims {
    /// Every kind of claim is available (no check, e.g. with auth disabled).
    pub const ALL: IdentityClaims = IdentityClaims { email: true, groups: true };
}

/// A principal pattern, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    Email(String),
    Domain(String),
    Group(String),
    /// A workload: the verified `sub` matches the glob, from any issuer or from the named one.
    Subject {
        issuer_name: Option<String>,
        pattern: String,
    },
    AnyAuthenticated,
}

impl Principal {
    fn parse(text: &str) -> Result<Principal, String> {
        let t = text.trim();
        if t == "*" {
            return Ok(Principal::AnyAuthenticated);
        }
        if let Some(group) = t.strip_prefix("group:") {
            if group.is_empty() {
                return Err(format!("`{text}`: group name is empty"));
            }
            return Ok(Principal::Group(group.to_owned()));
        }
        if let Some(rest) = t.strip_prefix("sub:") {
            return subject_principal(text, None, rest);
        }
        // `sub@<issuer name>:<pattern>`: only subjects from the issuer configured with that `name`.
        if let Some(rest) = t.strip_prefix("sub@") {
            let (name, pattern) =
                rest.split_once(':').ok_or_else(|| format!("`{text}`: expected sub@<issuer name>:<pattern>"))?;
            if !valid_issuer_name(name) {
                return Err(format!("`{text}`: issuer name must be letters, digits, `.`, `_` or `-`"));
            }
            return subject_principal(text, Some(name), pattern);
        }
        if let Some(domain) = t.strip_prefix("*@") {
            if domain.is_empty() || domain.contains(['@', '*']) {
                return Err(format!("`{text}`: expected *@domain"));
            }
            return Ok(Principal::Domain(domain.to_ascii_lowercase()));
        }
        match t.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !t.contains('*') => {
                Ok(Principal::Email(t.to_lowercase()))
            }
            _ => Err(format!("`{text}`: expected an email, *@domain, group:<name>, sub:<pattern> or *")),
        }
    }

    /// Why this principal can never match with `claims`, or `None` if it can.
    fn never_matches(&self, claims: IdentityClaims) -> Option<&'static str> {
        match self {
            Principal::Group(_) if !claims.groups => {
                Some("no [[auth.issuers]] entry sets groups_claim, so no identity has groups")
            }
            // People need a verified email (`admits`); only `sub:` principals admit callers without one.
            Principal::Email(_) | Principal::Domain(_) | Principal::AnyAuthenticated | Principal::Group(_)
                if !claims.email =>
            {
                Some("every [[auth.issuers]] entry has email_claim = \"none\", so no identity has an email")
            }
            Principal::Email(_)
            | Principal::Domain(_)
            | Principal::Group(_)
            | Principal::AnyAuthenticated
            | Principal::Subject { .. } => None,
        }
    }

    /// Whether a caller without an email can be admitted by this principal.
    fn is_workload(&self) -> bool {
        matches!(self, Principal::Subject { .. })
    }

    fn admits(&self, who: &Identity) -> bool {
        if who.email.is_none() && !self.is_workload() {
            return false;
        }
        match self {
            Principal::AnyAuthenticated => true,
            Principal::Subject { issuer_name, pattern } => {
                issuer_name.as_deref().is_none_or(|n| who.issuer_name.as_deref() == Some(n))
                    && !who.subject.is_empty()
                    && crate::glob::matches(pattern, &who.subject)
            }
            Principal::Email(e) => who.email.as_deref() == Some(e.as_str()),
            Principal::Domain(d) => {
                who.email.as_deref().and_then(|e| e.rsplit_once('@')).is_some_and(|(_, dom)| dom == d)
            }
            Principal::Group(g) => who.groups.iter().any(|x| x == g),
        }
    }
}

fn subject_principal(text: &str, issuer_name: Option<&str>, pattern: &str) -> Result<Principal, String> {
    if pattern.is_empty() || pattern.len() > 1024 || pattern.chars().any(char::is_control) {
        return Err(format!("`{text}`: subject pattern is empty, too long or has control characters"));
    }
    Ok(Principal::Subject { issuer_name: issuer_name.map(str::to_owned), pattern: pattern.to_owned() })
}

/// Issuer names (`[[auth.issuers]] name`) as policies write them.
pub fn valid_issuer_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[derive(Debug)]
struct CompiledRule {
    pattern: String,
    decode: Vec<Principal>,
    encode: Vec<Principal>,
    /// The principals as written, for messages.
    decode_text: Vec<String>,
    encode_text: Vec<String>,
    on_deny: OnDeny,
    passthrough_without_token: bool,
}

/// A validated set of rules: exact names first, then globs in order.
#[derive(Debug, Default)]
pub struct Policies {
    rules: Vec<CompiledRule>,
}

/// The decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(OnDeny),
}

impl Policies {
    /// Validates and compiles rules; the message names the bad entry.
    pub fn compile(rules: &[PolicyRule]) -> Result<Policies, String> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let ok = !rule.pattern.is_empty()
                && rule.pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-*?".contains(&b));
            if !ok {
                return Err(format!("policies[{i}].match `{}` must be a namespace name or glob", rule.pattern));
            }
            let parse = |list: &[String]| -> Result<Vec<Principal>, String> {
                list.iter().map(|p| Principal::parse(p).map_err(|e| format!("policies[{i}]: {e}"))).collect()
            };
            compiled.push(CompiledRule {
                pattern: rule.pattern.clone(),
                decode: parse(&rule.decode)?,
                encode: parse(&rule.encode)?,
                decode_text: rule.decode.iter().map(|p| p.trim().to_owned()).collect(),
                encode_text: rule.encode.iter().map(|p| p.trim().to_owned()).collect(),
                on_deny: rule.on_deny,
                passthrough_without_token: rule.passthrough_without_token,
            });
        }
        // Exact names win over globs; among globs, file order.
        compiled.sort_by_key(|r| crate::glob::is_pattern(&r.pattern));
        Ok(Policies { rules: compiled })
    }

    /// The one check for principals that can never match with what the issuers provide; extend it with
    /// every new principal kind. `Err` lists each such principal and how to fix it.
    pub fn check_matchable(&self, claims: IdentityClaims) -> Result<(), String> {
        let mut problems = Vec::new();
        for rule in &self.rules {
            let lists = [("decode", &rule.decode, &rule.decode_text), ("encode", &rule.encode, &rule.encode_text)];
            for (op, principals, texts) in lists {
                for (principal, text) in principals.iter().zip(texts) {
                    if let Some(why) = principal.never_matches(claims) {
                        problems.push(format!("policy `{}` {op}: `{text}` can never match: {why}", rule.pattern));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}. Set the claim on the issuer (e.g. groups_claim = \"groups\") or remove the principal.",
                problems.join("; ")
            ))
        }
    }

    fn rule_for(&self, namespace: &Namespace) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| crate::glob::matches(&r.pattern, namespace.as_str()))
    }

    /// What a request without any token gets in `namespace`: passthrough only where the rule says
    /// `on_deny = "passthrough"` and opts in with `passthrough_without_token`.
    pub fn on_missing_token(&self, namespace: &Namespace) -> OnDeny {
        match self.rule_for(namespace) {
            Some(r) if r.on_deny == OnDeny::Passthrough && r.passthrough_without_token => OnDeny::Passthrough,
            _ => OnDeny::Reject,
        }
    }

    /// Whether `who` may run `op` in `namespace`. People need a verified email; callers without one are
    /// admitted only by `sub:` principals.
    pub fn decide(&self, who: &Identity, namespace: &Namespace, op: CodecOp) -> Decision {
        let Some(rule) = self.rule_for(namespace) else {
            return Decision::Deny(OnDeny::Reject);
        };
        let list = match op {
            CodecOp::Encode => &rule.encode,
            CodecOp::Decode | CodecOp::Download => &rule.decode,
        };
        if list.iter().any(|p| p.admits(who)) { Decision::Allow } else { Decision::Deny(rule.on_deny) }
    }

    /// Issuer names that `sub@<name>:` principals refer to (startup checks that each exists).
    pub fn issuer_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().flat_map(|r| r.decode.iter().chain(&r.encode)).filter_map(|p| match p {
            Principal::Subject { issuer_name: Some(n), .. } => Some(n.as_str()),
            _ => None,
        })
    }
}

/// Parses and compiles a policy file.
pub fn load_policy_file(path: &Path) -> Result<Policies, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Policies::compile(&file.policies)
}

/// The policies in force, replaced atomically on reload.
pub struct PolicyStore {
    current: RwLock<Arc<Policies>>,
    file: Option<PathBuf>,
    last_text: RwLock<Option<String>>,
    /// What the issuers provide; a reloaded file must not name principals that can never match.
    claims: IdentityClaims,
}

impl PolicyStore {
    /// Policies that never change (inline configuration).
    pub fn fixed(policies: Policies) -> PolicyStore {
        PolicyStore {
            current: RwLock::new(Arc::new(policies)),
            file: None,
            last_text: RwLock::new(None),
            claims: IdentityClaims::ALL,
        }
    }

    /// Policies from a file; it must load now, with no principal that can never match under `claims`
    /// (startup fails otherwise). Reloads are held to the same rules.
    pub fn from_file(path: &Path, claims: IdentityClaims) -> Result<PolicyStore, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let policies = load_policy_file(path)?;
        policies.check_matchable(claims).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PolicyStore {
            current: RwLock::new(Arc::new(policies)),
            file: Some(path.to_path_buf()),
            last_text: RwLock::new(Some(text)),
            claims,
        })
    }

    /// The policies in force.
    pub fn current(&self) -> Arc<Policies> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the file if it changed. An invalid file is logged and ignored: the old policies stay.
    /// Returns whether new policies took effect.
    pub fn reload(&self) -> bool {
        let Some(path) = &self.file else { return false };
        let Ok(text) = std::fs::read_to_string(path) else {
            tracing::warn!(path = %path.display(), "Policy file unreadable; keeping the policies in force.");
            return false;
        };
        if self.last_text.read().unwrap_or_else(|e| e.into_inner()).as_deref() == Some(text.as_str()) {
            return false;
        }
        let parsed = toml::from_str::<PolicyFile>(&text)
            .map_err(|e| e.to_string())
            .and_then(|f| Policies::compile(&f.policies))
            .and_then(|p| p.check_matchable(self.claims).map(|()| p));
        *self.last_text.write().unwrap_or_else(|e| e.into_inner()) = Some(text);
        match parsed {
            Ok(policies) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policies);
                tracing::info!(path = %path.display(), "Policies reloaded.");
                true
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "Invalid policy file refused; the previous policies stay in force.");
                false
            }
        }
    }

    /// Polls the file every `interval` for as long as the store lives.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        if self.file.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.reload();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            issuer: "https://issuer".into(),
            issuer_name: None,
            subject: "s".into(),
            email: email.map(str::to_owned),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn ns(n: &str) -> Namespace {
        Namespace::parse(n).unwrap()
    }

    fn rule(pattern: &str, decode: &[&str], encode: &[&str], on_deny: OnDeny) -> PolicyRule {
        PolicyRule {
            pattern: pattern.into(),
            decode: decode.iter().map(|s| (*s).into()).collect(),
            encode: encode.iter().map(|s| (*s).into()).collect(),
            on_deny,
            passthrough_without_token: false,
        }
    }

    #[test]
    fn readers_decode_writers_encode_and_nobody_else() {
        let p = Policies::compile(&[rule(
            "payments",
            &["*@Example.com", "group:oncall"],
            &["svc@example.com"],
            OnDeny::Reject,
        )])
        .unwrap();
        let reader = who(Some("alice@example.com"), &[]);
        assert_eq!(p.decide(&reader, &ns("payments"), CodecOp::Decode), Decision::Allow);
        assert_eq!(p.decide(&reader, &ns("payments"), CodecOp::Encode), Decision::Deny(OnDeny::Reject));
        assert_eq!(p.decide(&who(Some("svc@example.com"), &[]), &ns("payments"), CodecOp::Encode), Decision::Allow);
        assert_eq!(
            p.decide(&who(Some("bob@other.io"), &["oncall"]), &ns("payments"), CodecOp::Decode),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&who(None, &["oncall"]), &ns("payments"), CodecOp::Decode),
            Decision::Deny(OnDeny::Reject),
            "no email, no access, whatever the groups"
        );
        assert_eq!(
            p.decide(&who(Some("eve@evil-example.com"), &[]), &ns("payments"), CodecOp::Decode),
            Decision::Deny(OnDeny::Reject)
        );
        assert_eq!(
            p.decide(&reader, &ns("marketing"), CodecOp::Decode),
            Decision::Deny(OnDeny::Reject),
            "no rule, no access"
        );
    }

    #[test]
    fn exact_rules_win_over_globs_and_globs_keep_their_order() {
        let p = Policies::compile(&[
            rule("pay*", &["a@x.io"], &[], OnDeny::Passthrough),
            rule("payments", &["b@x.io"], &[], OnDeny::Reject),
        ])
        .unwrap();
        assert_eq!(p.decide(&who(Some("b@x.io"), &[]), &ns("payments"), CodecOp::Decode), Decision::Allow);
        assert_eq!(
            p.decide(&who(Some("a@x.io"), &[]), &ns("payments"), CodecOp::Decode),
            Decision::Deny(OnDeny::Reject)
        );
        assert_eq!(
            p.decide(&who(Some("b@x.io"), &[]), &ns("payroll"), CodecOp::Decode),
            Decision::Deny(OnDeny::Passthrough)
        );
    }

    fn workload(issuer_name: Option<&str>, subject: &str) -> Identity {
        Identity { issuer_name: issuer_name.map(str::to_owned), subject: subject.into(), ..who(None, &[]) }
    }

    #[test]
    fn subjects_match_exactly_or_by_glob_and_optionally_per_issuer() {
        let p = Policies::compile(&[rule(
            "payments",
            &["sub@prod:system:serviceaccount:payments:reader", "sub:repo:acme/payments:ref:refs/heads/main"],
            &["sub:system:serviceaccount:payments:*"],
            OnDeny::Reject,
        )])
        .unwrap();
        let n = ns("payments");
        let worker = workload(Some("prod"), "system:serviceaccount:payments:worker");
        assert_eq!(p.decide(&worker, &n, CodecOp::Encode), Decision::Allow);
        assert_eq!(p.decide(&worker, &n, CodecOp::Decode), Decision::Deny(OnDeny::Reject));
        let reader = workload(Some("prod"), "system:serviceaccount:payments:reader");
        assert_eq!(p.decide(&reader, &n, CodecOp::Decode), Decision::Allow);
        let staging_reader = workload(Some("staging"), "system:serviceaccount:payments:reader");
        assert_eq!(p.decide(&staging_reader, &n, CodecOp::Decode), Decision::Deny(OnDeny::Reject));
        assert_eq!(
            p.decide(&workload(None, "repo:acme/payments:ref:refs/heads/main"), &n, CodecOp::Decode),
            Decision::Allow
        );
        let other = workload(Some("prod"), "system:serviceaccount:marketing:worker");
        assert_eq!(p.decide(&other, &n, CodecOp::Encode), Decision::Deny(OnDeny::Reject));
        assert_eq!(p.decide(&workload(Some("prod"), ""), &n, CodecOp::Encode), Decision::Deny(OnDeny::Reject));
        assert_eq!(p.issuer_names().collect::<Vec<_>>(), vec!["prod"]);
    }

    #[test]
    fn star_and_email_rules_never_admit_a_caller_without_an_email() {
        let p = Policies::compile(&[rule("*", &["*", "*@example.com", "group:ops"], &[], OnDeny::Reject)]).unwrap();
        let pod = Identity { groups: vec!["ops".into()], ..workload(Some("prod"), "system:serviceaccount:a:b") };
        assert_eq!(p.decide(&pod, &ns("n"), CodecOp::Decode), Decision::Deny(OnDeny::Reject));
        assert_eq!(p.decide(&who(Some("x@example.com"), &[]), &ns("n"), CodecOp::Decode), Decision::Allow);
    }

    #[test]
    fn a_missing_token_passes_through_only_where_the_rule_opts_in() {
        let mut open = rule("open", &[], &[], OnDeny::Passthrough);
        open.passthrough_without_token = true;
        let p = Policies::compile(&[
            open,
            rule("lenient", &[], &[], OnDeny::Passthrough),
            PolicyRule { passthrough_without_token: true, ..rule("strict", &[], &[], OnDeny::Reject) },
        ])
        .unwrap();
        assert_eq!(p.on_missing_token(&ns("open")), OnDeny::Passthrough);
        assert_eq!(p.on_missing_token(&ns("lenient")), OnDeny::Reject);
        assert_eq!(p.on_missing_token(&ns("strict")), OnDeny::Reject);
        assert_eq!(p.on_missing_token(&ns("unlisted")), OnDeny::Reject);
    }

    #[test]
    fn bad_principals_are_refused_with_their_position() {
        for bad in ["alice", "*@", "group:", "a*@x.io", "@x.io", "sub:", "sub@:x", "sub@a b:x", "sub@prod"] {
            let err = Policies::compile(&[rule("*", &[bad], &[], OnDeny::Reject)]).unwrap_err();
            assert!(err.contains("policies[0]"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_invalid_reload_keeps_the_policies_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"a@x.io\"]\n").unwrap();
        let store = PolicyStore::from_file(&path, IdentityClaims::ALL).unwrap();
        let a = who(Some("a@x.io"), &[]);
        assert_eq!(store.current().decide(&a, &ns("n"), CodecOp::Decode), Decision::Allow);
        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"not an email\"]\n").unwrap();
        assert!(!store.reload());
        assert_eq!(store.current().decide(&a, &ns("n"), CodecOp::Decode), Decision::Allow);
        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"b@x.io\"]\n").unwrap();
        assert!(store.reload());
        assert_eq!(store.current().decide(&a, &ns("n"), CodecOp::Decode), Decision::Deny(OnDeny::Reject));
    }

    const NO_GROUPS: IdentityClaims = IdentityClaims { email: true, groups: false };

    #[test]
    fn a_group_principal_without_any_groups_claim_can_never_match_and_is_refused() {
        let p = Policies::compile(&[
            rule("payments", &["alice@x.io", "group:oncall"], &[], OnDeny::Reject),
            rule("*", &[], &[" group:platform "], OnDeny::Passthrough),
        ])
        .unwrap();
        let err = p.check_matchable(NO_GROUPS).unwrap_err();
        assert!(err.contains("policy `payments` decode: `group:oncall` can never match"), "{err}");
        assert!(err.contains("policy `*` encode: `group:platform`"), "{err}");
        assert!(err.contains("groups_claim"), "the fix is named: {err}");
        assert!(!err.contains("alice"), "{err}");
        assert!(p.check_matchable(IdentityClaims::ALL).is_ok());
    }

    #[test]
    fn email_principals_without_any_email_claim_can_never_match() {
        let p = Policies::compile(&[rule("*", &["a@x.io", "*@x.io", "*"], &[], OnDeny::Reject)]).unwrap();
        let err = p.check_matchable(IdentityClaims { email: false, groups: true }).unwrap_err();
        for principal in ["`a@x.io`", "`*@x.io`", "`*`"] {
            assert!(err.contains(principal), "{principal}: {err}");
        }
    }

    #[test]
    fn with_only_workload_issuers_sub_principals_can_match_and_people_principals_cannot() {
        let p = Policies::compile(&[rule(
            "*",
            &["sub:system:serviceaccount:payments:*", "sub@prod:ci-*", "alice@x.io"],
            &["group:ops"],
            OnDeny::Reject,
        )])
        .unwrap();
        let err = p.check_matchable(IdentityClaims { email: false, groups: true }).unwrap_err();
        assert!(err.contains("`alice@x.io` can never match") && err.contains("email_claim"), "{err}");
        assert!(err.contains("`group:ops` can never match"), "{err}");
        assert!(!err.contains("sub:") && !err.contains("sub@"), "workload principals match without email: {err}");
        let workloads_only = Policies::compile(&[rule("*", &["sub:ci-*"], &[], OnDeny::Reject)]).unwrap();
        assert!(workloads_only.check_matchable(IdentityClaims { email: false, groups: false }).is_ok());
    }

    #[test]
    fn a_policy_file_naming_a_principal_that_can_never_match_is_refused_at_load_and_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"group:oncall\"]\n").unwrap();
        let err = PolicyStore::from_file(&path, NO_GROUPS).err().expect("refused at load");
        assert!(err.contains("group:oncall") && err.contains("groups_claim"), "{err}");

        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"a@x.io\"]\n").unwrap();
        let store = PolicyStore::from_file(&path, NO_GROUPS).unwrap();
        std::fs::write(&path, "[[policies]]\nmatch = \"*\"\ndecode = [\"b@x.io\", \"group:oncall\"]\n").unwrap();
        assert!(!store.reload(), "a reload that can never match is refused");
        let a = who(Some("a@x.io"), &[]);
        assert_eq!(store.current().decide(&a, &ns("n"), CodecOp::Decode), Decision::Allow, "the old policies stay");
    }
}
