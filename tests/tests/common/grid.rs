//! A grid of library nodes in this process, one of them serving the web
//! gateway, and a small HTTP/1.1 client over raw TCP (so a test controls
//! every header it sends, Host included, and every byte and pause).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use grapevine_node::dir::{self, InitOptions};
use grapevine_node::gateway::{Gateway, GatewaySettings};
use grapevine_node::{Config, Node, NodeDir, Options, Sockets};
use grapevine_storage::Params;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "wait.rs"]
mod wait;
pub use wait::wait_for;

/// Nodes of one grid; `dirs[i]` is node i's directory.
pub struct Grid {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Option<Node>>,
    pub dirs: Vec<NodeDir>,
}

impl Grid {
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node running")
    }
}

/// `n` library nodes (storage and client) on 127.0.0.1, every one seeing
/// every other as a storage server; node 0 may be given a gateway from its
/// configuration (`gateway`).
pub async fn grid(n: usize, gateway: Option<SocketAddr>) -> Grid {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut seed = None;
    for i in 0..n {
        let d = NodeDir::new(root.path().join(format!("n{i}")));
        let listen = "127.0.0.1:0".parse().unwrap();
        dir::init(
            &d,
            &InitOptions {
                listen,
                advertise: Vec::new(),
                seeds: vec![],
                nickname: Some(format!("node-{i}")),
                capacity_mib: 1024,
                gateway: None,
            },
        )
        .unwrap();
        let mut cfg = Config::new(listen);
        cfg.nickname = Some(format!("node-{i}"));
        cfg.reserve_mib = 0;
        cfg.seeds = seed.into_iter().map(Into::into).collect();
        let mut opts = Options::in_process();
        opts.sockets = Some(free_sockets().await);
        if i == 0 {
            cfg.gateway = gateway;
            opts.http = gateway.is_some();
        }
        let node = Node::start(cfg, &d, opts).await.unwrap();
        seed.get_or_insert(node.local_addr());
        nodes.push(Some(node));
        dirs.push(d);
    }
    let g = Grid { root, nodes, dirs };
    for i in 0..n {
        let c = g.node(i).client();
        wait_for("every node to see every storage server", 60, || {
            let c = c.clone();
            async move { c.servers().await.unwrap().len() == n }
        })
        .await;
    }
    g
}

/// UDP and TCP sockets on one free port of 127.0.0.1. A port the kernel
/// gives UDP may be some TCP connection's local port at that moment (both
/// draw on the same ephemeral range, and other tests connect a lot): then
/// another port is tried, a bounded number of times.
pub async fn free_sockets() -> Sockets {
    let mut last = None;
    for _ in 0..50 {
        match Sockets::bind("127.0.0.1:0".parse().unwrap()).await {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
    }
    panic!("no free UDP and TCP port pair on 127.0.0.1: {last:?}")
}

/// Settings for a test gateway on 127.0.0.1: 2-of-4, happy 3, and short
/// times so hostile-client tests end quickly.
pub fn settings() -> GatewaySettings {
    let mut s = GatewaySettings::new("127.0.0.1:0".parse().unwrap());
    s.params = Params {
        k: 2,
        n: 4,
        happy: 3,
    };
    s.header_timeout = Duration::from_secs(2);
    s.body_idle = Duration::from_secs(2);
    s.body_grace = Duration::from_secs(2);
    s.body_min_rate = 64 * 1024;
    s.stall = Duration::from_secs(2);
    s
}

/// A gateway over node 0 of `g` with `s`, served on its own task.
pub async fn gateway(g: &Grid, s: GatewaySettings) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let gw = Gateway::bind(g.node(0).state().clone(), s, &g.dirs[0])
        .await
        .unwrap();
    let addr = gw.local_addr();
    (addr, tokio::spawn(gw.serve()))
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Parse a whole response (read until the server closed).
pub fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// Send `head` (request line and headers, without the blank line; a
/// Content-Length is added for a body) and `body`; read until the server
/// closes (the request says `Connection: close`), at most 60 seconds.
pub async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = head.to_string();
    if !body.is_empty() || head.starts_with("PUT") || head.starts_with("POST") {
        req.push_str(&format!("\r\ncontent-length: {}", body.len()));
    }
    req.push_str("\r\nconnection: close\r\n\r\n");
    // A server that refuses a request may close before reading all of it
    // (the test then sees its answer and a reset): write errors are the
    // answer's business, and what was read before a reset is kept.
    if s.write_all(req.as_bytes()).await.is_ok() {
        let _ = s.write_all(body).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes within a minute");
    parse(&out)
}

/// `METHOD path` with the gateway's own Host and `extra` headers.
pub async fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}");
    for (n, v) in extra {
        head.push_str(&format!("\r\n{n}: {v}"));
    }
    raw(addr, &head, body).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    req(addr, "GET", path, &[], b"").await
}

/// A multipart/form-data body of `fields` then a `file` part.
pub fn form(fields: &[(&str, &str)], filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "gvtestboundary7d3";
    let mut b = Vec::new();
    for (n, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

/// Pseudo-random bytes.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Percent-encode a capability for a path (colons are fine, but encode as
/// browsers and Tahoe's docs do).
pub fn enc(cap: &str) -> String {
    cap.replace(':', "%3A")
}
