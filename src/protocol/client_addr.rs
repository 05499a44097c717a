//! Who is on the other end: the TCP peer, or — when the peer is a proxy we were told to trust (the
//! ingress) — the nearest address in `X-Forwarded-For` that is not one of those proxies.
//!
//! What must stay true: `X-Forwarded-For` is believed only as far as trusted proxies wrote it. A client
//! can put anything in the header; walking it from the right and stopping at the first untrusted hop
//! means a forged left part is never reported. Without `server.trusted_proxies` the header is ignored.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;

/// The header proxies append the client address to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// CIDR ranges of trusted proxies (`server.trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a single address.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::with_capacity(list.len());
        for entry in list {
            let (ip, bits) = match entry.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (entry.as_str(), None),
            };
            let bad = || format!("server.trusted_proxies: `{entry}` is not an address or CIDR range like 10.0.0.0/8");
            let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.trim().parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                None => max,
            };
            ranges.push((ip, bits));
        }
        Ok(TrustedProxies(ranges))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            _ => false,
        })
    }

    /// The client address for `peer` and the request headers.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        // Every header line, in order; entries are appended left to right, so walk from the right.
        let hops: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(HeaderName::from_static(FORWARDED_FOR), HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.1.2.3"), &headers(&["203.0.113.9"])), ip("10.1.2.3"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client_and_forged_left_parts_are_ignored() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.7".into()]).unwrap();
        let h = headers(&["6.6.6.6, 203.0.113.9", "192.168.1.7"]);
        assert_eq!(t.client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // An untrusted peer's header is never read.
        assert_eq!(t.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Garbage stops the walk at the last address a trusted proxy vouched for.
        assert_eq!(t.client_ip(ip("10.1.2.3"), &headers(&["not-an-ip, 10.9.9.9"])), ip("10.9.9.9"));
        // IPv4-mapped peers match IPv4 ranges.
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.1"), &headers(&["2001:db8::1"])), ip("2001:db8::1"));
    }

    #[test]
    fn ranges_match_on_bit_prefixes_and_bad_entries_are_refused() {
        let t = TrustedProxies::parse(&["172.16.0.0/12".into(), "fd00::/8".into()]).unwrap();
        assert!(t.trusts("172.31.255.255".parse().unwrap()) && !t.trusts("172.32.0.0".parse().unwrap()));
        assert!(t.trusts("fd12::1".parse().unwrap()) && !t.trusts("fe80::1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["ingress".into()]).is_err());
    }
}
