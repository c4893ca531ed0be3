//! A real storage grid on loopback: ten share servers, each with its own
//! identity, TCP listener and on-disk store; a client uploads, downloads,
//! checks; servers die and shares rot on disk.

use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef};
use grapevine_storage::{Cap, Params, PoolConfig, SessionPool};

#[path = "common/servers.rs"]
mod servers;
use servers::{stop, walk, Server};

/// Ten share servers, and how a client refers to them.
async fn ten_servers() -> (Vec<Server>, Vec<ServerRef>) {
    let servers = servers::servers([127, 5, 0, 1], "s", 10).await;
    let refs = servers::refs(&servers);
    (servers, refs)
}

fn client_identity() -> ClientIdentity {
    servers::client_identity("127.5.0.2:1")
}

fn client_pool() -> SessionPool {
    servers::pool("127.5.0.2:1")
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = blake3::Hasher::new().update(&[seed]).finalize_xof();
    out.resize(len, 0);
    x.fill(&mut out);
    out
}

async fn put(
    me: &SessionPool,
    servers: &[ServerRef],
    d: &[u8],
    mode: KeyMode,
) -> Result<client::UploadReport, client::ClientError> {
    let req = client::UploadRequest {
        params: Params::default(),
        mode,
        size: d.len() as u64,
        input: d,
        hash_input: Some(d),
    };
    client::upload(me, servers, req, &|_| {}).await
}

async fn get(
    me: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
) -> Result<(Vec<u8>, client::DownloadReport), client::ClientError> {
    let mut out = Vec::new();
    let r = client::download(me, servers, cap, &mut out, &|_| {}).await?;
    Ok((out, r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_survive_losses_and_corruption() {
    let (servers, refs) = ten_servers().await;
    let me = client_pool();
    let d = data(3 * 1024 * 1024 + 777, 1);

    let up = put(&me, &refs, &d, KeyMode::Random).await.expect("upload");
    assert_eq!(up.servers, 10, "3-of-10 over 10 servers: one share each");
    let cap_text = up.cap.to_string();
    let cap: Cap = cap_text.parse().unwrap();
    let (back, rep) = get(&me, &refs, &cap).await.expect("download");
    assert_eq!(back, d);
    assert!(rep.corrupt.is_empty());

    // check: every share on its server.
    let c = client::check(&me, &refs, &cap, true).await.unwrap();
    assert_eq!(c.results.sharemap.len(), 10);
    assert_eq!(c.results.count_shares_good, 10);
    assert_eq!(c.results.servers_responding.len(), 10);

    // Corrupt one share on disk: download skips and reports it, check
    // --verify flags it.
    let (victim_shnum, victim_id) = up.placements[0];
    let victim = servers.iter().find(|s| s.r.id == victim_id).unwrap();
    let share_file = walk(&victim.dir.path().join("shares"))
        .into_iter()
        .find(|p| p.file_name().unwrap() == victim_shnum.to_string().as_str())
        .expect("share file on disk");
    let mut bytes = std::fs::read(&share_file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&share_file, &bytes).unwrap();
    let c = client::check(&me, &refs, &cap, true).await.unwrap();
    assert_eq!(
        c.results.list_corrupt_shares,
        vec![(
            victim_id.to_string(),
            match &cap {
                Cap::Chk(c) => c.storage_index().to_string(),
                Cap::Lit(_) => unreachable!("a 3 MB file"),
            },
            victim_shnum
        )],
        "{c:?}"
    );
    assert_eq!(c.results.count_shares_good, 9);
    let (back, rep) = get(&me, &refs, &cap)
        .await
        .expect("download despite corruption");
    assert_eq!(back, d, "never wrong data");
    // Whether the downloader tried the corrupt share depends on the order;
    // if it did, it reported it.
    assert!(
        rep.corrupt
            .iter()
            .all(|(n, id)| *n == victim_shnum && *id == victim_id),
        "{rep:?}"
    );

    // Kill 7 servers, keeping the one with the corrupt share.
    let mut killed = 0;
    let mut kept = Vec::new();
    for mut s in servers {
        if killed < 7 && s.r.id != victim_id {
            stop(&mut s).await;
            killed += 1;
        } else {
            kept.push(s);
        }
    }
    // The victim's share is corrupt, so only 2 good shares remain among the
    // 3 alive servers: download must fail clearly, not return bad data.
    let r = get(&me, &refs, &cap).await;
    assert!(r.is_err(), "only 2 good shares left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_losing_n_minus_k_servers() {
    let (servers, refs) = ten_servers().await;
    let me = client_pool();
    let d = data(2 * 1024 * 1024, 2);
    let up = put(&me, &refs, &d, KeyMode::Convergent([7; 32]))
        .await
        .unwrap();
    let mut servers = servers.into_iter();
    for mut s in servers.by_ref().take(7) {
        stop(&mut s).await;
    }
    let _kept: Vec<Server> = servers.collect();
    let (back, _) = get(&me, &refs, &up.cap)
        .await
        .expect("3 of 10 servers are enough");
    assert_eq!(back, d);
    // Convergent: the same client storing the same file gets the same cap.
    let up2 = put(&me, &refs[7..], &d, KeyMode::Convergent([7; 32])).await;
    assert!(
        matches!(up2, Err(client::ClientError::NotHappy { got: 3, happy: 7 })),
        "{up2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_whose_footers_lie_are_skipped_and_reported() {
    let (servers, refs) = ten_servers().await;
    let me = client_pool();
    let d = data(1_500_000, 3);
    let up = put(&me, &refs, &d, KeyMode::Random).await.unwrap();
    // Point every share's hash list at offset 0 (a server could claim
    // anything): the footer sits just before the store's 16-byte trailer.
    for s in &servers {
        for p in walk(&s.dir.path().join("shares")) {
            let mut b = std::fs::read(&p).unwrap();
            let footer = b.len() - 16 - 24;
            b[footer..footer + 8].copy_from_slice(&0u64.to_le_bytes());
            std::fs::write(&p, b).unwrap();
        }
    }
    let r = get(&me, &refs, &up.cap).await;
    assert!(
        matches!(
            r,
            Err(client::ClientError::Codec(
                grapevine_storage::CodecError::NotEnoughShares { .. }
            ))
        ),
        "{r:?}"
    );
}

/// A share whose extension block rots on disk is corrupt to a download as
/// to a check: skipped, and reported to its server, which checks it and
/// quarantines it (it used to be skipped silently, and met again by every
/// later read). A capability whose extension-block hash is altered finds
/// shares none of which match, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_whose_extension_blocks_rot_are_skipped_and_reported() {
    let (servers, refs) = ten_servers().await;
    let me = client_pool();
    let d = data(1_500_000, 4);
    let up = put(&me, &refs, &d, KeyMode::Random).await.unwrap();
    // Rot the last bytes of the extension block (before the 24-byte footer
    // and the store's 16-byte trailer) of shares 0 to 6: the primary
    // shares, 0 to 2, are the ones a download opens first.
    let mut rotted = 0;
    for s in &servers {
        for p in walk(&s.dir.path().join("shares")) {
            let shnum: u16 = p.file_name().unwrap().to_str().unwrap().parse().unwrap();
            if shnum < 7 {
                let mut b = std::fs::read(&p).unwrap();
                let at = b.len() - 50;
                b[at] ^= 0xff;
                std::fs::write(&p, b).unwrap();
                rotted += 1;
            }
        }
    }
    assert_eq!(rotted, 7);
    let (back, rep) = get(&me, &refs, &up.cap).await.expect("three good shares");
    assert_eq!(back, d, "never wrong data");
    let mut bad: Vec<u16> = rep.corrupt.iter().map(|c| c.0).collect();
    bad.sort_unstable();
    assert!(
        [0, 1, 2].iter().all(|n| bad.contains(n)) && bad.iter().all(|n| *n < 7),
        "{rep:?}"
    );
    assert_eq!(rep.unmatched, rep.corrupt.len(), "{rep:?}");
    assert_eq!(rep.reported.len(), rep.corrupt.len(), "{rep:?}");
    for (shnum, _, verdict) in &rep.reported {
        assert_eq!(
            *verdict,
            Some(client::ReportVerdict::Quarantined),
            "share {shnum}: {rep:?}"
        );
    }

    // The same shares under a capability whose extension-block hash is
    // altered: none matches.
    let Cap::Chk(mut wrong) = up.cap.clone() else {
        unreachable!("a 1.5 MB file")
    };
    wrong.ueb_hash[0] ^= 1;
    let r = get(&me, &refs, &Cap::Chk(wrong)).await;
    assert!(
        matches!(
            r,
            Err(client::ClientError::Codec(
                grapevine_storage::CodecError::CapMismatch { shares }
            )) if shares >= 3
        ),
        "{r:?}"
    );
}

/// A k-of-n file is read from k servers at once. A client whose pool
/// holds fewer sessions than k refuses to store such a file (it could not
/// read it back) and fails to read one at once, instead of taking every
/// slot and waiting a slot's time per missing share, starving everything
/// else it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_needing_more_sessions_than_the_pool_holds_fails_at_once() {
    let (_servers, refs) = ten_servers().await;
    let small = SessionPool::new(
        client_identity(),
        PoolConfig {
            max_sessions: 4,
            ..PoolConfig::default()
        },
    );
    let d = data(200_000, 5);
    let params = Params {
        k: 5,
        n: 10,
        happy: 7,
    };
    let req = |d: &'static [u8]| client::UploadRequest {
        params,
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: d,
        hash_input: None::<&[u8]>,
    };
    let d: &'static [u8] = Box::leak(d.into_boxed_slice());
    let t = std::time::Instant::now();
    let r = client::upload(&small, &refs, req(d), &|_| {}).await;
    assert!(
        matches!(
            r,
            Err(client::ClientError::TooFewSessions {
                need: 5,
                sessions: 4
            })
        ),
        "{r:?}"
    );
    // Stored by a client that can read it, then read by the small one.
    let up = client::upload(&client_pool(), &refs, req(d), &|_| {})
        .await
        .unwrap();
    let r = get(&small, &refs, &up.cap).await;
    assert!(
        matches!(r, Err(client::ClientError::TooFewSessions { .. })),
        "{r:?}"
    );
    let mut out = Vec::new();
    let r = client::download_range(&small, &refs, &up.cap, 0, 10, &mut out).await;
    assert!(
        matches!(r, Err(client::ClientError::TooFewSessions { .. })),
        "{r:?}"
    );
    // At once: well inside one slot's wait (10 s), let alone one per share.
    assert!(
        t.elapsed() < PoolConfig::default().wait,
        "{:?}",
        t.elapsed()
    );
    assert_eq!(small.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_live_in_the_capability() {
    let me = client_pool();
    let up = put(&me, &[], b"hello", KeyMode::Random).await.unwrap();
    assert!(up.cap.to_string().starts_with("gv:lit:"));
    let (back, _) = get(&me, &[], &up.cap).await.unwrap();
    assert_eq!(back, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_pooled_capped_and_closed_when_idle() {
    let (_servers, refs) = ten_servers().await;
    let d = data(1_200_000, 4);

    // Reuse: put, get and check share one session per server.
    let pool = client_pool();
    let up = put(&pool, &refs, &d, KeyMode::Random).await.unwrap();
    let (back, _) = get(&pool, &refs, &up.cap).await.unwrap();
    assert_eq!(back, d);
    client::check(&pool, &refs, &up.cap, true).await.unwrap();
    assert_eq!(pool.sessions_opened(), 10, "one session per server, reused");
    assert_eq!(pool.open_sessions(), 10);

    // A cap of 4: the upload uses 4 servers (happy 4 is met), never more
    // than 4 sessions are open, and a cap below `happy` fails clearly.
    let capped = SessionPool::new(
        client_identity(),
        PoolConfig {
            max_sessions: 4,
            idle_timeout: std::time::Duration::from_millis(200),
            wait: std::time::Duration::from_millis(200),
            ..PoolConfig::default()
        },
    );
    let req = client::UploadRequest {
        params: Params {
            k: 3,
            n: 10,
            happy: 4,
        },
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: &d[..],
        hash_input: None::<&[u8]>,
    };
    let up = client::upload(&capped, &refs, req, &|_| {}).await.unwrap();
    assert_eq!(up.servers, 4);
    assert_eq!(up.placements.len(), 10);
    assert!(capped.open_sessions() <= 4);
    let (back, _) = get(&capped, &refs, &up.cap).await.unwrap();
    assert_eq!(back, d);
    assert!(capped.open_sessions() <= 4);
    let r = put(&capped, &refs, &d, KeyMode::Random).await;
    assert!(
        matches!(r, Err(client::ClientError::NotHappy { got: 4, happy: 7 })),
        "{r:?}"
    );

    // Idle sessions close after the idle timeout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while capped.close_idle() == 0 && capped.open_sessions() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle sessions never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    capped.close_idle();
    assert_eq!(capped.idle_sessions(), 0);
    assert_eq!(capped.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_mid_upload_costs_its_shares_not_the_upload() {
    let (mut servers, refs) = ten_servers().await;
    let pool = client_pool();
    let d = data(8 * 1024 * 1024, 5);
    // Take one server down once the upload has made progress.
    let victim = servers.remove(0);
    let victim_id = victim.r.id;
    let kill = std::sync::Mutex::new(victim.task);
    let req = client::UploadRequest {
        params: Params::default(),
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: &d[..],
        hash_input: None::<&[u8]>,
    };
    let up = client::upload(&pool, &refs, req, &|done| {
        if done >= 2 * 1024 * 1024 {
            if let Some(t) = kill.lock().unwrap().take() {
                t.abort();
            }
        }
    })
    .await
    .expect("nine servers still meet happy = 7");
    assert_eq!(up.servers, 9);
    assert!(up.placements.iter().all(|(_, id)| *id != victim_id));
    // The report says which server was lost.
    assert_eq!(
        up.lost.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![victim_id],
        "{:?}",
        up.lost
    );
    let (back, _) = get(&pool, &refs, &up.cap).await.unwrap();
    assert_eq!(back, d);
}

/// A read from a client that holds no sessions opens sessions to the first
/// `k` servers of the file's permuted list only (they hold the primary
/// shares), not to all `n` (each is a handshake); the others are asked
/// only when those fail, as the corruption and loss tests above show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_by_a_client_without_sessions_opens_k_of_them() {
    let (_servers, refs) = ten_servers().await;
    let d = data(1024 * 1024 + 5, 9);
    let up = put(&client_pool(), &refs, &d, KeyMode::Random)
        .await
        .expect("upload");
    let cold = client_pool();
    cold.record_contacts(true);
    let (back, rep) = get(&cold, &refs, &up.cap).await.expect("download");
    assert_eq!(back, d);
    assert!(rep.corrupt.is_empty());
    let contacts = cold.take_contacts();
    let mut asked: Vec<_> = contacts.iter().map(|c| c.server).collect();
    asked.sort_unstable();
    asked.dedup();
    let first_k: Vec<_> = up
        .placements
        .iter()
        .filter(|(shnum, _)| *shnum < 3)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(asked.len(), 3, "sessions opened: {contacts:?}");
    assert!(
        first_k.iter().all(|id| asked.contains(id)),
        "the primary shares' servers: {first_k:?}, asked {asked:?}"
    );
}

/// A check that only counts shares (`check` without `--verify`), by a
/// client holding no sessions, opens none: each server answers a listing
/// in a datagram instead of a Noise handshake and a list request. A client
/// holding sessions to some of the servers asks those over their sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_by_a_client_without_sessions_opens_none() {
    let (servers, refs) = ten_servers().await;
    let d = data(1024 * 1024 + 5, 10);
    let up = put(&client_pool(), &refs, &d, KeyMode::Random)
        .await
        .expect("upload");
    let cold = client_pool();
    let c = client::check(&cold, &refs, &up.cap, false).await.unwrap();
    assert!(c.results.healthy, "{c:?}");
    assert_eq!(c.results.count_shares_good, 10);
    assert_eq!(c.results.servers_responding.len(), 10);
    assert_eq!(cold.sessions_opened(), 0, "no handshake");
    assert_eq!(cold.listings_asked(), 10);
    assert_eq!(cold.datagram_listings_answered(), 10, "no connection");
    // The client derived a pair key with each server, and keeps it for the
    // next listing.
    assert_eq!(cold.identity().identity.pair_keys_kept(), 10);
    // A server counts a listing once it has sent it and closed, which may
    // be just after the client has it.
    listings_reach(&servers, 10).await;
    let in_datagrams = servers
        .iter()
        .map(|s| s.stats.datagram_listings())
        .sum::<u64>();
    assert_eq!(in_datagrams, 10);

    // A read opens sessions to the first k servers; a check then asks
    // those over their sessions and the other seven by listing.
    let (back, _) = get(&cold, &refs, &up.cap).await.unwrap();
    assert_eq!(back, d);
    assert_eq!(cold.sessions_opened(), 3);
    let c = client::check(&cold, &refs, &up.cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10);
    assert_eq!(cold.sessions_opened(), 3, "the sessions held were used");
    assert_eq!(cold.listings_asked(), 17);

    // A verifying check reads the shares, so it asks over sessions.
    let c = client::check(&cold, &refs, &up.cap, true).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10);
    assert_eq!(cold.sessions_opened(), 10);
    assert_eq!(cold.listings_asked(), 17);

    // A client of a closed grid asks over sessions only: a listing does
    // not prove who asks, so a closed grid's servers answer none.
    let mut me = client_identity();
    me.session.grid = Some(grapevine_crypto::GridId::of(
        &grapevine_crypto::Identity::generate(),
    ));
    let closed = SessionPool::new(me, PoolConfig::default());
    let _ = client::check(&closed, &refs, &up.cap, false).await;
    assert_eq!(closed.listings_asked(), 0);
    listings_reach(&servers, 17).await;
}

/// A server that answers no listing datagram (one of the release before
/// them, or behind a firewall that drops UDP) is asked over TCP once the
/// datagram's grace has passed, and then over TCP only for a while: its
/// shares count all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_no_datagrams_is_asked_over_tcp() {
    let (servers, mut refs) = ten_servers().await;
    let d = data(300_000, 13);
    let up = put(&client_pool(), &refs, &d, KeyMode::Random)
        .await
        .expect("upload");
    // Before three servers, a front that relays TCP to the server and
    // takes UDP datagrams without answering them.
    let mut silent = Vec::new();
    for r in refs.iter_mut().take(3) {
        let udp = tokio::net::UdpSocket::bind("127.5.0.6:0").await.unwrap();
        let front = udp.local_addr().unwrap();
        let Ok(listener) = tokio::net::TcpListener::bind(front).await else {
            panic!("port {front} taken for TCP; rerun")
        };
        let heard = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let h = heard.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while udp.recv_from(&mut buf).await.is_ok() {
                h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let back = r.addr;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(back).await {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut b).await;
                    }
                });
            }
        });
        r.addr = front;
        silent.push(heard);
    }
    let heard = || {
        silent
            .iter()
            .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
            .collect::<Vec<_>>()
    };
    let cold = client_pool();
    let c = client::check(&cold, &refs, &up.cap, false).await.unwrap();
    assert!(c.results.healthy, "{c:?}");
    assert_eq!(c.results.count_shares_good, 10, "{c:?}");
    assert_eq!(cold.sessions_opened(), 0);
    assert_eq!(cold.listings_asked(), 10);
    assert_eq!(cold.datagram_listings_answered(), 7);
    assert_eq!(heard(), vec![1, 1, 1], "each silent server was asked once");
    // Again: the silent three are asked over TCP only (no datagram goes
    // to them), the others in datagrams.
    let c = client::check(&cold, &refs, &up.cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10, "{c:?}");
    assert_eq!(cold.datagram_listings_answered(), 14);
    assert_eq!(heard(), vec![1, 1, 1]);
    listings_reach(&servers, 20).await;
    let over_tcp: u64 = servers
        .iter()
        .map(|s| s.stats.listings() - s.stats.datagram_listings())
        .sum();
    assert_eq!(over_tcp, 6);
    // Each listing timed by the way it was answered, on both sides.
    let t = cold.listing_times();
    let counts = (t.datagram.total(), t.tcp.total(), t.session.total());
    assert_eq!(counts, (14, 6, 0));
    let (mut by_datagram, mut by_tcp) = (0, 0);
    for s in &servers {
        by_datagram += s.stats.datagram_listing_times().total();
        by_tcp += s.stats.tcp_listing_times().total();
        assert_eq!(s.stats.session_listing_times().total(), 0);
    }
    assert_eq!((by_datagram, by_tcp), (14, 6));
    // A client holding sessions lists on them: timed as such, on both
    // sides (the servers it holds none to in a datagram or over TCP).
    let warm = client_pool();
    let _ = get(&warm, &refs, &up.cap).await.expect("download");
    let held = warm.idle_sessions() as u64;
    assert!(held >= 3, "a download holds sessions to at least k servers");
    let before = warm.listing_times();
    let on_sessions = || -> u64 {
        servers
            .iter()
            .map(|s| s.stats.session_listing_times().total())
            .sum()
    };
    let served_before = on_sessions();
    let c = client::check(&warm, &refs, &up.cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10, "{c:?}");
    let t = warm.listing_times().since(&before);
    assert_eq!(t.session.total(), held, "{t:?}");
    assert_eq!(t.datagram.total() + t.tcp.total(), 10 - held, "{t:?}");
    // (A server times its answer once sent: it may count after the
    // client has it.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while on_sessions() < served_before + held && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(on_sessions(), served_before + held);
}

/// Wait until `servers` have answered `n` listings in all (5 s at most),
/// and that none answered more.
async fn listings_reach(servers: &[Server], n: u64) {
    let total = || servers.iter().map(|s| s.stats.listings()).sum::<u64>();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while total() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(total(), n, "listings answered");
}

/// A listing is believed only if the dialled server made it for this
/// query: an impostor at a server's address that answers under its own
/// key, or replays an answer the server made for this client's earlier
/// query, counts as a server that did not answer, and its shares are not
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_not_made_by_the_server_for_this_query_is_not_believed() {
    use grapevine_storage::listing::{self, Query, QUERY_LEN, QUERY_MARK};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_servers, mut refs) = ten_servers().await;
    let d = data(200_000, 11);
    let pool = client_pool();
    let up = put(&pool, &refs, &d, KeyMode::Random)
        .await
        .expect("upload");
    // The impostors take the place of the servers holding shares 0 and 1:
    // one answers under its own key, the other replays an answer the real
    // server made for an earlier query of this client.
    let holder = |shnum: u16| {
        up.placements
            .iter()
            .find(|(s, _)| *s == shnum)
            .map(|(_, id)| *id)
            .unwrap()
    };
    let Cap::Chk(chk) = &up.cap else {
        panic!("a CHK file")
    };
    let si = chk.verify_cap().si;
    let stranger = std::sync::Arc::new(grapevine_crypto::Identity::generate());
    let real = grapevine_crypto::Identity::generate();
    let old = Query::new(si, pool.identity().identity.node_id());
    let replayed = listing::answer(&real, &old, &[(1, 1), (5, 1)]).unwrap();
    for (shnum, replay) in [(0u16, false), (1, true)] {
        let listener = tokio::net::TcpListener::bind("127.5.0.3:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stranger, replayed) = (stranger.clone(), replayed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = [0u8; 4 + QUERY_LEN];
                if s.read_exact(&mut head).await.is_err() || head[..2] != QUERY_MARK {
                    continue;
                }
                let q = Query::from_payload(&head[4..]).unwrap();
                let out = if replay {
                    replayed.clone()
                } else {
                    listing::answer(&stranger, &q, &[(shnum, 1), (7, 1)]).unwrap()
                };
                let _ = s.write_all(&out).await;
            }
        });
        let victim = holder(shnum);
        let r = refs.iter_mut().find(|r| r.id == victim).unwrap();
        if replay {
            // The replayed answer is the real key's: the impostor stands
            // where that key's node would be.
            r.id = real.node_id();
        }
        r.addr = addr;
    }
    // A fresh pool (no sessions) of the same client: listings.
    let fresh = SessionPool::new(pool.identity().clone(), PoolConfig::default());
    let c = client::check(&fresh, &refs, &up.cap, false).await.unwrap();
    assert_eq!(fresh.listings_asked(), 10);
    assert_eq!(c.results.servers_responding.len(), 8, "{c:?}");
    assert_eq!(c.results.count_shares_good, 8, "{c:?}");
    assert!(!c.results.healthy);
}

/// A server of the release before listings reads a listing's zero
/// length as a broken handshake and closes the connection: a check then
/// asks it over a session, and counts its shares (a rolling upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_no_listings_is_asked_over_a_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_servers, mut refs) = ten_servers().await;
    let d = data(100_000, 12);
    let up = put(&client_pool(), &refs, &d, KeyMode::Random)
        .await
        .expect("upload");
    // Before every server, a front that acts as an older server: it closes
    // a connection that opens with a zero length and relays any other.
    for r in refs.iter_mut() {
        let listener = tokio::net::TcpListener::bind("127.5.0.4:0").await.unwrap();
        let (front, back) = (listener.local_addr().unwrap(), r.addr);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = [0u8; 2];
                    if s.read_exact(&mut head).await.is_err() || head == [0, 0] {
                        return;
                    }
                    let Ok(mut b) = tokio::net::TcpStream::connect(back).await else {
                        return;
                    };
                    if b.write_all(&head).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut b).await;
                    }
                });
            }
        });
        r.addr = front;
    }
    let cold = client_pool();
    let c = client::check(&cold, &refs, &up.cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 10, "{c:?}");
    assert!(c.results.healthy);
    assert_eq!(cold.listings_asked(), 10);
    assert_eq!(cold.sessions_opened(), 10, "each asked over a session");
}

/// A download whose reader stops taking data gives its sessions back
/// (`client::park`) and finishes whole once the reader reads again, whole
/// file or range: a pool of three sessions, a file of k = 3 whose reader
/// went quiet, and another download through the same pool still runs.
/// Before parking, the stalled download held all three slots until its
/// reader came back, and the other failed with `PoolExhausted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_reader_stalls_gives_its_sessions_back() {
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    let (_servers, refs) = ten_servers().await;
    let big = data(3_000_000, 11);
    let other = data(300_000, 12);
    // Stored through a pool that holds n sessions.
    let up = client_pool();
    let big_cap = put(&up, &refs, &big, KeyMode::Random).await.unwrap().cap;
    let other_cap = put(&up, &refs, &other, KeyMode::Random).await.unwrap().cap;
    for range in [false, true] {
        // A pool of its own each time: no idle sessions at the start.
        let pool = Arc::new(SessionPool::new(
            client_identity(),
            PoolConfig {
                max_sessions: 3,
                park_after: Duration::from_millis(200),
                ..PoolConfig::default()
            },
        ));
        // The reader takes nothing until the other download is done.
        let (mut w, mut r) = tokio::io::duplex(64 * 1024);
        let (p, rs, cap) = (pool.clone(), refs.clone(), big_cap.clone());
        let stalled = tokio::spawn(async move {
            let r = if range {
                client::download_range(&p, &rs, &cap, 1000, 2_000_000, &mut w).await
            } else {
                client::download(&p, &rs, &cap, &mut w, &|_| {}).await
            };
            drop(w);
            r
        });
        // It takes every slot, then gives them back as its reader stalls
        // (its sessions close: nothing else closes a session here).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while pool.sessions_opened() < 3 || pool.open_sessions() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "range {range}: kept its sessions ({} open)",
                pool.open_sessions()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (got, _) = get(&pool, &refs, &other_cap)
            .await
            .unwrap_or_else(|e| panic!("range {range}: a download beside a stalled one: {e}"));
        assert!(
            got == other,
            "range {range}: the other file comes back whole"
        );
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        let report = stalled.await.unwrap().unwrap();
        let want: &[u8] = if range { &big[1000..2_001_000] } else { &big };
        assert_eq!(report.bytes, want.len() as u64, "range {range}");
        assert!(
            all == want,
            "range {range}: the stalled download comes back whole"
        );
        assert!(report.corrupt.is_empty(), "range {range}: {report:?}");
    }
}

/// A download that cannot get a session because every one of its pool's
/// is in use says so (`PoolExhausted`: busy, try again; 503 at the
/// gateway), whole or ranged, instead of calling a stored file missing
/// ("no share of this file was found" / "only 0 good shares found"); so
/// do a verifying check and a repair, instead of reporting the file short
/// of shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_finds_the_pool_full_says_it_is_busy() {
    use std::sync::Arc;
    use std::time::Duration;

    let (_servers, refs) = ten_servers().await;
    let up = client_pool();
    let big = data(3_000_000, 13);
    let other = data(300_000, 14);
    let big_cap = put(&up, &refs, &big, KeyMode::Random).await.unwrap().cap;
    let other_cap = put(&up, &refs, &other, KeyMode::Random).await.unwrap().cap;
    // A download whose reader reads nothing holds the three sessions (it
    // would park only after an hour).
    let pool = Arc::new(SessionPool::new(
        client_identity(),
        PoolConfig {
            max_sessions: 3,
            park_after: Duration::from_secs(3600),
            wait: Duration::from_millis(300),
            ..PoolConfig::default()
        },
    ));
    let (mut w, mut r) = tokio::io::duplex(64 * 1024);
    let (p, rs) = (pool.clone(), refs.clone());
    let holder =
        tokio::spawn(async move { client::download(&p, &rs, &big_cap, &mut w, &|_| {}).await });
    // Its first byte written, its three shares are open (the sessions
    // its search for them used may have been idle in the pool before,
    // for the next operation to take).
    let mut first = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut r, &mut first)
        .await
        .unwrap();
    assert_eq!((pool.open_sessions(), pool.idle_sessions()), (3, 0));
    let whole = get(&pool, &refs, &other_cap).await;
    assert!(
        matches!(whole, Err(client::ClientError::PoolExhausted(3))),
        "{:?}",
        whole.map(|(_, r)| r)
    );
    let mut out = Vec::new();
    let range = client::download_range(&pool, &refs, &other_cap, 0, 10, &mut out).await;
    assert!(
        matches!(range, Err(client::ClientError::PoolExhausted(3))),
        "{range:?}"
    );
    // A check that reads shares, and a repair, could not look either: an
    // error, not a report of a file short of shares (which a repair would
    // "mend" by regenerating shares that exist).
    let Cap::Chk(chk) = &other_cap else {
        panic!("a CHK file")
    };
    let checked = client::check(&pool, &refs, &other_cap, true).await;
    assert!(
        matches!(checked, Err(client::ClientError::PoolExhausted(3))),
        "{checked:?}"
    );
    let repaired = client::repair(
        &pool,
        &refs,
        &chk.verify_cap(),
        &client::RepairOptions::default(),
    )
    .await;
    assert!(
        matches!(repaired, Err(client::ClientError::PoolExhausted(3))),
        "{repaired:?}"
    );
    drop(r);
    assert!(holder.await.unwrap().is_err(), "its reader went away");
    // With sessions free again, the same check finds the file healthy.
    let checked = client::check(&pool, &refs, &other_cap, true).await.unwrap();
    assert!(checked.results.healthy, "{checked:?}");
}
