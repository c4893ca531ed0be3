//! The data path's memory budget: what a put, a get and a share server may
//! hold at once, as one figure.
//!
//! A small board runs the node and the `grapevine` CLI in a few MiB, so
//! every buffer that grows with the work in hand is bounded by a
//! [`MemoryBudget`], and the pipeline waits (slows down) rather than grows
//! past it. The figure is turned into counts of the things that hold
//! memory, each at least one so a tiny budget still works:
//!
//! * **Upload segments** ([`MemoryBudget::upload_segments`]): an upload
//!   holds each segment from the moment it is read until every server's
//!   writer has sent its blocks: the plaintext buffer (one segment) and its
//!   `n` blocks (`n/k` segments). The encoder's Reed-Solomon work area
//!   ([`MemoryBudget::encoder_work`], a 64 KiB slice of each block at a
//!   time) is held for the whole upload and taken off the budget first.
//! * **Read-ahead** ([`MemoryBudget::read_ahead`]): a download asks for the
//!   blocks of this many segments before it decodes the first of them; each
//!   costs its `k` blocks (a segment) on arrival and its plaintext (another)
//!   when decoded.
//! * **Write size** ([`MemoryBudget::write_chunk`]): each writer seals its
//!   request into a buffer of its own while sending it; smaller writes
//!   under a small budget keep those buffers small.
//! * **Requests in flight per session** ([`MemoryBudget::in_flight`]):
//!   writes and reads sent and not yet answered (their bytes wait in socket
//!   buffers, which are memory too on a small board).
//! * **Requests served at once** ([`MemoryBudget::server_requests`]): a
//!   share server answers at most this many requests at a time, over all
//!   its sessions; each holds a message of up to
//!   [`MAX_MESSAGE`] and its answer (a read
//!   of up to 1 MiB). Requests beyond it wait for their turn, so their
//!   sessions stop being read and TCP holds their peers back; an answer
//!   its peer does not take within two seconds gives its turn back and
//!   waits among at most as many stalled answers (`server::driver`).
//!
//! * **The erasure coder's tables** ([`MemoryBudget::small_tables`]): below
//!   32 MiB a put, a get, a ranged read and a repair code with
//!   reed-solomon-simd's reference engine (384 KiB of tables, 512 KiB once
//!   it has restored a block) instead of its SIMD engines (a multiplication
//!   table of 8 MiB besides); the blocks are the same. The tables are
//!   built once per process and kept, so they are taken off the budget
//!   before the upload's segments ([`MemoryBudget::coder_tables`]).
//!   Measured (docs/operator.md): at the default 8 MiB the SIMD engines
//!   took a put from 6.8 to 14.9 MiB of anonymous memory and had it
//!   OOM-killed in a 16 MiB cgroup, and at 16 MiB to 24 MiB, past its
//!   budget, for no put speed the noise could show.
//!
//! The background scrub reads through one fixed 64 KiB buffer whatever the
//! budget. [`MemoryBudget::UNBOUNDED`] keeps the depths that are fastest on
//! a large machine (the library's default).

use crate::chk::{RS_SLICE, SEGMENT_SIZE};
use crate::protocol::{MAX_MESSAGE, MAX_WRITE};
use crate::types::Params;

/// Segments an unbounded upload holds at most (read ahead, encoding,
/// queued for the writers, being written).
pub const MAX_UPLOAD_SEGMENTS: usize = 8;
/// Segments an unbounded download requests ahead.
pub const MAX_READ_AHEAD: u64 = 8;
/// Budgets below this use the erasure coder's small tables
/// ([`MemoryBudget::small_tables`]).
pub const SMALL_TABLES_BELOW: u64 = 32 << 20;
/// Bytes of reed-solomon-simd's tables with its SIMD engines: the 8 MiB
/// multiplication table (65,536 entries of 128 bytes), and the exponent,
/// logarithm and skew tables it is built from (384 KiB).
pub const FAST_TABLES: u64 = (8 << 20) + (384 << 10);
/// Bytes of its reference engine's tables: exponent, logarithm and skew,
/// and the Walsh transform of the logarithms once it has restored a block.
pub const SMALL_TABLES: u64 = 512 << 10;
/// Requests a session keeps outstanding at most.
pub const MAX_IN_FLIGHT: usize = 8;

/// How much memory the data path may use (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryBudget {
    /// No bound: the depths fastest on a large machine.
    #[default]
    Unbounded,
    /// At most this many bytes of buffers.
    Bytes(u64),
}

impl MemoryBudget {
    /// No bound.
    pub const UNBOUNDED: MemoryBudget = MemoryBudget::Unbounded;

    /// A budget of `mib` MiB.
    pub fn mib(mib: u64) -> MemoryBudget {
        MemoryBudget::Bytes(mib.saturating_mul(1 << 20))
    }

    /// The budget in bytes (`None`: unbounded).
    pub fn bytes(self) -> Option<u64> {
        match self {
            MemoryBudget::Unbounded => None,
            MemoryBudget::Bytes(b) => Some(b),
        }
    }

    /// Bytes one full segment's blocks take with `params` (`n` blocks of a
    /// `k`th of a segment each, rounded up to even).
    pub fn segment_blocks(params: Params) -> u64 {
        let k = u64::from(params.k.max(1));
        let b = SEGMENT_SIZE.div_ceil(k);
        (b + (b & 1)).saturating_mul(u64::from(params.n))
    }

    /// Bytes the encoder's Reed-Solomon work area takes with `params`: it
    /// codes a slice of each block at a time (64 KiB), in
    /// reed-solomon-simd's work area of as many slices as the recovery
    /// count rounded up to a multiple of the original count's next power
    /// of two, or the other way round, whichever rate it picks (bounded
    /// here by the larger).
    pub fn encoder_work(params: Params) -> u64 {
        let (k, m) = (
            u64::from(params.k.max(1)),
            u64::from(params.n.saturating_sub(params.k)),
        );
        if m == 0 {
            return 0;
        }
        let low = m.next_multiple_of(k.next_power_of_two());
        let high = k.next_multiple_of(m.next_power_of_two());
        let b = SEGMENT_SIZE.div_ceil(k);
        low.max(high)
            .saturating_mul((b + (b & 1)).min(RS_SLICE as u64))
    }

    /// Segments an upload with `params` holds at once: read, encoding,
    /// queued and being written (at least 1, at most
    /// [`MAX_UPLOAD_SEGMENTS`]).
    pub fn upload_segments(self, params: Params) -> usize {
        let Some(b) = self.bytes() else {
            return MAX_UPLOAD_SEGMENTS;
        };
        let per = SEGMENT_SIZE + Self::segment_blocks(params);
        let room = b
            .saturating_sub(Self::encoder_work(params))
            .saturating_sub(self.coder_tables());
        usize::try_from(room / per.max(1))
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_UPLOAD_SEGMENTS)
    }

    /// Segments a download requests ahead of the one it decodes (at least
    /// 1, at most [`MAX_READ_AHEAD`]): each costs its blocks and its
    /// plaintext, two segments. For this client's segments
    /// ([`SEGMENT_SIZE`]); a file's own size is
    /// [`MemoryBudget::read_ahead_for`]'s.
    pub fn read_ahead(self) -> u64 {
        self.read_ahead_for(SEGMENT_SIZE)
    }

    /// [`MemoryBudget::read_ahead`] for a file whose segments are
    /// `segment_size` bytes: the UEB's, which another uploader may have
    /// made up to 16 MiB, so a small budget reads fewer of them ahead.
    pub fn read_ahead_for(self, segment_size: u64) -> u64 {
        match self.bytes() {
            None => MAX_READ_AHEAD,
            Some(b) => (b / (2 * segment_size.max(1))).clamp(1, MAX_READ_AHEAD),
        }
    }

    /// Requests a session keeps outstanding (at least 2, so a server is
    /// not idle between two of them; at most [`MAX_IN_FLIGHT`]): one per
    /// 2 MiB of budget.
    pub fn in_flight(self) -> usize {
        match self.bytes() {
            None => MAX_IN_FLIGHT,
            Some(b) => usize::try_from(b / (2 * MAX_WRITE as u64))
                .unwrap_or(usize::MAX)
                .clamp(2, MAX_IN_FLIGHT),
        }
    }

    /// Largest write request an upload sends (each is sealed into a buffer
    /// of its own while it is sent, one per server at a time): a 64th of
    /// the budget, between 64 KiB and [`MAX_WRITE`].
    pub fn write_chunk(self) -> usize {
        match self.bytes() {
            None => MAX_WRITE,
            Some(b) => usize::try_from(b / 64)
                .unwrap_or(usize::MAX)
                .clamp(64 << 10, MAX_WRITE),
        }
    }

    /// Whether the erasure coder should use its reference engine, whose
    /// tables take 384 KiB, rather than the fast ones, whose tables take
    /// 8 MiB (built once per process that encodes or repairs): below
    /// [`SMALL_TABLES_BELOW`].
    pub fn small_tables(self) -> bool {
        self.bytes().is_some_and(|b| b < SMALL_TABLES_BELOW)
    }

    /// Bytes of the erasure coder's tables under this budget
    /// ([`FAST_TABLES`] or [`SMALL_TABLES`], as [`MemoryBudget::small_tables`]
    /// says): built once per process and kept.
    pub fn coder_tables(self) -> u64 {
        if self.small_tables() {
            SMALL_TABLES
        } else {
            FAST_TABLES
        }
    }

    /// Requests a share server answers at once over all its sessions (at
    /// least 1): each holds a message and its answer, up to
    /// [`MAX_MESSAGE`] each.
    pub fn server_requests(self) -> usize {
        match self.bytes() {
            None => usize::MAX,
            Some(b) => usize::try_from(b / (2 * MAX_MESSAGE as u64))
                .unwrap_or(usize::MAX)
                .max(1),
        }
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryBudget::Unbounded => write!(f, "unbounded"),
            MemoryBudget::Bytes(b) => write!(f, "{:.1} MiB", *b as f64 / f64::from(1 << 20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: u16, n: u16) -> Params {
        Params { k, n, happy: n }
    }

    #[test]
    fn small_budgets_mean_shallow_pipelines_and_never_zero() {
        let d = p(3, 10);
        // 3-of-10: blocks 3.33 MiB a segment, plaintext 1 MiB, RS work 8
        // slices of 64 KiB.
        assert_eq!(MemoryBudget::segment_blocks(d), 10 * 349_526);
        assert_eq!(MemoryBudget::encoder_work(d), 8 * 65_536);
        // The coder's tables come off the budget first: 8.4 MiB with the
        // SIMD engines from 32 MiB on (five segments there, not seven),
        // 512 KiB below.
        assert_eq!(MemoryBudget::mib(16).coder_tables(), 512 << 10);
        assert_eq!(
            MemoryBudget::mib(32).coder_tables(),
            (8 << 20) + (384 << 10)
        );
        for (mib, segs) in [
            (0, 1),
            (4, 1),
            (8, 1),
            (12, 2),
            (16, 3),
            (32, 5),
            (48, 8),
            (1024, 8),
        ] {
            assert_eq!(MemoryBudget::mib(mib).upload_segments(d), segs, "{mib} MiB");
        }
        assert_eq!(MemoryBudget::UNBOUNDED.upload_segments(d), 8);
        assert_eq!(MemoryBudget::mib(0).read_ahead(), 1);
        assert_eq!(MemoryBudget::mib(4).read_ahead(), 2);
        assert_eq!(MemoryBudget::mib(8).read_ahead(), 4);
        assert_eq!(MemoryBudget::mib(64).read_ahead(), 8);
        assert_eq!(MemoryBudget::UNBOUNDED.read_ahead(), 8);
        // A file of larger segments is read fewer segments ahead.
        assert_eq!(MemoryBudget::mib(16).read_ahead_for(1 << 20), 8);
        assert_eq!(MemoryBudget::mib(16).read_ahead_for(4 << 20), 2);
        assert_eq!(MemoryBudget::mib(16).read_ahead_for(16 << 20), 1);
        assert_eq!(MemoryBudget::UNBOUNDED.read_ahead_for(16 << 20), 8);
        assert_eq!(MemoryBudget::mib(0).in_flight(), 2);
        assert_eq!(MemoryBudget::mib(8).in_flight(), 4);
        assert_eq!(MemoryBudget::UNBOUNDED.in_flight(), 8);
        assert!(MemoryBudget::mib(16).small_tables());
        assert!(!MemoryBudget::mib(32).small_tables());
        assert!(!MemoryBudget::UNBOUNDED.small_tables());
        assert_eq!(MemoryBudget::mib(8).write_chunk(), 128 << 10);
        assert_eq!(MemoryBudget::mib(0).write_chunk(), 64 << 10);
        assert_eq!(MemoryBudget::UNBOUNDED.write_chunk(), MAX_WRITE);
        assert_eq!(MemoryBudget::mib(0).server_requests(), 1);
        assert_eq!(MemoryBudget::mib(8).server_requests(), 3);
        assert_eq!(MemoryBudget::mib(u64::MAX).bytes(), Some(u64::MAX));
        // No parity: no work area; one share: the segment itself.
        assert_eq!(MemoryBudget::encoder_work(p(1, 1)), 0);
        assert_eq!(MemoryBudget::segment_blocks(p(1, 1)), SEGMENT_SIZE);
    }
}
