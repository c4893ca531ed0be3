//! Addresses of other nodes as an operator writes them: `IP:PORT` or
//! `HOST:PORT` ([`PeerAddr`]), and resolving them.
//!
//! Volunteers often have dynamic DNS, so seeds and `advertise` may be host
//! names. Membership's core is sans-IO and knows only socket addresses:
//! the node's driver layer resolves names ([`resolve_all`]) when it starts
//! and again on each join retry, and hands the addresses in
//! (`MembershipHandle::set_seeds`); `advertise` names are resolved into the
//! node's record, which is re-signed when they resolve differently (see
//! [`crate::record`]).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An address given as `IP:PORT` or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PeerAddr {
    /// A literal socket address.
    Ip(SocketAddr),
    /// A host name and port, resolved when used.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl PeerAddr {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(a) => a.port(),
            PeerAddr::Host { port, .. } => *port,
        }
    }

    /// The literal address, if it is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Host { .. } => None,
        }
    }

    /// The addresses it names now (a literal address names itself).
    ///
    /// # Errors
    /// The name does not resolve (the message names it).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        match self {
            PeerAddr::Ip(a) => Ok(vec![*a]),
            PeerAddr::Host { host, port } => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("host name {host:?} does not resolve: {e}"))?
                    .collect();
                if addrs.is_empty() {
                    return Err(format!("host name {host:?} has no addresses"));
                }
                Ok(addrs)
            }
        }
    }
}

/// Every address `addrs` name now that a socket bound at `local` can reach
/// (a name's IPv6 addresses are left out for an IPv4 socket, and the other
/// way round), without duplicates, in order; with the message for each
/// name that did not resolve to any.
pub async fn resolve_all(addrs: &[PeerAddr], local: SocketAddr) -> (Vec<SocketAddr>, Vec<String>) {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        match a.resolve().await {
            Ok(v) => {
                let usable: Vec<SocketAddr> = v
                    .into_iter()
                    .filter(|s| s.is_ipv4() == local.is_ipv4())
                    .collect();
                if usable.is_empty() {
                    errors.push(format!(
                        "{a} has no {} address",
                        if local.is_ipv4() { "IPv4" } else { "IPv6" }
                    ));
                }
                for s in usable {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Ip(a)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<PeerAddr> for String {
    fn from(a: PeerAddr) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for PeerAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Whether `host` is a syntactically valid DNS name (RFC 1123 labels).
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for PeerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(a));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "{s:?} is not an address: write IP:PORT or HOST:PORT (for example 10.0.0.1:7946 or seed.example.org:7946)"
            ));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number from 1 to 65535"))?;
        if host.contains(':') || host.starts_with('[') {
            return Err(format!(
                "{s:?} is not an address: an IPv6 address goes in brackets, [ADDR]:PORT"
            ));
        }
        if !valid_host(host) {
            return Err(format!("{s:?}: {host:?} is not a valid host name"));
        }
        Ok(PeerAddr::Host {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_and_host_names_parse_and_print_back() {
        for s in [
            "10.0.0.1:7946",
            "[::1]:7946",
            "seed.example.org:7946",
            "localhost:1",
        ] {
            let a: PeerAddr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!(matches!(
            "10.0.0.1:7946".parse::<PeerAddr>(),
            Ok(PeerAddr::Ip(_))
        ));
        assert!(matches!(
            "node-1.dyn.example:7946".parse::<PeerAddr>(),
            Ok(PeerAddr::Host { port: 7946, .. })
        ));
        for bad in [
            "seed.example.org",
            "seed.example.org:port",
            "seed.example.org:70000",
            "bad host:1",
            ":7946",
            "-x.example:1",
            "::1:7946",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_resolve_and_failures_are_named() {
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (addrs, errors) = resolve_all(
            &[
                "localhost:7946".parse().unwrap(),
                "127.0.0.5:1".parse().unwrap(),
                "127.0.0.5:1".parse().unwrap(),
                "no-such-host.invalid:7946".parse().unwrap(),
                "[::1]:7946".parse().unwrap(),
            ],
            v4,
        )
        .await;
        assert!(
            addrs.iter().all(|a| a.is_ipv4()),
            "an IPv4 socket: {addrs:?}"
        );
        assert!(addrs
            .iter()
            .any(|a| a.ip().is_loopback() && a.port() == 7946));
        assert_eq!(
            addrs.iter().filter(|a| a.port() == 1).count(),
            1,
            "no duplicates"
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("no-such-host.invalid"), "{errors:?}");
        assert!(
            errors[1].contains("[::1]:7946 has no IPv4 address"),
            "{errors:?}"
        );
    }
}
