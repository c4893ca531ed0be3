//! The gateway's settings: what `config.toml` says (address, host names,
//! upload limit) and the limits that bound what a hostile client can make
//! the gateway spend (header size and time, slow bodies, stalled readers,
//! connections). Plain values; tests shorten the times.

use std::net::SocketAddr;
use std::time::Duration;

use grapevine_storage::Params;

use crate::config::Config;

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The address it listens on (the bound one, port included).
    pub addr: SocketAddr,
    /// Host names it answers to besides IP addresses and `localhost`.
    pub hosts: Vec<String>,
    /// Largest upload taken, bytes (larger: 413).
    pub max_upload: u64,
    /// Encoding of uploads unless the request says otherwise.
    pub params: Params,
    /// A request's headers must arrive within this (else the connection is
    /// closed).
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), bytes (larger: 431
    /// or 414).
    pub max_header_bytes: usize,
    /// Most headers in a request (more: 431).
    pub max_headers: usize,
    /// An upload body that sends nothing for this long is refused (408).
    pub body_idle: Duration,
    /// After [`GatewaySettings::body_grace`], an upload body must have
    /// averaged at least this many bytes per second (else 408).
    pub body_min_rate: u64,
    /// See [`GatewaySettings::body_min_rate`].
    pub body_grace: Duration,
    /// A download whose client takes no data for this long is ended (its
    /// sessions to storage servers are released).
    pub stall: Duration,
    /// Connections served at once (more wait to be accepted).
    pub max_connections: usize,
    /// How long a request waits for session slots before 503.
    pub busy_wait: Duration,
}

impl GatewaySettings {
    /// Defaults for a gateway at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        GatewaySettings {
            addr,
            hosts: Vec::new(),
            max_upload: 16 << 30,
            params: Params::default(),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            body_idle: Duration::from_secs(30),
            body_min_rate: 16 * 1024,
            body_grace: Duration::from_secs(30),
            stall: Duration::from_secs(60),
            max_connections: 512,
            busy_wait: Duration::from_secs(60),
        }
    }

    /// The settings `config` gives a gateway bound to `addr`.
    pub fn from_config(config: &Config, addr: SocketAddr) -> Self {
        GatewaySettings {
            hosts: config.gateway_hosts.clone(),
            max_upload: config.gateway_max_upload_mib.saturating_mul(1 << 20),
            ..GatewaySettings::new(addr)
        }
    }

    /// Whether it listens only on a loopback address (then nothing beyond
    /// this host can reach it, and uploads need no token).
    pub fn loopback_only(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}
