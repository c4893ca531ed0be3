//! A node that cannot start tells nobody: every listener it would serve
//! (gossip, sessions, the web gateway, metrics, the control socket) is
//! bound before it takes a record sequence number or sends a datagram, so
//! a port in use fails `grapevine run` before any peer hears of the node
//! (it used to join, then be seen dead for a day).

mod common;

use std::net::UdpSocket;

use common::*;

#[test]
fn a_node_whose_gateway_port_is_taken_fails_before_it_announces_itself() {
    let root = tempfile::tempdir().unwrap();
    // The seed is a socket of the test's: whatever the node sends it, it
    // holds.
    let seed = UdpSocket::bind("127.11.8.1:0").unwrap();
    seed.set_nonblocking(true).unwrap();
    let taken = std::net::TcpListener::bind("127.11.8.2:0").unwrap();
    let node = root.path().join("n");
    ok(grapevine()
        .arg("init")
        .arg(&node)
        .args(["--listen", "127.11.8.2:7946", "--seed"])
        .arg(seed.local_addr().unwrap().to_string())
        .arg("--gateway")
        .arg(taken.local_addr().unwrap().to_string()));
    let out = grapevine().arg("run").arg(&node).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("gateway"), "{said}");
    // The process has exited: anything it sent over loopback is queued.
    let mut buf = [0u8; 2048];
    match seed.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        r => panic!("the node announced itself: {r:?}"),
    }
    assert!(
        !node.join("last_seq").exists(),
        "a failed start took a sequence number"
    );
    assert!(!node.join("control.sock").exists());
}
