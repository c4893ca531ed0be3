//! The gateway's request checks, as plain functions of a request's method
//! and headers (no sockets, no clock), and the headers every response
//! carries.
//!
//! Capabilities are secrets that travel in URLs, so the gateway must never
//! let another web site read or spend through it on a user's behalf:
//!
//! * **Host** must name the gateway: an IP address literal or `localhost`
//!   with the gateway's port, or a host name listed in `gateway_hosts` (any
//!   port). A page on `evil.example` whose name an attacker re-points at
//!   127.0.0.1 (DNS rebinding) sends `Host: evil.example:3456` and is
//!   refused, so it can never read the gateway's answers as same-origin.
//! * **Cross-site writes** are refused: a request other than GET or HEAD
//!   whose `Sec-Fetch-Site` is neither `same-origin` nor `none`, or (from a
//!   browser that sends no `Sec-Fetch-Site`) whose `Origin` is not the
//!   gateway's own, is refused before it is read. Tools (curl, scripts)
//!   send neither header and are let through.
//! * **The API token** (`DIR/api_auth_token`, as Tahoe's `api_auth_token`)
//!   is needed, when the gateway listens beyond localhost, by requests that
//!   spend grid space: `Authorization: tahoe-lafs TOKEN`, or a `token` form
//!   field before the file in an upload form. It is compared in constant
//!   time (as BLAKE3 hashes).
//! * No CORS: no `Access-Control-*` header is ever sent, so browsers keep
//!   other origins from reading any answer.

use std::net::IpAddr;

use axum::http::{HeaderValue, Method, StatusCode};

/// Why a request was refused (before any work was done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The Host header does not name the gateway.
    BadHost(String),
    /// A state-changing request from another site.
    CrossSite(String),
    /// The API token is needed and was not given.
    NeedToken,
    /// The API token given is wrong.
    BadToken,
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Refusal::CrossSite(_) => StatusCode::FORBIDDEN,
            Refusal::NeedToken | Refusal::BadToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// A sentence for the body.
    pub fn message(&self) -> String {
        match self {
            Refusal::BadHost(h) => format!(
                "Host {h:?} is not this gateway's: use its IP address or localhost, \
                 or list the name in `gateway_hosts`"
            ),
            Refusal::CrossSite(why) => {
                format!("refused a state-changing request from another site ({why})")
            }
            Refusal::NeedToken => "this gateway listens beyond localhost: uploads need \
                 `Authorization: tahoe-lafs TOKEN` (the token is in the node's api_auth_token)"
                .into(),
            Refusal::BadToken => "the API token is wrong".into(),
        }
    }
}

/// The checks of one gateway.
#[derive(Clone)]
pub struct Guard {
    port: u16,
    hosts: Vec<String>,
    token_needed: bool,
    token: blake3::Hash,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Guard")
            .field("port", &self.port)
            .field("hosts", &self.hosts)
            .field("token_needed", &self.token_needed)
            .finish_non_exhaustive()
    }
}

/// Split a Host header into name and port (`[v6]:port`, `name:port`, `name`).
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    if name.is_empty() {
        return None;
    }
    Some((name, port))
}

impl Guard {
    /// The checks of a gateway bound to `port`, answering to `hosts` too;
    /// `token_needed` when it listens beyond localhost.
    pub fn new(port: u16, hosts: Vec<String>, token_needed: bool, token: &str) -> Self {
        Guard {
            port,
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            token_needed,
            token: blake3::hash(token.as_bytes()),
        }
    }

    /// Whether requests that spend grid space need the token.
    pub fn token_needed(&self) -> bool {
        self.token_needed
    }

    /// The Host header must name the gateway.
    ///
    /// # Errors
    /// [`Refusal::BadHost`].
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        let bad = || Refusal::BadHost(host.unwrap_or("").chars().take(100).collect());
        let (name, port) = host.and_then(split_host).ok_or_else(bad)?;
        let name = name.to_ascii_lowercase();
        if self.hosts.contains(&name) {
            return Ok(());
        }
        let literal = name == "localhost" || name.parse::<IpAddr>().is_ok();
        if literal && port.unwrap_or(80) == self.port {
            Ok(())
        } else {
            Err(bad())
        }
    }

    /// A request other than GET and HEAD must come from the gateway's own
    /// pages or from no browser at all. `host` is the (checked) Host header.
    ///
    /// # Errors
    /// [`Refusal::CrossSite`].
    pub fn check_origin(
        &self,
        method: &Method,
        host: &str,
        origin: Option<&str>,
        fetch_site: Option<&str>,
    ) -> Result<(), Refusal> {
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        // Browsers that send Sec-Fetch-Site (no page can forge it) are
        // judged by it alone: under `Referrer-Policy: no-referrer`, which
        // the gateway's pages carry, Chromium sends `Origin: null` even for
        // the page's own form.
        if let Some(site) = fetch_site {
            return match site {
                "same-origin" | "none" => Ok(()),
                _ => Err(Refusal::CrossSite(format!(
                    "Sec-Fetch-Site: {}",
                    site.chars().take(40).collect::<String>()
                ))),
            };
        }
        if let Some(o) = origin {
            let own = |scheme: &str| o.eq_ignore_ascii_case(&format!("{scheme}://{host}"));
            if !(own("http") || own("https")) {
                let shown: String = o.chars().take(100).collect();
                return Err(Refusal::CrossSite(format!("Origin: {shown}")));
            }
        }
        Ok(())
    }

    /// A request that spends grid space must carry the token when the
    /// gateway listens beyond localhost: in `authorization`
    /// (`tahoe-lafs TOKEN`) or as a form field.
    ///
    /// # Errors
    /// [`Refusal::NeedToken`] or [`Refusal::BadToken`].
    pub fn check_token(
        &self,
        authorization: Option<&str>,
        form_token: Option<&str>,
    ) -> Result<(), Refusal> {
        if !self.token_needed {
            return Ok(());
        }
        let given = authorization
            .and_then(|a| a.strip_prefix("tahoe-lafs "))
            .or(form_token)
            .map(str::trim);
        match given {
            None => Err(Refusal::NeedToken),
            // blake3::Hash compares in constant time.
            Some(t) if blake3::hash(t.as_bytes()) == self.token => Ok(()),
            Some(_) => Err(Refusal::BadToken),
        }
    }
}

/// The strict Content-Security-Policy of the gateway's own pages: its own
/// script and style only, forms post only to itself, never framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The Content-Security-Policy of downloads: nothing runs, and a browser
/// that shows one anyway gives it a unique origin (`sandbox`).
pub const DOWNLOAD_CSP: &str = "default-src 'none'; sandbox; frame-ancestors 'none'";

/// Headers every response carries (Content-Security-Policy is set per
/// response: [`PAGE_CSP`] unless a handler set [`DOWNLOAD_CSP`]).
pub const EVERY_RESPONSE: [(&str, &str); 3] = [
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// `value` as a header value, if it is one.
pub fn header(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(needed: bool) -> Guard {
        Guard::new(3456, vec!["NAS.example".into()], needed, "sekrit")
    }

    #[test]
    fn host_must_name_the_gateway() {
        let g = g(false);
        for ok in [
            "127.0.0.1:3456",
            "localhost:3456",
            "LocalHost:3456",
            "[::1]:3456",
            "10.0.0.5:3456",
            "nas.example",
            "nas.example:443",
        ] {
            assert_eq!(g.check_host(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("evil.example:3456"),
            Some("127.0.0.1:3457"),
            Some("127.0.0.1"),
            Some("localhost"),
            Some("[::1]"),
            Some("[::1:3456"),
            Some(":3456"),
            Some("127.0.0.1:99999"),
            Some("nas.example.evil:3456"),
        ] {
            assert!(
                matches!(g.check_host(bad), Err(Refusal::BadHost(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Guard::new(80, vec![], false, "t").check_host(Some("127.0.0.1")),
            Ok(())
        );
    }

    #[test]
    fn writes_from_other_sites_are_refused_reads_and_tools_are_not() {
        let g = g(false);
        let h = "127.0.0.1:3456";
        let post = Method::POST;
        assert_eq!(g.check_origin(&post, h, None, None), Ok(()), "curl");
        assert_eq!(
            g.check_origin(&post, h, Some("http://127.0.0.1:3456"), Some("same-origin")),
            Ok(())
        );
        assert_eq!(g.check_origin(&post, h, None, Some("none")), Ok(()));
        // Chromium's own form post under no-referrer.
        assert_eq!(
            g.check_origin(&post, h, Some("null"), Some("same-origin")),
            Ok(())
        );
        for (origin, site) in [
            (Some("http://evil.example"), None),
            (Some("null"), None),
            (Some("http://127.0.0.1:3457"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            (Some("http://127.0.0.1:3456"), Some("cross-site")),
        ] {
            for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                assert!(
                    matches!(
                        g.check_origin(&m, h, origin, site),
                        Err(Refusal::CrossSite(_))
                    ),
                    "{m} {origin:?} {site:?}"
                );
            }
            assert_eq!(g.check_origin(&Method::GET, h, origin, site), Ok(()));
            assert_eq!(g.check_origin(&Method::HEAD, h, origin, site), Ok(()));
        }
    }

    #[test]
    fn the_token_is_needed_only_beyond_localhost_and_must_match() {
        assert_eq!(g(false).check_token(None, None), Ok(()));
        let g = g(true);
        assert_eq!(g.check_token(None, None), Err(Refusal::NeedToken));
        assert_eq!(g.check_token(Some("tahoe-lafs sekrit"), None), Ok(()));
        assert_eq!(g.check_token(None, Some("sekrit\r\n")), Ok(()));
        assert_eq!(
            g.check_token(Some("tahoe-lafs wrong"), None),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            g.check_token(Some("Bearer sekrit"), None),
            Err(Refusal::NeedToken)
        );
        assert!(!format!("{g:?}").contains("sekrit"));
        assert_eq!(Refusal::NeedToken.status(), StatusCode::UNAUTHORIZED);
    }
}
