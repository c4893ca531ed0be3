//! The storage protocol: requests and responses carried as session
//! messages, each with a request id so one session can carry many.
//!
//! Limits: a write carries at most [`MAX_WRITE`] bytes and a read returns at
//! most [`MAX_READ`]; a message that does not decode, or decodes with
//! trailing bytes, is answered with [`ErrorCode::BadRequest`].

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use crate::store::StorageIndex;

/// Protocol version.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest write payload.
pub const MAX_WRITE: usize = 1 << 20;
/// Largest read.
pub const MAX_READ: u32 = 1 << 20;
const DECODE_LIMIT: usize = MAX_WRITE + 4096;

type Cfg = Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>>;
fn cfg() -> Cfg {
    config::standard().with_limit::<DECODE_LIMIT>()
}

/// A request to a storage server.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Request {
    /// Ask for the server's version, limits and free space.
    Version,
    /// Reserve space for a share of `size` bytes.
    Allocate {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
        /// Announced size.
        size: u64,
    },
    /// Write bytes of an allocated share, in order.
    Write {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
        /// Offset.
        offset: u64,
        /// Bytes (at most [`MAX_WRITE`]).
        data: Vec<u8>,
    },
    /// Finish a share: make it durable and visible.
    Close {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
    },
    /// Abandon an allocated share.
    Abort {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
    },
    /// Shares of a storage index held here, with their sizes.
    List {
        /// Storage index.
        si: StorageIndex,
    },
    /// Read a range of a share.
    Read {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
        /// Offset.
        offset: u64,
        /// Length (at most [`MAX_READ`]).
        len: u32,
    },
    /// Check a whole share against its stored hash.
    Verify {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum ErrorCode {
    /// Not enough space above the reserve.
    NoSpace,
    /// The share already exists.
    AlreadyExists,
    /// No such share.
    NotFound,
    /// Read past the end.
    OutOfRange,
    /// Write past the announced size, or not in order.
    BadWrite,
    /// Closed before all announced bytes were written.
    Incomplete,
    /// The share failed its hash check.
    Corrupt,
    /// Malformed or over-limit request.
    BadRequest,
    /// The share was not allocated on this session.
    NotAllocated,
    /// Too many shares open on this session.
    TooManyOpen,
    /// Disk or filesystem failure.
    Io,
}

/// The body of a response.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Reply {
    /// Answer to [`Request::Version`].
    Version {
        /// Protocol version.
        protocol: u32,
        /// Largest write.
        max_write: u32,
        /// Bytes available for new shares.
        available: u64,
    },
    /// Done.
    Ok,
    /// Shares held: (share number, size).
    Shares(Vec<(u16, u64)>),
    /// Bytes read.
    Data(Vec<u8>),
    /// Failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// A framed request with its id.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RequestMsg {
    /// Request id, echoed in the response.
    pub id: u32,
    /// The request.
    pub req: Request,
}

/// A framed response.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ResponseMsg {
    /// The request's id.
    pub id: u32,
    /// The reply.
    pub reply: Reply,
}

/// Encode any protocol message.
pub fn encode<T: bincode::Encode>(m: &T) -> Vec<u8> {
    bincode::encode_to_vec(m, config::standard()).expect("protocol messages encode")
}

/// Decode a protocol message, refusing trailing bytes.
///
/// # Errors
/// A description of what is wrong.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (m, used) = bincode::decode_from_slice(bytes, cfg()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(m)
}

/// Encode a [`Request::Write`] message without copying `data` into an
/// owned request first (the upload's hot path). The bytes are exactly those
/// of `encode(&RequestMsg { id, req: Request::Write { .. } })`.
pub fn encode_write(id: u32, si: StorageIndex, shnum: u16, offset: u64, data: &[u8]) -> Vec<u8> {
    /// Mirrors [`Request`] up to and including `Write`, so the variant
    /// index and field order agree; a test holds them equal.
    #[derive(bincode::Encode)]
    #[allow(dead_code)]
    enum RequestRef<'a> {
        Version,
        Allocate {
            si: StorageIndex,
            shnum: u16,
            size: u64,
        },
        Write {
            si: StorageIndex,
            shnum: u16,
            offset: u64,
            data: &'a [u8],
        },
    }
    #[derive(bincode::Encode)]
    struct Msg<'a> {
        id: u32,
        req: RequestRef<'a>,
    }
    let mut out = Vec::with_capacity(data.len() + 48);
    bincode::encode_into_std_write(
        Msg {
            id,
            req: RequestRef::Write {
                si,
                shnum,
                offset,
                data,
            },
        },
        &mut out,
        config::standard(),
    )
    .expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let m = RequestMsg {
            id: 7,
            req: Request::Write {
                si: StorageIndex([1; 16]),
                shnum: 3,
                offset: 9,
                data: vec![1, 2, 3],
            },
        };
        assert_eq!(decode::<RequestMsg>(&encode(&m)).unwrap(), m);
        let r = ResponseMsg {
            id: 7,
            reply: Reply::Shares(vec![(1, 100)]),
        };
        assert_eq!(decode::<ResponseMsg>(&encode(&r)).unwrap(), r);
        let mut b = encode(&r);
        b.push(0);
        assert!(decode::<ResponseMsg>(&b).is_err());
    }

    proptest! {
        #[test]
        fn prop_borrowed_write_encodes_like_the_owned_request(
            id in any::<u32>(), shnum in any::<u16>(), offset in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let si = StorageIndex([5; 16]);
            let owned = encode(&RequestMsg { id, req: Request::Write { si, shnum, offset, data: data.clone() } });
            prop_assert_eq!(encode_write(id, si, shnum, offset, &data), owned);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode::<RequestMsg>(&bytes);
            let _ = decode::<ResponseMsg>(&bytes);
        }
    }
}
