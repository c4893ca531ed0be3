//! The share server's sans-IO core: [`ShareServer`] answers one request at
//! a time against a [`ShareStore`], synchronously, and is tested without
//! sockets. Bytes in, bytes out: [`ShareServer::handle_bytes`] decodes a
//! request message (refusing what it cannot serve under the request's own
//! id, see [`crate::protocol`]), answers it and encodes the response.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::protocol::{
    data_header, decode_request, encode, peek_kind, ErrorCode, Reply, Request, ResponseMsg,
    MAX_READ, MAX_WRITE, PROTOCOL_VERSION,
};
use crate::store::{ShareStore, ShareWriter};
use crate::types::{ReportVerdict, StorageIndex};

/// Shares one session may have open for writing at once.
pub const MAX_OPEN_PER_SESSION: usize = 64;

/// The shares of `si` in `store`, with their sizes: what a server lists,
/// over a session or in a listing.
pub(crate) fn list_shares(
    store: &ShareStore,
    si: &StorageIndex,
) -> Result<Vec<(u16, u64)>, StoreError> {
    let shares = store.list(si)?;
    let mut out = Vec::with_capacity(shares.len());
    for n in shares {
        if let Ok(size) = store.share_size(si, n) {
            out.push((n, size));
        }
    }
    Ok(out)
}

/// Per-session server state: the shares this session is writing. Dropping
/// it (the session ended) discards unfinished shares.
#[derive(Debug)]
pub struct ShareServer {
    store: ShareStore,
    open: HashMap<(StorageIndex, u16), ShareWriter>,
}

fn error(code: ErrorCode, message: impl ToString) -> Reply {
    Reply::Error {
        code,
        message: message.to_string(),
    }
}

fn from_store(e: StoreError) -> Reply {
    let code = match &e {
        StoreError::NoSpace { .. } | StoreError::DiskFull(_) => ErrorCode::NoSpace,
        StoreError::AlreadyExists => ErrorCode::AlreadyExists,
        StoreError::NotFound => ErrorCode::NotFound,
        StoreError::OutOfRange => ErrorCode::OutOfRange,
        StoreError::BeyondAllocation | StoreError::NotSequential { .. } => ErrorCode::BadWrite,
        StoreError::Incomplete { .. } => ErrorCode::Incomplete,
        StoreError::Corrupt => ErrorCode::Corrupt,
        StoreError::BadShareNumber(_) | StoreError::TooLarge(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Io,
    };
    error(code, e)
}

impl ShareServer {
    /// Serve `store`.
    pub fn new(store: ShareStore) -> Self {
        ShareServer {
            store,
            open: HashMap::new(),
        }
    }

    /// Whether this session has shares open for writing (allocated, not
    /// yet closed or aborted). A draining server lets such a session finish
    /// and closes the others at once.
    pub fn is_writing(&self) -> bool {
        !self.open.is_empty()
    }

    /// Shares this session has open for writing (each holding a
    /// reservation).
    pub fn open_shares(&self) -> usize {
        self.open.len()
    }

    /// Answer one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        self.answer(req)
    }

    /// Answer one request whose write bytes, if any, are held as `D`
    /// (borrowed from the received message, on the serving path).
    pub fn answer<D: AsRef<[u8]>>(&mut self, req: Request<D>) -> Reply {
        match req {
            Request::Version => match self.store.available() {
                Ok(available) => Reply::Version {
                    protocol: PROTOCOL_VERSION as u32,
                    max_write: MAX_WRITE as u32,
                    available,
                },
                Err(e) => from_store(e),
            },
            Request::Allocate { si, shnum, size } => {
                if self.open.len() >= MAX_OPEN_PER_SESSION {
                    return error(
                        ErrorCode::TooManyOpen,
                        "too many shares open on this session",
                    );
                }
                if self.open.contains_key(&(si, shnum)) {
                    return error(ErrorCode::AlreadyExists, "share already being written");
                }
                match self.store.allocate(&si, shnum, size) {
                    Ok(w) => {
                        self.open.insert((si, shnum), w);
                        Reply::Ok
                    }
                    Err(e) => from_store(e),
                }
            }
            Request::Write {
                si,
                shnum,
                offset,
                data,
            } => {
                let data = data.as_ref();
                if data.len() > MAX_WRITE {
                    return error(ErrorCode::BadRequest, "write too large");
                }
                let Some(w) = self.open.get_mut(&(si, shnum)) else {
                    return error(
                        ErrorCode::NotAllocated,
                        "share not allocated on this session",
                    );
                };
                match w.write_at(offset, data) {
                    Ok(()) => Reply::Ok,
                    Err(e) => from_store(e),
                }
            }
            Request::Close { si, shnum } => {
                let Some(w) = self.open.remove(&(si, shnum)) else {
                    return error(
                        ErrorCode::NotAllocated,
                        "share not allocated on this session",
                    );
                };
                match w.close() {
                    Ok(()) => Reply::Ok,
                    Err(e) => from_store(e),
                }
            }
            Request::Abort { si, shnum } => {
                self.open.remove(&(si, shnum));
                Reply::Ok
            }
            Request::List { si } => match list_shares(&self.store, &si) {
                Ok(out) => Reply::Shares(out),
                Err(e) => from_store(e),
            },
            Request::Read {
                si,
                shnum,
                offset,
                len,
            } => {
                if len > MAX_READ {
                    return error(ErrorCode::BadRequest, "read too large");
                }
                match self.store.read(&si, shnum, offset, len as u64) {
                    Ok(d) => Reply::Data(d),
                    Err(e) => from_store(e),
                }
            }
            Request::Verify { si, shnum } => match self.store.verify(&si, shnum) {
                Ok(()) => Reply::Ok,
                Err(e) => from_store(e),
            },
            Request::ReportCorrupt { si, shnum } => match self.store.report_corrupt(&si, shnum) {
                Ok(ReportVerdict::Kept) => Reply::Ok,
                Ok(ReportVerdict::Quarantined) => error(
                    ErrorCode::Corrupt,
                    "the server found the share corrupt and quarantined it",
                ),
                Err(e) => from_store(e),
            },
        }
    }

    /// Decode a request message (a write's bytes are used where they lie
    /// in `bytes`), answer it, and encode the response, in the request's
    /// protocol version and under its id.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Answer {
        let (version, id, reply) = match decode_request(bytes) {
            Ok(m) => (m.version, m.id, self.answer(m.req)),
            Err(r) => (r.version, r.id, error(r.code, r.message)),
        };
        match reply {
            Reply::Data(data) => Answer {
                head: data_header(version, id, data.len()),
                data,
            },
            reply => Answer {
                head: encode(&ResponseMsg::new(version, id, reply)),
                data: Vec::new(),
            },
        }
    }

    /// Whether `bytes` is a request answered on the session's own task
    /// (reads and writes: at most 1 MiB each, in the page cache as a rule)
    /// rather than on the blocking pool.
    pub fn is_quick(bytes: &[u8]) -> bool {
        const WRITE: u32 = 2;
        const READ: u32 = 6;
        matches!(peek_kind(bytes), Some(WRITE | READ))
    }
}

/// An encoded response: `head`, then `data` (the bytes of a read, sent as
/// they were read rather than copied into the encoding).
#[derive(Debug)]
pub struct Answer {
    /// The encoded response, or a read's header.
    pub head: Vec<u8>,
    /// A read's bytes (empty otherwise).
    pub data: Vec<u8>,
}

impl Answer {
    /// The whole encoded response in one buffer (for tests and tools).
    pub fn joined(mut self) -> Vec<u8> {
        self.head.extend_from_slice(&self.data);
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si() -> StorageIndex {
        StorageIndex([5; 16])
    }

    #[test]
    fn allocate_write_close_list_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        assert_eq!(
            s.handle(Request::Allocate {
                si: si(),
                shnum: 1,
                size: 4
            }),
            Reply::Ok
        );
        assert_eq!(
            s.handle(Request::Write {
                si: si(),
                shnum: 1,
                offset: 0,
                data: b"abcd".to_vec()
            }),
            Reply::Ok
        );
        assert_eq!(s.handle(Request::Close { si: si(), shnum: 1 }), Reply::Ok);
        assert_eq!(
            s.handle(Request::List { si: si() }),
            Reply::Shares(vec![(1, 4)])
        );
        assert_eq!(
            s.handle(Request::Read {
                si: si(),
                shnum: 1,
                offset: 1,
                len: 2
            }),
            Reply::Data(b"bc".to_vec())
        );
        assert_eq!(s.handle(Request::Verify { si: si(), shnum: 1 }), Reply::Ok);
    }

    #[test]
    fn client_cannot_write_more_than_announced_or_unallocated() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        assert!(matches!(
            s.handle(Request::Write {
                si: si(),
                shnum: 0,
                offset: 0,
                data: vec![1]
            }),
            Reply::Error {
                code: ErrorCode::NotAllocated,
                ..
            }
        ));
        s.handle(Request::Allocate {
            si: si(),
            shnum: 0,
            size: 2,
        });
        assert!(matches!(
            s.handle(Request::Write {
                si: si(),
                shnum: 0,
                offset: 0,
                data: vec![1, 2, 3]
            }),
            Reply::Error {
                code: ErrorCode::BadWrite,
                ..
            }
        ));
        assert!(matches!(
            s.handle(Request::Close { si: si(), shnum: 0 }),
            Reply::Error {
                code: ErrorCode::Incomplete,
                ..
            }
        ));
        assert!(matches!(
            s.handle(Request::Read {
                si: si(),
                shnum: 0,
                offset: 0,
                len: MAX_READ + 1
            }),
            Reply::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        for n in 0..MAX_OPEN_PER_SESSION as u16 {
            s.handle(Request::Allocate {
                si: si(),
                shnum: 100 + n,
                size: 1,
            });
        }
        assert!(matches!(
            s.handle(Request::Allocate {
                si: si(),
                shnum: 1,
                size: 1
            }),
            Reply::Error {
                code: ErrorCode::TooManyOpen,
                ..
            }
        ));
    }

    fn ok_list(id: u32) -> Vec<u8> {
        encode(&crate::protocol::RequestMsg::new(
            id,
            Request::<Vec<u8>>::List { si: si() },
        ))
    }

    /// What a server does with what it does not know, on one session: an
    /// unknown kind and a newer version are answered under their own ids
    /// (so a pipelining client matches them), and the next request is
    /// served as usual.
    #[test]
    fn unknown_kinds_and_versions_are_answered_and_the_session_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        let answer = |s: &mut ShareServer, bytes: &[u8]| -> ResponseMsg {
            crate::protocol::decode(&s.handle_bytes(bytes).joined()).unwrap()
        };
        // Kind 10 of version 1, id 21.
        let r = answer(&mut s, &[1, 21, 10, 1, 2, 3]);
        assert_eq!((r.version, r.id), (PROTOCOL_VERSION, 21));
        assert!(matches!(
            r.reply,
            Reply::Error {
                code: ErrorCode::Unsupported,
                ..
            }
        ));
        // A List in version 2, id 22: answered in the version spoken here.
        let mut v2 = encode(&crate::protocol::RequestMsg::new(
            22,
            Request::<Vec<u8>>::List { si: si() },
        ));
        v2[0] = 2;
        let r = answer(&mut s, &v2);
        assert_eq!((r.version, r.id), (PROTOCOL_VERSION, 22));
        assert!(matches!(
            r.reply,
            Reply::Error {
                code: ErrorCode::UnsupportedVersion,
                ..
            }
        ));
        // Reads and writes are the quick kinds, whatever their encoding.
        let read = encode(&crate::protocol::RequestMsg::new(
            1,
            Request::<Vec<u8>>::Read {
                si: si(),
                shnum: 0,
                offset: 0,
                len: 1,
            },
        ));
        let write = encode(&crate::protocol::RequestMsg::new(
            300,
            Request::Write {
                si: si(),
                shnum: 0,
                offset: 0,
                data: vec![1],
            },
        ));
        assert!(ShareServer::is_quick(&read) && ShareServer::is_quick(&write));
        assert!(!ShareServer::is_quick(&ok_list(24)));
        // And the same session serves the next request.
        let ok = encode(&crate::protocol::RequestMsg::new(
            23,
            Request::<Vec<u8>>::List { si: si() },
        ));
        let r = answer(&mut s, &ok);
        assert_eq!((r.id, r.reply), (23, Reply::Shares(vec![])));
    }

    /// 15.2 (server side): a reader's report of a good share changes
    /// nothing; a report of a share that really is corrupt quarantines it.
    #[test]
    fn corrupt_reports_are_checked_by_the_server() {
        use crate::chk::{Encoder, Params};
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        let p = Params {
            k: 1,
            n: 2,
            happy: 1,
        };
        let mut enc = Encoder::new([1; 32], p, 5000).unwrap();
        let size = enc.share_size();
        let blocks = enc.encode_segment(&[7u8; 5000]).unwrap();
        let (trailers, _) = enc.finish().unwrap();
        for shnum in 0..2u16 {
            let mut share = blocks[shnum as usize].clone();
            share.extend_from_slice(&trailers[shnum as usize]);
            let size = share.len() as u64;
            assert_eq!(
                s.handle(Request::Allocate {
                    si: si(),
                    shnum,
                    size
                }),
                Reply::Ok
            );
            let w = Request::Write {
                si: si(),
                shnum,
                offset: 0,
                data: share,
            };
            assert_eq!(s.handle(w), Reply::Ok);
            assert_eq!(s.handle(Request::Close { si: si(), shnum }), Reply::Ok);
        }
        let report = |shnum| Request::ReportCorrupt { si: si(), shnum };
        assert_eq!(s.handle(report(0)), Reply::Ok);
        assert_eq!(
            s.handle(Request::List { si: si() }),
            Reply::Shares(vec![(0, size), (1, size)]),
            "both shares stay"
        );
        let file = walk_one(&dir.path().join("shares"), "1").expect("share 1 on disk");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert!(matches!(
            s.handle(report(1)),
            Reply::Error {
                code: ErrorCode::Corrupt,
                ..
            }
        ));
        assert!(matches!(
            s.handle(Request::List { si: si() }),
            Reply::Shares(v) if v.len() == 1 && v[0].0 == 0
        ));
    }

    /// 19.6: no request of the protocol removes or replaces a finished
    /// share, whatever a peer sends: allocating, writing, closing or
    /// aborting it again, reporting it corrupt (it is good), hostile reads
    /// and verifies, garbage. Deleting is the server's own decision
    /// (`store::delete`).
    #[test]
    fn no_request_removes_a_good_share() {
        use crate::chk::{Encoder, Params};
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        let p = Params {
            k: 1,
            n: 1,
            happy: 1,
        };
        let mut enc = Encoder::new([2; 32], p, 3000).unwrap();
        let mut share = enc.encode_segment(&[9u8; 3000]).unwrap().remove(0);
        share.extend_from_slice(&enc.finish().unwrap().0[0]);
        let size = share.len() as u64;
        let mut owner = ShareServer::new(store.clone());
        owner.handle(Request::Allocate {
            si: si(),
            shnum: 0,
            size,
        });
        owner.handle(Request::Write {
            si: si(),
            shnum: 0,
            offset: 0,
            data: share.clone(),
        });
        assert_eq!(
            owner.handle(Request::Close { si: si(), shnum: 0 }),
            Reply::Ok
        );
        let (si, shnum) = (si(), 0);
        let hostile: Vec<Request> = vec![
            Request::Allocate { si, shnum, size },
            Request::Allocate { si, shnum, size: 1 },
            Request::Write {
                si,
                shnum,
                offset: 0,
                data: vec![0; 16],
            },
            Request::Write {
                si,
                shnum,
                offset: size,
                data: vec![0; 16],
            },
            Request::Close { si, shnum },
            Request::Abort { si, shnum },
            Request::ReportCorrupt { si, shnum },
            Request::Verify { si, shnum },
            Request::Read {
                si,
                shnum,
                offset: u64::MAX,
                len: u32::MAX,
            },
            Request::Read {
                si,
                shnum,
                offset: size - 1,
                len: 2,
            },
            Request::List { si },
            Request::Version,
        ];
        assert_eq!(hostile.len() as u32, Request::<Vec<u8>>::KINDS + 3);
        for session in 0..2 {
            // A fresh session, and the owner's own.
            let mut fresh = ShareServer::new(store.clone());
            let s = if session == 0 { &mut fresh } else { &mut owner };
            for r in &hostile {
                s.handle(r.clone());
                s.handle_bytes(&[0xff, 0, 1, 2]);
            }
            drop(fresh);
            assert_eq!(
                store.read(&si, shnum, 0, size).unwrap(),
                share,
                "the share changed (session {session})"
            );
        }
    }

    /// The file called `name` somewhere under `dir`.
    fn walk_one(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = walk_one(&p, name) {
                    return Some(f);
                }
            } else if p.file_name().is_some_and(|f| f == name) {
                return Some(p);
            }
        }
        None
    }

    #[test]
    fn garbage_request_gets_bad_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        let out: ResponseMsg =
            crate::protocol::decode(&s.handle_bytes(b"\xff\xff\xff").joined()).unwrap();
        assert!(matches!(
            out.reply,
            Reply::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
    }

    #[test]
    fn dropped_session_discards_unfinished_shares() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        let mut s = ShareServer::new(store.clone());
        s.handle(Request::Allocate {
            si: si(),
            shnum: 2,
            size: 4,
        });
        s.handle(Request::Write {
            si: si(),
            shnum: 2,
            offset: 0,
            data: b"ab".to_vec(),
        });
        drop(s);
        assert!(store.list(&si()).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("incoming"))
                .unwrap()
                .count(),
            0
        );
    }
}
