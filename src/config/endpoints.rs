//! Where the server may speak plain HTTP: KMS endpoints carry tokens and unwrapped data keys, and a JWKS
//! decides whose tokens are believed, so every such URL is `https://` unless it stays on this machine.
//!
//! What must stay true: the decision is made on the parsed host, never on the text — plain `http://` is
//! accepted only for a loopback IP literal or exactly `localhost` (`http://localhost.attacker.example`,
//! `http://127.0.0.1.nip.io` and `http://localhost:80@attacker.example` are remote hosts). A KMS endpoint
//! may opt out with `kms.insecure_allow_plaintext_http` (a service mesh that encrypts on the wire); a
//! JWKS URL may not.

use std::net::IpAddr;

use anyhow::bail;
use reqwest::Url;

/// Whether plain HTTP to `url` may be allowed by an opt-out (KMS endpoints) or never (JWKS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaintextHttp {
    /// Refused for non-loopback hosts, whatever the configuration says.
    LoopbackOnly,
    /// Allowed for any host because the operator set the named opt-out.
    AllowedByOptOut,
    /// Refused for non-loopback hosts unless the operator sets the opt-out.
    LoopbackUnlessOptedOut,
}

/// Checks one endpoint setting. `setting` names it in the message, e.g. `kms.vault.address`.
pub fn check_endpoint(setting: &str, url: &str, plaintext: PlaintextHttp) -> anyhow::Result<()> {
    let Ok(parsed) = Url::parse(url) else {
        bail!("{setting} `{url}` is not a URL; write it like https://host.example:443");
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("{setting} `{url}` must not carry credentials in the URL");
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" if plaintext == PlaintextHttp::AllowedByOptOut => Ok(()),
        "http" => match plaintext {
            PlaintextHttp::LoopbackOnly => bail!(
                "{setting} `{url}` is plain http to another host: anyone on the path could replace the keys \
                 and mint tokens. Use https:// (plain http only for 127.0.0.1, [::1] or localhost)"
            ),
            _ => bail!(
                "{setting} `{url}` is plain http to another host, so tokens and data keys would cross the \
                 network in clear. Use https:// (plain http only for 127.0.0.1, [::1] or localhost), or, if \
                 a service mesh encrypts this hop, set kms.insecure_allow_plaintext_http = true"
            ),
        },
        _ => bail!("{setting} `{url}` must be an https:// URL"),
    }
}

/// A loopback IP literal or exactly `localhost`; never a name that merely starts with one.
/// The URL parser has already normalised the host (`127.1` is `127.0.0.1`, IPv6 is bracketed), so a
/// host that parses as an IP is a literal and anything else is a name.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// [`is_loopback`] on text; false when it does not parse.
pub fn is_loopback_url(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| is_loopback(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_reaches_loopback_hosts() {
        for ok in [
            "http://127.0.0.1:8200",
            "http://127.9.9.9/jwks.json",
            "http://[::1]:8080/x",
            "http://localhost:5000",
            "http://LOCALHOST/",
            "https://vault.example.com:8200",
            "https://kms.eu-west-1.amazonaws.com",
        ] {
            check_endpoint("s", ok, PlaintextHttp::LoopbackOnly).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://localhost.attacker.example/jwks.json",
            "http://127.0.0.1.nip.io/jwks.json",
            "http://localhost:80@attacker.example/jwks.json",
            "http://127.0.0.1@attacker.example/",
            "http://vault.internal:8200",
            "http://10.0.0.5:8200",
            "http://[::ffff:10.0.0.5]/",
            "http://0.0.0.0:8200",
            "ftp://127.0.0.1/x",
            "https://user:pw@vault.example.com",
            "localhost:8200",
            "",
        ] {
            assert!(check_endpoint("s", bad, PlaintextHttp::LoopbackOnly).is_err(), "{bad} must be refused");
            assert!(check_endpoint("s", bad, PlaintextHttp::LoopbackUnlessOptedOut).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_opt_out_allows_plain_http_to_remote_kms_hosts_only() {
        let remote = "http://vault.vault.svc.cluster.local:8200";
        let err = check_endpoint("kms.vault.address", remote, PlaintextHttp::LoopbackUnlessOptedOut).unwrap_err();
        assert!(err.to_string().contains("kms.insecure_allow_plaintext_http"), "{err}");
        check_endpoint("kms.vault.address", remote, PlaintextHttp::AllowedByOptOut).unwrap();
        assert!(check_endpoint("kms.vault.address", "ftp://x/", PlaintextHttp::AllowedByOptOut).is_err());
    }
}
