//! A lying share server against a real client: it completes the Noise
//! handshake like any server, then answers every `List` with share numbers
//! that cannot exist (at or above the file's `N`), or with the same share
//! thousands of times. A check must not count them (before, a file with no
//! share anywhere was reported healthy, with 20 of 10 shares good), the
//! honest servers' shares must still be found, and a download through the
//! liar ends with an error instead of waiting on shares that are not there.
//! A liar first in a file's permuted order that lists every share while
//! holding none does not hide the real holders from a download.

use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::session::Session;
use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{self, KeyMode, ServerRef, Verdict};
use grapevine_storage::protocol::{decode_request, encode, Reply, Request, ResponseMsg};
use grapevine_storage::{Params, SessionPool};
use tokio::net::TcpListener;

#[path = "common/servers.rs"]
mod servers;

/// How the liar answers `List`.
#[derive(Clone, Copy)]
enum Lie {
    /// Shares 10 to 29 of a 3-of-10 file.
    OutOfRange,
    /// Share 0, 50,000 times.
    Repeated,
    /// Every share of a 3-of-10 file, holding none.
    All,
}

/// Start a server that answers `List` with `lie`, and every other request
/// with an error.
async fn liar(lie: Lie) -> ServerRef {
    let id = Arc::new(Identity::generate());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
    let r = ServerRef {
        id: id.node_id(),
        addr,
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (id, rec) = (id.clone(), rec.clone());
            tokio::spawn(async move {
                let Ok((mut s, _)) =
                    Session::accept(stream, &id, &rec, &SessionConfig::default()).await
                else {
                    return;
                };
                while let Ok(bytes) = s.recv().await {
                    let Ok(m) = decode_request(&bytes) else {
                        return;
                    };
                    let reply = match (m.req, lie) {
                        (Request::List { .. }, Lie::OutOfRange) => {
                            Reply::Shares((10..30).map(|sh| (sh, 4096)).collect())
                        }
                        (Request::List { .. }, Lie::Repeated) => {
                            Reply::Shares(vec![(0, 4096); 50_000])
                        }
                        (Request::List { .. }, Lie::All) => {
                            Reply::Shares((0..10).map(|sh| (sh, 4096)).collect())
                        }
                        _ => Reply::Error {
                            code: grapevine_storage::protocol::ErrorCode::NotFound,
                            message: "no such share".into(),
                        },
                    };
                    let out = encode(&ResponseMsg::<Vec<u8>>::new(m.version, m.id, reply));
                    if s.send(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    r
}

fn pool() -> SessionPool {
    servers::pool("127.0.0.1:1")
}

/// `n` honest share servers, and how a client refers to them.
async fn honest(n: usize) -> (Vec<ServerRef>, Vec<servers::Server>) {
    let s = servers::servers([127, 0, 0, 1], "h", n).await;
    (servers::refs(&s), s)
}

/// A file of 3-of-10 shares stored on `servers`; its capability.
async fn store(me: &SessionPool, servers: &[ServerRef]) -> grapevine_storage::Cap {
    let d = vec![7u8; 200_000];
    let req = client::UploadRequest {
        params: Params::default(),
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: &d[..],
        hash_input: Some(&d[..]),
    };
    client::upload(me, servers, req, &|_| {}).await.unwrap().cap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_numbers_a_file_cannot_have_are_not_counted() {
    let me = pool();
    let (stored_on, _d1) = honest(10).await;
    let cap = store(&me, &stored_on).await;
    // A grid that never saw the file: the liar and three empty servers.
    let (empty, _d2) = honest(3).await;
    let mut grid = vec![liar(Lie::OutOfRange).await];
    grid.extend(empty);

    let c = client::check(&me, &grid, &cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 0, "{}", c.summary);
    assert!(!c.results.healthy, "{}", c.summary);
    assert_eq!(c.verdict(), Verdict::Unrecoverable, "{}", c.summary);

    let mut out = Vec::new();
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        client::download(&me, &grid, &cap, &mut out, &|_| {}),
    )
    .await
    .expect("a download through the liar never ended");
    assert!(got.is_err(), "a download of a file with no share succeeded");

    // Beside the honest servers, the liar changes nothing.
    let mut both = stored_on.clone();
    both.insert(0, grid[0]);
    let c = client::check(&me, &both, &cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10, "{}", c.summary);
    assert!(c.results.healthy, "{}", c.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_listed_many_times_counts_once_and_on_one_server() {
    let me = pool();
    let (stored_on, _d1) = honest(10).await;
    let cap = store(&me, &stored_on).await;
    let l = liar(Lie::Repeated).await;
    let found = client::locate(&me, &[l], cap_si(&cap), 3, 10).await;
    assert!(
        found.shares.len() <= 10,
        "one server's answer kept {} entries for a 10-share file",
        found.shares.len()
    );
    let c = client::check(&me, &[l], &cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 1, "{}", c.summary);
    assert_eq!(c.results.count_happiness, 1, "{}", c.summary);
}

fn cap_si(cap: &grapevine_storage::Cap) -> grapevine_storage::StorageIndex {
    match cap {
        grapevine_storage::Cap::Chk(c) => c.storage_index(),
        grapevine_storage::Cap::Lit(_) => panic!("a 200 kB file is not literal"),
    }
}

/// A download through a grid whose first server (in the file's permuted
/// order) lists all ten shares and holds none reads the file from the
/// honest holders. Before, the client kept one server per share number,
/// the first to list it, so the liar hid every real holder and the
/// download failed with too few shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_listing_shares_it_lacks_does_not_hide_their_holders() {
    let me = pool();
    let (stored_on, _d) = honest(10).await;
    let l = liar(Lie::All).await;
    let mut grid = stored_on.clone();
    grid.push(l);
    // A file whose permuted list puts the liar first.
    let mut found = None;
    for _ in 0..300 {
        let cap = store(&me, &stored_on).await;
        if client::permuted_servers(&cap_si(&cap), &grid)[0].id == l.id {
            found = Some(cap);
            break;
        }
    }
    let cap = found.expect("no file in 300 puts the liar first of 11 servers");
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        client::download(&me, &grid, &cap, &mut out, &|_| {}),
    )
    .await
    .expect("the download never ended")
    .expect("the honest holders' shares were not read");
    assert_eq!(out, vec![7u8; 200_000]);
    let mut part = Vec::new();
    client::download_range(&me, &grid, &cap, 1000, 5000, &mut part)
        .await
        .expect("a ranged read through the liar failed");
    assert_eq!(part, vec![7u8; 5000]);
}
