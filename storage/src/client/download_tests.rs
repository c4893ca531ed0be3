//! The download's pipeline against hand-driven share servers: a share that
//! fails is replaced while another share is slow, its receiver going on
//! without waiting for the slow one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grapevine_crypto::identity::Identity;
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::LocationRecord;
use grapevine_crypto::session::Session;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::*;
use crate::chk::testing::encode_all;
use crate::chk::SEGMENT_SIZE;
use crate::client::conn::tests::me;
use crate::client::decoding::{file_arrival, file_block, Held};
use crate::client::pool::PoolConfig;
use crate::protocol::{decode, encode, ErrorCode, Reply, Request, RequestMsg, ResponseMsg};
use crate::types::Params;
use std::collections::BTreeMap;

/// What a hand-driven server does with block reads of its one share.
#[derive(Clone, Copy, Default)]
struct Script {
    /// Hold the answer to the read at this offset until released.
    hold: Option<u64>,
    /// Answer the read at this offset with an error.
    fail: Option<u64>,
    /// Flip a byte of the answer to the read at this offset.
    corrupt: Option<u64>,
    /// How far away the server is: it waits this long before its
    /// handshake answers and before every answer, so a client's session
    /// measures a round trip of at least this
    /// ([`Conn::depth`](crate::client::Conn::depth) follows it).
    link: Duration,
}

/// A link long enough that a download reads as far ahead as its budget
/// allows (on a short one it keeps two blocks per share).
const LONG_LINK: Duration = Duration::from_millis(10);

/// Reads the servers received, in order: (share, offset).
type Log = Arc<Mutex<Vec<(u16, u64)>>>;

/// A listening share server, not serving yet.
struct Bound {
    id: Arc<Identity>,
    listener: TcpListener,
    me: ServerRef,
}

async fn bind() -> Bound {
    let id = Arc::new(Identity::generate());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = ServerRef {
        id: id.node_id(),
        addr: listener.local_addr().unwrap(),
    };
    Bound { id, listener, me }
}

/// Servers for `shares` of the file `si`, share `i` on the `i`-th server of
/// the permuted list (where an upload puts it), each answering reads of
/// its share as `script(i)` says; every read is logged.
async fn grid(
    si: crate::types::StorageIndex,
    shares: Vec<Vec<u8>>,
    script: impl Fn(u16) -> Script,
    log: &Log,
    release: &Arc<Notify>,
) -> Vec<ServerRef> {
    let placed = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| (i as u16, share))
        .collect();
    grid_of(si, placed, |pos| script(pos as u16), log, release).await
}

/// Servers for `placed` shares `(share number, bytes)` of the file `si`,
/// the `i`-th on the `i`-th server of the permuted list (a share number
/// may come twice: two servers holding the same share), each answering
/// reads as `script(i)` says.
async fn grid_of(
    si: crate::types::StorageIndex,
    placed: Vec<(u16, Vec<u8>)>,
    script: impl Fn(usize) -> Script,
    log: &Log,
    release: &Arc<Notify>,
) -> Vec<ServerRef> {
    let mut bound = Vec::new();
    for _ in 0..placed.len() {
        bound.push(bind().await);
    }
    let refs: Vec<ServerRef> = bound.iter().map(|b| b.me).collect();
    let order = crate::client::place::permuted_servers(&si, &refs);
    for (i, (shnum, share)) in placed.into_iter().enumerate() {
        let pos = bound.iter().position(|b| b.me == order[i]).unwrap();
        let b = bound.remove(pos);
        serve(b, shnum, share, script(i), log.clone(), release.clone());
    }
    refs
}

/// Serve share `shnum` (`share`'s bytes) on `b`, answering lists and reads
/// as `script` says; every read is logged.
fn serve(b: Bound, shnum: u16, share: Vec<u8>, script: Script, log: Log, release: Arc<Notify>) {
    let Bound { id, listener, me } = b;
    let rec = LocationRecord::new(&id, vec![me.addr]).sign(&id).unwrap();
    let share = Arc::new(share);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (id, rec, share, log, release) = (
                id.clone(),
                rec.clone(),
                share.clone(),
                log.clone(),
                release.clone(),
            );
            tokio::spawn(async move {
                let cfg = SessionConfig::default();
                tokio::time::sleep(script.link).await;
                let Ok((mut s, _)) = Session::accept(stream, &id, &rec, &cfg).await else {
                    return;
                };
                while let Ok(m) = s.recv().await {
                    let req: RequestMsg = decode(&m).expect("a request");
                    tokio::time::sleep(script.link).await;
                    let reply = match req.req {
                        Request::List { .. } => Reply::Shares(vec![(shnum, share.len() as u64)]),
                        Request::Read { offset, len, .. } => {
                            log.lock().unwrap().push((shnum, offset));
                            if script.hold == Some(offset) {
                                // Bounded, so a pipeline that never
                                // releases it fails rather than hangs.
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(60),
                                    release.notified(),
                                )
                                .await;
                            }
                            if script.fail == Some(offset) {
                                Reply::Error {
                                    code: ErrorCode::NotFound,
                                    message: "gone".into(),
                                }
                            } else {
                                let a = (offset as usize).min(share.len());
                                let b = a.saturating_add(len as usize).min(share.len());
                                let mut d = share[a..b].to_vec();
                                if script.corrupt == Some(offset) {
                                    d[0] ^= 1;
                                }
                                Reply::Data(d)
                            }
                        }
                        _ => Reply::Ok,
                    };
                    if s.send(&encode(&ResponseMsg::new(1, req.id, reply)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

const PARAMS: Params = Params {
    k: 3,
    n: 4,
    happy: 3,
};

/// A file of six segments, its four shares and its capability.
fn file() -> (Vec<u8>, Vec<Vec<u8>>, crate::cap::ReadCap) {
    let data: Vec<u8> = (0..6 * SEGMENT_SIZE as usize - 100)
        .map(|i| (i * 7 + i / 4099) as u8)
        .collect();
    let (shares, cap) = encode_all([9; 32], &data, PARAMS);
    (data, shares, cap)
}

/// Whether a server logged a read of share `shnum` at `offset` within
/// 30 s (checked every 10 ms).
async fn asked(log: &Log, shnum: u16, offset: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|&(s, off)| s == shnum && off == offset)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

/// Where segment `seg`'s block starts in a share of [`file`].
fn block(seg: u64) -> u64 {
    seg * SEGMENT_SIZE.div_ceil(3)
}

/// Share 0 is slow (its answer for segment 1 held) and share 1 fails at
/// segment 2. The download replaces share 1 by share 3 and reads share 3's
/// blocks from segment 2 (share 1 delivered 0 and 1, checked) while share
/// 0's answer is still held: share 1's failure is seen
/// as it arrives, not when the slow share's block for an earlier segment
/// comes. (The pipeline before this one waited for every share's block of
/// a segment before taking the next, so it asked share 3 only once share
/// 0 answered.) The file comes back whole, the read-ahead bound kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_share_is_replaced_while_another_is_slow() {
    let (data, shares, cap) = file();
    let log: Log = Arc::default();
    let release = Arc::new(Notify::new());
    let script = |shnum| match shnum {
        0 => Script {
            hold: Some(block(1)),
            ..Script::default()
        },
        1 => Script {
            fail: Some(block(2)),
            ..Script::default()
        },
        _ => Script::default(),
    };
    let servers = grid(cap.storage_index(), shares, script, &log, &release).await;
    let pool = SessionPool::new(me(), PoolConfig::default());
    let cap = Cap::Chk(cap);
    let get = async {
        let mut out = Vec::new();
        let r = download(&pool, &servers, &cap, &mut out, &|_| ()).await;
        (r, out)
    };
    let watch = async {
        // Wait (bounded) for a block read of share 3, then let share 0
        // answer.
        let asked_3 = asked(&log, 3, block(2)).await;
        release.notify_one();
        asked_3
    };
    let ((r, out), asked_3) = tokio::join!(get, watch);
    let report = r.expect("the download succeeds");
    assert!(out == data, "the file came back whole");
    assert!(
        asked_3,
        "share 3 was asked for its blocks only after the slow share answered"
    );
    assert!(
        (1..=READ_AHEAD).contains(&report.waits.peak_ahead),
        "{} segments ahead",
        report.waits.peak_ahead
    );
    assert!(report.corrupt.is_empty());
}

/// A block found corrupt in the middle of the file (segments after it
/// received, perhaps queued for the decoder) costs its share: the share is
/// replaced from that segment on, named in the report, and the file comes
/// back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_mid_file_is_replaced_and_reported() {
    let (data, shares, cap) = file();
    let log: Log = Arc::default();
    let release = Arc::new(Notify::new());
    let script = |shnum| Script {
        corrupt: (shnum == 1).then_some(block(2)),
        ..Script::default()
    };
    let servers = grid(cap.storage_index(), shares, script, &log, &release).await;
    let pool = SessionPool::new(me(), PoolConfig::default());
    let mut out = Vec::new();
    let report = download(&pool, &servers, &Cap::Chk(cap), &mut out, &|_| ())
        .await
        .expect("the download succeeds");
    assert!(out == data, "the file came back whole");
    assert_eq!(
        report.corrupt.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(report.bytes, data.len() as u64);
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|&(s, off)| s == 3 && off == block(2)),
        "share 3 replaced share 1 from segment 2"
    );
    assert!(
        !log.iter().any(|&(s, off)| s == 3 && off == block(1)),
        "segments already decoded are not read again"
    );
}

/// Two failures, the second replaced by a share number a failed share had
/// delivered blocks of. The first servers hold shares 0, 1 and 3; share 3
/// fails at segment 5 and is replaced by share 4 from segment 5 on; share
/// 1 (held at segment 2) fails there, and the next share found is a
/// second copy of share 3. Its blocks for segments 2 to 4 would repeat
/// the first copy's, so those segments would never have three shares and
/// the download would wait for ever (it did); it now takes share 5 from
/// segment 2 instead, and the file comes back whole. (Over a long link:
/// share 3 must read three segments past the held one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_supplies_a_share_number_the_segments_lack() {
    let params = Params {
        k: 3,
        n: 6,
        happy: 3,
    };
    let data: Vec<u8> = (0..6 * SEGMENT_SIZE as usize - 100)
        .map(|i| (i * 11 + i / 3001) as u8)
        .collect();
    let (shares, cap) = encode_all([8; 32], &data, params);
    let placed: Vec<(u16, Vec<u8>)> = [0u16, 1, 3, 4, 3, 5]
        .iter()
        .map(|&s| (s, shares[s as usize].clone()))
        .collect();
    let log: Log = Arc::default();
    let release = Arc::new(Notify::new());
    let script = |pos| match pos {
        2 => Script {
            fail: Some(block(5)),
            link: LONG_LINK,
            ..Script::default()
        },
        1 => Script {
            hold: Some(block(2)),
            fail: Some(block(2)),
            link: LONG_LINK,
            ..Script::default()
        },
        _ => Script {
            link: LONG_LINK,
            ..Script::default()
        },
    };
    let servers = grid_of(cap.storage_index(), placed, script, &log, &release).await;
    let pool = SessionPool::new(me(), PoolConfig::default());
    let cap = Cap::Chk(cap);
    let get = async {
        let mut out = Vec::new();
        // Bounded: the bug this guards against waits for ever.
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            download(&pool, &servers, &cap, &mut out, &|_| ()),
        )
        .await;
        (r, out)
    };
    let watch = async {
        // Once share 4 replaces the first failure (asked for segment 5),
        // let share 1 answer segment 2, with its failure.
        let replaced = asked(&log, 4, block(5)).await;
        release.notify_one();
        replaced
    };
    let ((r, out), replaced) = tokio::join!(get, watch);
    assert!(
        replaced,
        "share 4 replaced share 3 at segment 5: {:?}",
        log.lock().unwrap()
    );
    r.expect("the download ends")
        .expect("the download succeeds");
    assert!(out == data, "the file came back whole");
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|&(s, off)| s == 5 && off == block(2)),
        "share 5 was read from segment 2: {log:?}"
    );
}

/// A decoder of the file whose `shares` these are, given every share's
/// hash list.
fn decoder_with_every_hash_list(shares: &[Vec<u8>], cap: crate::cap::ReadCap) -> Decoder {
    let (_, ueb, _) = crate::chk::testing::parts(&shares[0]);
    let mut dec = Decoder::new(cap, ueb).unwrap();
    for (s, share) in shares.iter().enumerate() {
        dec.add_hashes(s as u16, crate::chk::testing::parts(share).2)
            .unwrap();
    }
    dec
}

/// A segment's blocks are filed once per share number: the same share read
/// again from another server (a replacement) does not make `k` blocks of
/// fewer than `k` shares.
#[test]
fn a_segments_blocks_are_filed_once_per_share() {
    let (_, shares, cap) = file();
    let dec = decoder_with_every_hash_list(&shares, cap);
    let len = dec.ueb().block_len(0) as usize;
    let held = |s: usize| Held {
        block: dec
            .checker(s as u16)
            .unwrap()
            .check(0, bytes::Bytes::copy_from_slice(&shares[s][..len]))
            .unwrap(),
        _permit: None,
    };
    let mut segment = Vec::new();
    file_block(&mut segment, held(1));
    file_block(&mut segment, held(0));
    file_block(&mut segment, held(1));
    assert_eq!(segment.len(), 2, "share 1 filed once");
    file_block(&mut segment, held(3));
    let mut shnums: Vec<u16> = segment.iter().map(|h| h.block.shnum()).collect();
    shnums.sort_unstable();
    assert_eq!(shnums, vec![0, 1, 3]);
}

/// A block that arrives for a segment whose decoding has started (a second
/// copy of a share, read by a replacement) is not filed: its read-ahead
/// permit goes back at once. Filed, it waited for a decoding that never
/// came, and its receiver, out of permits, waited for ever.
#[test]
fn a_block_for_a_segment_already_decoding_gives_its_permit_back() {
    let (_, shares, cap) = file();
    let dec = decoder_with_every_hash_list(&shares, cap);
    let permits = Arc::new(tokio::sync::Semaphore::new(2));
    let held = |seg: u64| {
        let (off, len) = (
            dec.ueb().block_offset(seg) as usize,
            dec.ueb().block_len(seg) as usize,
        );
        Held {
            block: dec
                .checker(2)
                .unwrap()
                .check(
                    seg,
                    bytes::Bytes::copy_from_slice(&shares[2][off..off + len]),
                )
                .unwrap(),
            _permit: Some(permits.clone().try_acquire_owned().unwrap()),
        }
    };
    let mut filed = BTreeMap::new();
    // Segments 0 and 1 are decoding (the next to start is 2).
    assert!(!file_arrival(&mut filed, 2, 1, held(1)));
    assert!(filed.is_empty());
    assert_eq!(permits.available_permits(), 2, "the permit went back");
    assert!(file_arrival(&mut filed, 2, 2, held(2)));
    assert_eq!(
        permits.available_permits(),
        1,
        "a filed block keeps its permit"
    );
}

/// A share that fails while the download is parked (its corrupt block of
/// the last segment arrives while the writer waits for its reader) is
/// replaced once the download goes on, though the other shares had
/// delivered every segment, so that none of them was parked to be read
/// again. Before, nothing looked for a replacement and the download
/// waited for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_that_fails_while_parked_is_replaced() {
    use tokio::io::AsyncReadExt;

    let data: Vec<u8> = (0..2 * SEGMENT_SIZE as usize - 100)
        .map(|i| (i * 5 + i / 3001) as u8)
        .collect();
    let (shares, cap) = encode_all([7; 32], &data, PARAMS);
    let log: Log = Arc::default();
    let release = Arc::new(Notify::new());
    // Share 1 is far (every answer 200 ms on): its corrupt block of
    // segment 1 comes about 200 ms after segment 0 is decoded and its
    // write is waiting, and 800 ms before the download parks.
    let script = |shnum| Script {
        corrupt: (shnum == 1).then_some(block(1)),
        link: if shnum == 1 {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        },
        ..Script::default()
    };
    let servers = grid(cap.storage_index(), shares, script, &log, &release).await;
    let pool = Arc::new(SessionPool::new(
        me(),
        PoolConfig {
            park_after: Duration::from_secs(1),
            ..PoolConfig::default()
        },
    ));
    let (mut w, mut r) = tokio::io::duplex(1024);
    let p = pool.clone();
    let task = tokio::spawn(async move {
        let r = download(&p, &servers, &Cap::Chk(cap), &mut w, &|_| ()).await;
        drop(w);
        r
    });
    // Parked: no session in use.
    tokio::time::timeout(Duration::from_secs(30), async {
        while pool.sessions_opened() < 3 || pool.open_sessions() != pool.idle_sessions() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the download did not park: {} sessions open, {} idle, {} opened",
            pool.open_sessions(),
            pool.idle_sessions(),
            pool.sessions_opened()
        )
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut out))
        .await
        .expect("the download goes on to its end")
        .unwrap();
    assert!(out == data, "the file came back whole");
    let report = task.await.unwrap().unwrap();
    assert_eq!(
        report.corrupt.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![1]
    );
}
