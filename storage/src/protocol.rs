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

/// A request to a storage server. `D` is how a write's bytes are held:
/// owned (`Vec<u8>`), borrowed from the received message (`&[u8]`, how the
/// server decodes), or only their length ([`DataLen`], how a client encodes
/// the header it sends in front of the bytes).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Request<D = Vec<u8>> {
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
        data: D,
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

/// The body of a response; `D` holds read bytes as in [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Reply<D = Vec<u8>> {
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
    Data(D),
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
pub struct RequestMsg<D = Vec<u8>> {
    /// Request id, echoed in the response.
    pub id: u32,
    /// The request.
    pub req: Request<D>,
}

/// A framed response.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ResponseMsg<D = Vec<u8>> {
    /// The request's id.
    pub id: u32,
    /// The reply.
    pub reply: Reply<D>,
}

impl<D> Reply<D> {
    /// The same reply with its data (if any) passed through `f`.
    pub fn map_data<E>(self, f: impl FnOnce(D) -> E) -> Reply<E> {
        match self {
            Reply::Version {
                protocol,
                max_write,
                available,
            } => Reply::Version {
                protocol,
                max_write,
                available,
            },
            Reply::Ok => Reply::Ok,
            Reply::Shares(v) => Reply::Shares(v),
            Reply::Data(d) => Reply::Data(f(d)),
            Reply::Error { code, message } => Reply::Error { code, message },
        }
    }
}

/// A byte string's length alone: encodes exactly as the length prefix of the
/// bytes would, so `encode(header with DataLen(n)) ++ bytes` is the encoding
/// of the message carrying the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLen(pub u64);

impl bincode::Encode for DataLen {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        e: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.0.encode(e)
    }
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

/// The header of a [`Request::Write`] of `len` bytes: send it followed by
/// the bytes themselves (see [`DataLen`]).
pub fn write_header(id: u32, si: StorageIndex, shnum: u16, offset: u64, len: usize) -> Vec<u8> {
    encode(&RequestMsg {
        id,
        req: Request::Write {
            si,
            shnum,
            offset,
            data: DataLen(len as u64),
        },
    })
}

/// The header of a [`Reply::Data`] of `len` bytes: send it followed by the
/// bytes themselves.
pub fn data_header(id: u32, len: usize) -> Vec<u8> {
    encode(&ResponseMsg {
        id,
        reply: Reply::Data(DataLen(len as u64)),
    })
}

/// Decode a protocol message whose byte strings borrow from `bytes`,
/// refusing trailing bytes.
///
/// # Errors
/// A description of what is wrong.
pub fn decode_borrowed<'a, T: bincode::BorrowDecode<'a, ()>>(bytes: &'a [u8]) -> Result<T, String> {
    let (m, used) = bincode::borrow_decode_from_slice(bytes, cfg()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(m)
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
        fn prop_headers_then_bytes_encode_like_the_owned_messages(
            id in any::<u32>(), shnum in any::<u16>(), offset in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let si = StorageIndex([5; 16]);
            let owned = encode(&RequestMsg { id, req: Request::Write { si, shnum, offset, data: data.clone() } });
            let mut joined = write_header(id, si, shnum, offset, data.len());
            joined.extend_from_slice(&data);
            prop_assert_eq!(&joined, &owned);
            // And the server's borrowed decoding sees the same request.
            let borrowed: RequestMsg<&[u8]> = decode_borrowed(&joined).unwrap();
            prop_assert_eq!(borrowed.req, Request::Write { si, shnum, offset, data: &data[..] });
            let owned = encode(&ResponseMsg { id, reply: Reply::Data(data.clone()) });
            let mut joined = data_header(id, data.len());
            joined.extend_from_slice(&data);
            prop_assert_eq!(&joined, &owned);
            let borrowed: ResponseMsg<&[u8]> = decode_borrowed(&joined).unwrap();
            prop_assert_eq!(borrowed.reply, Reply::Data(&data[..]));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode::<RequestMsg>(&bytes);
            let _ = decode::<ResponseMsg>(&bytes);
            let _ = decode_borrowed::<RequestMsg<&[u8]>>(&bytes);
            let _ = decode_borrowed::<ResponseMsg<&[u8]>>(&bytes);
        }
    }
}
