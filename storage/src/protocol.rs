//! The storage protocol: requests and responses carried as session
//! messages, each with a request id so one session can carry many.
//!
//! Every message starts with the protocol version it is written in (one
//! byte, [`PROTOCOL_VERSION`]), then the request id (a varint) and the
//! request or reply kind (a varint), then the kind's fields, in `bincode` 2
//! standard encoding. [`decode_request`] reads the header first, so a
//! request the server cannot serve is still answered under its own id and
//! the session goes on:
//!
//! * a newer version: [`ErrorCode::UnsupportedVersion`], in a reply whose
//!   header carries the version the server speaks;
//! * an unknown kind: [`ErrorCode::Unsupported`];
//! * a known kind that does not decode, has trailing bytes (a kind's
//!   fields never change; new fields make a new kind) or breaks a limit
//!   (a write carries at most [`MAX_WRITE`] bytes, a read returns at most
//!   [`MAX_READ`]): [`ErrorCode::BadRequest`].
//!
//! A message whose header does not decode is answered with `BadRequest`
//! under id 0, which no client uses: the client drops the session. A
//! client that receives an error code it does not know reads it as
//! [`ErrorCode::Unknown`] (a failed request, nothing more); a reply kind it
//! does not know, or a reply in a newer version than it asked in, is a
//! protocol error and it drops the session (a server answers in the
//! request's version, so only a broken server sends either).

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use crate::types::StorageIndex;

/// The protocol version this release writes and reads (and every older one
/// down to [`MIN_PROTOCOL_VERSION`]).
pub const PROTOCOL_VERSION: u8 = 1;
/// The oldest protocol version this release still speaks.
pub const MIN_PROTOCOL_VERSION: u8 = 1;
/// Largest write payload.
pub const MAX_WRITE: usize = 1 << 20;
/// Largest read.
pub const MAX_READ: u32 = 1 << 20;
/// Largest message of the protocol, either way: a write or a read's reply
/// with its header. Storage sessions accept nothing larger, so a peer
/// costs at most this much memory per message it sends.
pub const MAX_MESSAGE: usize = MAX_WRITE + 4096;
const DECODE_LIMIT: usize = MAX_MESSAGE;

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
    /// A reader found this share corrupt. The server checks it itself (its
    /// checksum and its own hash tree) and quarantines it only if it fails:
    /// `Ok` if the share stays, `Corrupt` if it was quarantined.
    ReportCorrupt {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: u16,
    },
}

impl<D> Request<D> {
    /// Number of request kinds this release knows: kinds are numbered from
    /// 0 in the order above, and a new kind is only ever added at the end.
    pub const KINDS: u32 = 9;

    /// This request's kind: its number on the wire.
    pub fn kind(&self) -> u32 {
        match self {
            Request::Version => 0,
            Request::Allocate { .. } => 1,
            Request::Write { .. } => 2,
            Request::Close { .. } => 3,
            Request::Abort { .. } => 4,
            Request::List { .. } => 5,
            Request::Read { .. } => 6,
            Request::Verify { .. } => 7,
            Request::ReportCorrupt { .. } => 8,
        }
    }
}

/// Why a request failed. Encoded as a varint with the number given to each
/// code below; a number this release does not know decodes as
/// [`ErrorCode::Unknown`], so a newer server's new codes fail requests
/// cleanly instead of failing the decode of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The request's kind is unknown to this server (11).
    Unsupported,
    /// The request's protocol version is newer than this server speaks; the
    /// reply's header carries the version it does (12).
    UnsupportedVersion,
    /// A code this release does not know (sent by a newer peer).
    Unknown(u32),
}

/// The wire numbers of the error codes, in order; never renumbered.
const ERROR_CODES: [ErrorCode; 13] = [
    ErrorCode::NoSpace,
    ErrorCode::AlreadyExists,
    ErrorCode::NotFound,
    ErrorCode::OutOfRange,
    ErrorCode::BadWrite,
    ErrorCode::Incomplete,
    ErrorCode::Corrupt,
    ErrorCode::BadRequest,
    ErrorCode::NotAllocated,
    ErrorCode::TooManyOpen,
    ErrorCode::Io,
    ErrorCode::Unsupported,
    ErrorCode::UnsupportedVersion,
];

impl ErrorCode {
    /// The code's number on the wire.
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::Unknown(n) => n,
            known => ERROR_CODES
                .iter()
                .position(|c| *c == known)
                .expect("every known code is numbered") as u32,
        }
    }

    /// The code with wire number `n`.
    pub fn from_number(n: u32) -> Self {
        ERROR_CODES
            .get(n as usize)
            .copied()
            .unwrap_or(ErrorCode::Unknown(n))
    }
}

impl bincode::Encode for ErrorCode {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        e: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.number().encode(e)
    }
}

impl<C> bincode::Decode<C> for ErrorCode {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(ErrorCode::from_number(<u32 as bincode::Decode<C>>::decode(
            d,
        )?))
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for ErrorCode {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(ErrorCode::from_number(<u32 as bincode::Decode<C>>::decode(
            d,
        )?))
    }
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

/// A framed request with its version and id.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RequestMsg<D = Vec<u8>> {
    /// The protocol version it is written in.
    pub version: u8,
    /// Request id, echoed in the response.
    pub id: u32,
    /// The request.
    pub req: Request<D>,
}

impl<D> RequestMsg<D> {
    /// `req` under `id`, in this release's protocol version.
    pub fn new(id: u32, req: Request<D>) -> Self {
        RequestMsg {
            version: PROTOCOL_VERSION,
            id,
            req,
        }
    }
}

/// A framed response.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ResponseMsg<D = Vec<u8>> {
    /// The protocol version it is written in: the request's.
    pub version: u8,
    /// The request's id.
    pub id: u32,
    /// The reply.
    pub reply: Reply<D>,
}

impl<D> ResponseMsg<D> {
    /// `reply` under `id`, in protocol version `version`.
    pub fn new(version: u8, id: u32, reply: Reply<D>) -> Self {
        ResponseMsg { version, id, reply }
    }
}

/// A request the server will not serve, with what to answer: the request's
/// id (0 if not even the header decodes), the version to answer in, and
/// the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The version to answer in.
    pub version: u8,
    /// The request's id.
    pub id: u32,
    /// Why.
    pub code: ErrorCode,
    /// Detail for the client's log.
    pub message: String,
}

/// A message's header: its version, its id, and where its kind begins.
fn header(bytes: &[u8]) -> Option<(u8, u32, usize)> {
    let ((version, id), used) = bincode::decode_from_slice::<(u8, u32), _>(bytes, cfg()).ok()?;
    Some((version, id, used))
}

/// The version and id of the message in `bytes`, if its header decodes.
pub fn peek_header(bytes: &[u8]) -> Option<(u8, u32)> {
    header(bytes).map(|(v, id, _)| (v, id))
}

/// The kind of the request in `bytes`, read from its header alone (no
/// check of the version or the fields).
pub fn peek_kind(bytes: &[u8]) -> Option<u32> {
    let (_, _, used) = header(bytes)?;
    let (kind, _) = bincode::decode_from_slice::<u32, _>(bytes.get(used..)?, cfg()).ok()?;
    Some(kind)
}

/// Decode a request, its write bytes borrowed from `bytes`: the header
/// first, then the kind, then the fields (see the module docs for what is
/// refused and how).
///
/// # Errors
/// A [`Refused`] saying what to answer.
pub fn decode_request(bytes: &[u8]) -> Result<RequestMsg<&[u8]>, Refused> {
    let refuse = |version, id, code, message: String| Refused {
        version,
        id,
        code,
        message,
    };
    let Some((version, id, used)) = header(bytes) else {
        return Err(refuse(
            PROTOCOL_VERSION,
            0,
            ErrorCode::BadRequest,
            "no message header".into(),
        ));
    };
    if version > PROTOCOL_VERSION || version < MIN_PROTOCOL_VERSION {
        return Err(refuse(
            PROTOCOL_VERSION,
            id,
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version}; this server speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
            ),
        ));
    }
    let kind = bincode::decode_from_slice::<u32, _>(&bytes[used..], cfg()).map(|k| k.0);
    match kind {
        Ok(k) if k >= Request::<()>::KINDS => {
            return Err(refuse(
                version,
                id,
                ErrorCode::Unsupported,
                format!("request kind {k} unknown to this server"),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(refuse(version, id, ErrorCode::BadRequest, e.to_string())),
    }
    decode_borrowed(bytes).map_err(|e| refuse(version, id, ErrorCode::BadRequest, e))
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
    encode(&RequestMsg::new(
        id,
        Request::Write {
            si,
            shnum,
            offset,
            data: DataLen(len as u64),
        },
    ))
}

/// The most bytes [`data_header`] takes (a version byte, the id, the
/// reply's kind and the length, as varints): a read's answer is its data
/// plus at most this.
pub const DATA_HEADER_MAX: usize = 24;

/// The header of a [`Reply::Data`] of `len` bytes in protocol `version`:
/// send it followed by the bytes themselves.
pub fn data_header(version: u8, id: u32, len: usize) -> Vec<u8> {
    encode(&ResponseMsg::new(
        version,
        id,
        Reply::Data(DataLen(len as u64)),
    ))
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

    fn si() -> StorageIndex {
        StorageIndex([1; 16])
    }

    /// One request of every kind.
    fn every_kind() -> Vec<Request> {
        vec![
            Request::Version,
            Request::Allocate {
                si: si(),
                shnum: 1,
                size: 2,
            },
            Request::Write {
                si: si(),
                shnum: 1,
                offset: 0,
                data: vec![1],
            },
            Request::Close { si: si(), shnum: 1 },
            Request::Abort { si: si(), shnum: 1 },
            Request::List { si: si() },
            Request::Read {
                si: si(),
                shnum: 1,
                offset: 0,
                len: 1,
            },
            Request::Verify { si: si(), shnum: 1 },
            Request::ReportCorrupt { si: si(), shnum: 1 },
        ]
    }

    #[test]
    fn round_trip() {
        let m = RequestMsg::new(
            7,
            Request::Write {
                si: si(),
                shnum: 3,
                offset: 9,
                data: vec![1, 2, 3],
            },
        );
        assert_eq!(decode::<RequestMsg>(&encode(&m)).unwrap(), m);
        let r = ResponseMsg::new(PROTOCOL_VERSION, 7, Reply::Shares(vec![(1, 100)]));
        assert_eq!(decode::<ResponseMsg>(&encode(&r)).unwrap(), r);
        let mut b = encode(&r);
        b.push(0);
        assert!(decode::<ResponseMsg>(&b).is_err());
    }

    /// The header is what the module docs say: version byte, id, kind, and
    /// every kind is numbered as `Request::kind` says, below `KINDS`.
    #[test]
    fn every_message_starts_with_version_id_and_kind() {
        let kinds = every_kind();
        assert_eq!(kinds.len() as u32, Request::<Vec<u8>>::KINDS);
        for (i, req) in kinds.into_iter().enumerate() {
            assert_eq!(req.kind(), i as u32);
            let bytes = encode(&RequestMsg::new(300, req));
            // 1 = version; 300 = varint 251 (u16 follows) 0x2c 0x01; kind.
            assert_eq!(bytes[..5], [PROTOCOL_VERSION, 251, 0x2c, 0x01, i as u8]);
            assert_eq!(peek_kind(&bytes), Some(i as u32));
            let back = decode_request(&bytes).unwrap();
            assert_eq!((back.version, back.id), (PROTOCOL_VERSION, 300));
        }
        let reply = encode(&ResponseMsg::new(PROTOCOL_VERSION, 5, Reply::<Vec<u8>>::Ok));
        assert_eq!(reply, [PROTOCOL_VERSION, 5, 1]);
    }

    /// The compatibility rules for requests: a newer version, an unknown
    /// kind or an extra field are each answered under the request's own id.
    #[test]
    fn newer_versions_unknown_kinds_and_extra_fields_are_refused_by_id() {
        let refused = |bytes: &[u8]| decode_request(bytes).unwrap_err();
        // Version 2 of a Version request, id 9.
        let r = refused(&[2, 9, 0]);
        assert_eq!(
            (r.version, r.id, r.code),
            (PROTOCOL_VERSION, 9, ErrorCode::UnsupportedVersion)
        );
        // Version 0 never existed.
        assert_eq!(refused(&[0, 9, 0]).code, ErrorCode::UnsupportedVersion);
        // Kind 9 (unknown here), with fields we cannot read.
        let r = refused(&[1, 10, 9, 0xde, 0xad]);
        assert_eq!((r.id, r.code), (10, ErrorCode::Unsupported));
        let r = refused(&[1, 10, 251, 0x00, 0x01]);
        assert_eq!((r.id, r.code), (10, ErrorCode::Unsupported));
        // A known kind with a field appended.
        let mut b = encode(&RequestMsg::new(11, Request::<Vec<u8>>::List { si: si() }));
        b.push(0);
        let r = refused(&b);
        assert_eq!((r.id, r.code), (11, ErrorCode::BadRequest));
        // A known kind cut short.
        let r = refused(&b[..b.len() - 5]);
        assert_eq!((r.id, r.code), (11, ErrorCode::BadRequest));
        // No header at all.
        let r = refused(&[]);
        assert_eq!((r.id, r.code), (0, ErrorCode::BadRequest));
    }

    /// Error codes keep their numbers, and a code from a newer peer decodes
    /// as `Unknown` instead of failing the reply.
    #[test]
    fn error_codes_are_numbered_and_unknown_ones_decode() {
        for (n, code) in ERROR_CODES.iter().enumerate() {
            assert_eq!(code.number(), n as u32);
            assert_eq!(ErrorCode::from_number(n as u32), *code);
        }
        assert_eq!(ErrorCode::NoSpace.number(), 0);
        assert_eq!(ErrorCode::Io.number(), 10);
        let newer = encode(&ResponseMsg::new(
            PROTOCOL_VERSION,
            4,
            Reply::<Vec<u8>>::Error {
                code: ErrorCode::Unknown(40),
                message: "from the future".into(),
            },
        ));
        let back: ResponseMsg = decode(&newer).unwrap();
        assert!(matches!(
            back.reply,
            Reply::Error {
                code: ErrorCode::Unknown(40),
                ..
            }
        ));
    }

    /// A read's answer is never more than its data and
    /// [`DATA_HEADER_MAX`] bytes (what a client sizes its receive buffer
    /// by), whatever the version, id and length.
    #[test]
    fn data_headers_fit_their_bound() {
        for version in [0, PROTOCOL_VERSION, u8::MAX] {
            for id in [0, 1 << 20, u32::MAX] {
                for len in [0, MAX_READ as usize, usize::MAX] {
                    let h = data_header(version, id, len);
                    assert!(h.len() <= DATA_HEADER_MAX, "{} bytes", h.len());
                }
            }
        }
    }

    proptest! {
        #[test]
        fn prop_headers_then_bytes_encode_like_the_owned_messages(
            id in any::<u32>(), shnum in any::<u16>(), offset in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let si = StorageIndex([5; 16]);
            let owned = encode(&RequestMsg::new(id, Request::Write { si, shnum, offset, data: data.clone() }));
            let mut joined = write_header(id, si, shnum, offset, data.len());
            joined.extend_from_slice(&data);
            prop_assert_eq!(&joined, &owned);
            // And the server's borrowed decoding sees the same request.
            let borrowed: RequestMsg<&[u8]> = decode_borrowed(&joined).unwrap();
            prop_assert_eq!(borrowed.req, Request::Write { si, shnum, offset, data: &data[..] });
            let owned = encode(&ResponseMsg::new(PROTOCOL_VERSION, id, Reply::Data(data.clone())));
            let mut joined = data_header(PROTOCOL_VERSION, id, data.len());
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
            let _ = decode_request(&bytes);
        }
    }
}
