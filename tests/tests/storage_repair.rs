//! Repair on a real loopback grid (issue 23): missing and corrupt shares
//! regenerated onto the next servers in permuted order and reported in
//! Tahoe's keys; a repairer holding only the verify capability; hostile
//! servers in the repair path (one lists shares it lacks, one serves
//! corrupt blocks) cannot make repair write bad data or loop.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::identity::NodeId;
use grapevine_crypto::session::Session;
use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::chk::convergent_key;
use grapevine_storage::client::{
    self, permuted_servers, KeyMode, RepairOptions, ServerRef, Verdict,
};
use grapevine_storage::protocol::{decode_request, encode, Reply, ResponseMsg, MAX_MESSAGE};
use grapevine_storage::server::ShareServer;
use grapevine_storage::types::storage_index;
use grapevine_storage::{Cap, Params, SessionPool, ShareStore, StorageIndex, VerifyCap};

#[path = "common/servers.rs"]
mod servers;
use servers::{refs, stop, walk, Server};

const IP: [u8; 4] = [127, 6, 0, 1];

async fn servers(n: usize) -> Vec<Server> {
    servers::servers(IP, "s", n).await
}

fn pool() -> SessionPool {
    servers::pool("127.6.0.2:1")
}

/// A file whose plaintext is easy to spot: the same 16 bytes over and over.
fn plain(len: usize) -> Vec<u8> {
    b"attack at dawn; "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

const SECRET: [u8; 32] = [7; 32];

/// The storage index a convergent upload of `d` (3-of-10) gets.
fn si_of(d: &[u8]) -> StorageIndex {
    let key = convergent_key(&SECRET, &Params::default(), blake3::hash(d).as_bytes());
    storage_index(&key)
}

async fn put(me: &SessionPool, refs: &[ServerRef], d: &[u8]) -> client::UploadReport {
    let req = client::UploadRequest {
        params: Params::default(),
        mode: KeyMode::Convergent(SECRET),
        size: d.len() as u64,
        input: d,
        hash_input: Some(d),
    };
    client::upload(me, refs, req, &|_| {})
        .await
        .expect("upload")
}

async fn get(me: &SessionPool, refs: &[ServerRef], cap: &Cap) -> Vec<u8> {
    let mut out = Vec::new();
    client::download(me, refs, cap, &mut out, &|_| {})
        .await
        .expect("download");
    out
}

/// The path of share `shnum` of `si` in a store at `root`.
fn share_file(root: &std::path::Path, si: &StorageIndex, shnum: u16) -> std::path::PathBuf {
    let s = si.to_string();
    root.join("shares")
        .join(&s[..2])
        .join(&s)
        .join(shnum.to_string())
}

/// Issue 23.1: `check --repair`'s core. Two holders gone for good and one
/// share corrupt on disk: repair regenerates the three onto the next
/// servers in permuted order (first those holding nothing), the report has
/// Tahoe's keys, the file is healthy afterwards and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_regenerates_missing_and_corrupt_shares_onto_the_next_servers() {
    let mut grid = servers(12).await;
    let refs = refs(&grid);
    let me = pool();
    let d = plain(3 * 1024 * 1024 + 4321);
    let up = put(&me, &refs, &d).await;
    let Cap::Chk(read) = &up.cap else {
        panic!("not a CHK capability")
    };
    let si = read.storage_index();
    let order = permuted_servers(&si, &refs);
    // 3-of-10 over 12 servers: one share on each of the first ten.
    let holders: Vec<NodeId> = order[..10].iter().map(|s| s.id).collect();
    let spares: BTreeSet<NodeId> = order[10..].iter().map(|s| s.id).collect();
    assert_eq!(
        up.placements.iter().map(|p| p.1).collect::<BTreeSet<_>>(),
        holders.iter().copied().collect(),
    );
    let idx = |grid: &[Server], id: NodeId| grid.iter().position(|s| s.r.id == id).unwrap();
    for &h in &holders[3..5] {
        let i = idx(&grid, h);
        stop(&mut grid[i]).await;
    }
    let (bad_shnum, bad_server) = *up.placements.iter().find(|p| p.1 == holders[6]).unwrap();
    let path = share_file(grid[idx(&grid, bad_server)].dir.path(), &si, bad_shnum);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let vcap = read.verify_cap();
    let opts = RepairOptions {
        verify: true,
        rate: None,
    };
    let r = client::repair(&me, &refs, &vcap, &opts).await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "repair-attempted",
        "repair-successful",
        "pre-repair-results",
        "post-repair-results",
    ] {
        assert!(json.get(key).is_some(), "{key}: {json}");
    }
    assert_eq!(
        json["pre-repair-results"]["results"]["count-shares-good"],
        7
    );
    assert_eq!(r.pre_repair_results.verdict(), Verdict::Corrupt);
    assert!(r.repair_attempted && r.repair_successful, "{json:#}");
    let post = &r.post_repair_results;
    assert_eq!(post.results.count_shares_good, 10, "{json:#}");
    assert_eq!(post.verdict(), Verdict::Healthy, "{json:#}");
    let regenerated = &r.repair_report.shares_regenerated;
    assert_eq!(regenerated.len(), 3, "{json:#}");
    // The servers holding nothing took the first regenerated shares, one
    // each; the server of the corrupt share took none.
    let on: Vec<String> = regenerated.iter().map(|x| x.1.clone()).collect();
    for s in &spares {
        assert_eq!(
            on.iter().filter(|o| **o == s.to_string()).count(),
            1,
            "{on:?}"
        );
    }
    assert!(!on.contains(&bad_server.to_string()), "{on:?}");
    // Reads back, and a second repair finds nothing to do.
    assert!(get(&me, &refs, &up.cap).await == d);
    let again = client::repair(&me, &refs, &vcap, &opts).await.unwrap();
    assert!(!again.repair_attempted);
    assert_eq!(again.post_repair_results, again.pre_repair_results);
}

/// Issue 23 at scale: a check of a file missing one share asks the
/// servers `locate` asks (the first `2n` of its permuted list once fewer
/// than `n` shares turn up), not the rest of the grid. (A check that went
/// on with a search that counted none of the shares already found asked
/// every server of the grid, for every degraded file, at every pass of
/// every holder: the churn run's checks fell from 160 to 11 a second once
/// servers began to die.) A check that needs only `enough` shares (the
/// repair job's: is the file below its threshold?) asks the first `n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_of_a_file_missing_a_share_asks_2n_servers_not_the_grid() {
    let mut grid = servers(40).await;
    let refs = refs(&grid);
    let me = pool();
    let d = plain(200 * 1024 + 7);
    let up = put(&me, &refs, &d).await;
    let Cap::Chk(read) = &up.cap else {
        panic!("not a CHK capability")
    };
    let si = read.storage_index();
    let order = permuted_servers(&si, &refs);
    let gone = grid.iter().position(|s| s.r.id == order[4].id).unwrap();
    stop(&mut grid[gone]).await;
    let vcap = read.verify_cap();
    for depth in [client::Depth::List, client::Depth::Light] {
        me.record_contacts(true);
        let r = client::check_depth(&me, &refs, &vcap, depth).await.unwrap();
        let asked: BTreeSet<NodeId> = me.take_contacts().iter().map(|c| c.server).collect();
        me.record_contacts(false);
        assert_eq!(r.results.count_shares_good, 9, "{depth:?}: {}", r.summary);
        assert_eq!(
            asked,
            order[..20].iter().map(|s| s.id).collect::<BTreeSet<_>>(),
            "{depth:?}: the first 2n servers, and only they"
        );
        assert_eq!(r.results.servers_responding.len(), 19, "{depth:?}");
    }
    // The repair job needs only to know whether the file is below its
    // threshold (7): the first n servers tell, and only they are asked.
    me.record_contacts(true);
    let r = client::check_enough(&me, &refs, &vcap, client::Depth::Light, 7)
        .await
        .unwrap();
    let asked: BTreeSet<NodeId> = me.take_contacts().iter().map(|c| c.server).collect();
    assert_eq!(r.results.count_shares_good, 9, "{}", r.summary);
    assert_eq!(
        asked,
        order[..10].iter().map(|s| s.id).collect::<BTreeSet<_>>(),
        "enough found among the first n"
    );
}

/// Issue 23.2: a repairer holding only the verify capability (parsed from
/// its text; no read capability in reach) repairs the file; nothing it can
/// read holds the plaintext, and it cannot make a read capability of what
/// it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repairer_holding_only_the_verify_cap_never_sees_plaintext() {
    let mut grid = servers(10).await;
    let refs = refs(&grid);
    let owner = pool();
    let d = plain(2 * 1024 * 1024 + 99);
    let up = put(&owner, &refs, &d).await;
    let Cap::Chk(read) = &up.cap else {
        panic!("not a CHK capability")
    };
    let vtext = read.verify_cap().to_string();
    let key_b32 = Cap::Chk(read.clone())
        .to_string()
        .split(':')
        .nth(2)
        .unwrap()
        .to_string();
    assert!(
        !vtext.contains(&key_b32),
        "the key is in the verify capability"
    );
    for s in grid.iter_mut().take(4) {
        stop(s).await;
    }

    // The repairer: its own identity, and the verify capability's text.
    let report = {
        let repairer = pool();
        assert!(vtext.parse::<Cap>().is_err(), "a verify capability reads");
        let vcap: VerifyCap = vtext.parse().unwrap();
        let live = &refs[4..];
        let r = client::repair(&repairer, live, &vcap, &RepairOptions::default())
            .await
            .unwrap();
        assert!(r.repair_successful, "{r:#?}");
        assert_eq!(r.repair_report.shares_regenerated.len(), 4);
        r
    };
    assert!(report.repair_report.bytes_read > 0);
    // All the repairer could read is on the servers: no plaintext there.
    for s in &grid {
        for p in walk(s.dir.path()) {
            let b = std::fs::read(&p).unwrap();
            assert!(
                !b.windows(16).any(|w| w == b"attack at dawn; "),
                "plaintext in {}",
                p.display()
            );
        }
    }
    // The owner reads the file from the repaired shares alone (the four
    // first servers are gone).
    assert!(get(&owner, &refs[4..], &up.cap).await == d);
}

/// How a hostile server lies.
#[derive(Clone)]
enum Lie {
    /// Lists every share number of the file, held or not (sizes as given).
    ClaimsAll(Arc<AtomicU64>),
    /// Serves every large read (a block) with one bit flipped.
    CorruptBlocks,
}

struct Hostile {
    r: ServerRef,
    store: ShareStore,
    requests: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

/// A share server that stores honestly and answers as `lie` says, with
/// the identity `ident`.
async fn hostile(ident: Identity, lie: Lie) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let store = ShareStore::open(dir.path(), 0).unwrap();
    let listener = tokio::net::TcpListener::bind((std::net::IpAddr::from(IP), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = LocationRecord::new(&ident, vec![addr])
        .sign(&ident)
        .unwrap();
    let ident = Arc::new(ident);
    let requests = Arc::new(AtomicU64::new(0));
    let r = ServerRef {
        id: ident.node_id(),
        addr,
    };
    let (st, count) = (store.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (ident, rec, store, lie, count) = (
                ident.clone(),
                rec.clone(),
                st.clone(),
                lie.clone(),
                count.clone(),
            );
            tokio::spawn(async move {
                let cfg = SessionConfig {
                    max_message: MAX_MESSAGE,
                    ..SessionConfig::default()
                };
                let Ok((mut session, _)) = Session::accept(stream, &ident, &rec, &cfg).await else {
                    return;
                };
                let mut srv = ShareServer::new(store);
                while let Ok(msg) = session.recv().await {
                    count.fetch_add(1, Relaxed);
                    let Ok(m) = decode_request(&msg) else { return };
                    let (version, id) = (m.version, m.id);
                    let mut reply = srv.answer(m.req);
                    match (&lie, &mut reply) {
                        (Lie::ClaimsAll(size), Reply::Shares(v)) => {
                            for s in 0..10u16 {
                                if !v.iter().any(|x| x.0 == s) {
                                    v.push((s, size.load(Relaxed)));
                                }
                            }
                        }
                        (Lie::CorruptBlocks, Reply::Data(d)) if d.len() > 4096 => {
                            let mid = d.len() / 2;
                            d[mid] ^= 1;
                        }
                        _ => {}
                    }
                    let out = encode(&ResponseMsg::new(version, id, reply));
                    if session.send(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Hostile {
        r,
        store,
        requests,
        _dir: dir,
    }
}

/// An identity at rank `rank` of `si`'s permuted list over `others` and
/// itself.
fn identity_at(si: &StorageIndex, others: &[ServerRef], rank: usize) -> Identity {
    for _ in 0..100_000 {
        let ident = Identity::generate();
        let me = ServerRef {
            id: ident.node_id(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let mut all = others.to_vec();
        all.push(me);
        if permuted_servers(si, &all)[rank].id == me.id {
            return ident;
        }
    }
    panic!("no identity at rank {rank}")
}

/// Issue 23.3: hostile servers in the repair path. The first server of the
/// file's permuted list serves corrupt blocks (its share's hash list is
/// fine, so a light check counts it and repair reads it first); the second
/// lists every share number while holding one. Repair drops the corrupt
/// source at its first block, does not believe the false listing, puts no
/// new share on either, writes only shares that verify, and ends; asked
/// again, it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_servers_cannot_make_repair_write_bad_data_or_loop() {
    let mut grid = servers(10).await;
    let d = plain(3 * 1024 * 1024 + 17);
    let si = si_of(&d);
    let honest = refs(&grid);
    let corrupter = hostile(identity_at(&si, &honest, 0), Lie::CorruptBlocks).await;
    let mut with_c = honest.clone();
    with_c.push(corrupter.r);
    let claimed_size = Arc::new(AtomicU64::new(0));
    let liar = hostile(
        identity_at(&si, &with_c, 1),
        Lie::ClaimsAll(claimed_size.clone()),
    )
    .await;
    let mut refs = with_c;
    refs.push(liar.r);
    let order = permuted_servers(&si, &refs);
    assert_eq!((order[0].id, order[1].id), (corrupter.r.id, liar.r.id));

    let me = pool();
    let up = put(&me, &refs, &d).await;
    assert_eq!(si_of(&d), si);
    // Both hostile servers took a share honestly.
    let liar_share = liar.store.list(&si).unwrap();
    assert_eq!(liar_share.len(), 1);
    assert_eq!(corrupter.store.list(&si).unwrap().len(), 1);
    claimed_size.store(liar.store.share_size(&si, liar_share[0]).unwrap(), Relaxed);
    // Three honest holders gone for good.
    let holders: Vec<NodeId> = order[2..10].iter().map(|s| s.id).collect();
    for &h in &holders[..3] {
        let i = grid.iter().position(|s| s.r.id == h).unwrap();
        stop(&mut grid[i]).await;
    }
    let Cap::Chk(read) = &up.cap else {
        panic!("not a CHK capability")
    };
    let vcap = read.verify_cap();
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        client::repair(&me, &refs, &vcap, &RepairOptions::default()),
    )
    .await
    .expect("repair ends")
    .unwrap();
    let text = format!("{r:#?}");
    assert!(r.repair_attempted, "{text}");
    // The false listing was not believed: 7 good shares, not 10.
    assert_eq!(r.pre_repair_results.results.count_shares_good, 7, "{text}");
    assert!(
        r.repair_report
            .errors
            .iter()
            .any(|e| e.contains("served a corrupt block")),
        "{text}"
    );
    let on: BTreeSet<String> = r
        .repair_report
        .shares_regenerated
        .iter()
        .map(|x| x.1.clone())
        .collect();
    assert_eq!(r.repair_report.shares_regenerated.len(), 3, "{text}");
    assert!(!on.contains(&corrupter.r.id.to_string()) && !on.contains(&liar.r.id.to_string()));
    assert!(r.repair_successful, "{text}");
    // Every share on the honest servers verifies block by block.
    let alive: Vec<ServerRef> = honest
        .iter()
        .filter(|s| !holders[..3].contains(&s.id))
        .copied()
        .collect();
    let c = client::check_verify_cap(&me, &alive, &vcap, true)
        .await
        .unwrap();
    assert_eq!(c.results.count_corrupt_shares, 0, "{c:#?}");
    assert_eq!(c.results.count_shares_good, 8, "{c:#?}");
    assert!(get(&me, &alive, &up.cap).await == d);
    // Asked again: healthy by the light check, nothing attempted; the
    // hostile servers were asked a bounded number of things.
    let again = client::repair(&me, &refs, &vcap, &RepairOptions::default())
        .await
        .unwrap();
    assert!(!again.repair_attempted, "{again:#?}");
    let asked = corrupter.requests.load(Relaxed) + liar.requests.load(Relaxed);
    assert!(asked < 500, "{asked} requests to the hostile servers");
}
