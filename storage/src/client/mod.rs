//! The storage client: upload, download and check over sessions, one job
//! per module.
//!
//! * `conn`: [`Conn`], one session to one server carrying pipelined
//!   requests ([`MAX_IN_FLIGHT`] outstanding), each with a deadline.
//! * `round_trip`: the round trip a connection's pipeline depth follows
//!   (the shortest of a sliding window, of requests sent alone).
//! * `pool`: [`SessionPool`], sessions opened on demand, reused, capped,
//!   closed when idle.
//! * `place`: the permuted list ([`permuted_servers`], the one order of
//!   servers for a storage index that membership computes too) and share
//!   placement (servers-of-happiness).
//! * `upload`: [`upload`], encoding and writing shares, one task per server.
//! * `locate`: [`locate`], who holds which shares, asking few servers.
//! * `datagram`: a pool's socket for listings in datagrams, its queries
//!   out and what it learned of servers' answers
//! * `listing`: asking one server for a listing without a session
//!   (what a check asks of servers the pool holds no session to).
//! * `download`: [`download`], reading, verifying and decoding `k` shares.
//! * `decoding`: a download's segments decoded as tasks, side by side,
//!   and taken back in order.
//! * `receive`: a download's receiver for one share, draining its session
//!   into the download's queue, a bounded number of blocks ahead.
//! * `range`: [`download_range`], only the segments a byte range needs.
//! * `check`: [`check`], which shares exist and (with `verify`) are intact.
//! * `health`: [`CheckResults`], the check report in Tahoe's keys, one
//!   schema for the CLI, the gateway and repair.
//! * `report`: [`report_corrupt`], telling a server one of its shares is
//!   corrupt (the server checks it itself before quarantining it).
//! * `verified`: shares opened against a verify capability (no key), for
//!   `check` and `repair`.
//! * `repair`: [`repair`], regenerating missing and corrupt shares onto the
//!   next servers in permuted order, reported in Tahoe's keys
//!   ([`RepairResults`]). When to repair is the sans-IO planner's
//!   business ([`crate::repair`]).
//!
//! Servers are given as [`ServerRef`]s (node id and address, from
//! membership); the client orders them by the permuted list for the file's
//! storage index, so uploader and downloader agree on where to look, and
//! talks only to as many of them as it needs. Dependencies run one way:
//! `upload`, `download` and `check` on `place`/`locate`, those on `pool`,
//! `pool` on `conn`.

mod check;
mod conn;
mod datagram;
mod decoding;
mod download;
mod download_report;
mod health;
mod listing;
mod locate;
mod park;
mod place;
mod pool;
mod range;
mod receive;
mod receivers;
mod repair;
mod report;
mod round_trip;
mod upload;
mod verified;

pub use crate::error::ClientError;
pub use crate::types::ReportVerdict;
pub use check::{check, check_depth, check_enough, check_verify_cap, Depth};
pub use conn::{
    pipeline_depth, ClientIdentity, Conn, ServerRef, DEFAULT_REQUEST_TIMEOUT, MAX_IN_FLIGHT,
    SHORT_LINK_DEPTH,
};
pub use download::{download, DownloadReport, DownloadWaits, READ_AHEAD};
pub use health::{CheckCounts, CheckResults, CorruptReport, Found, Verdict};
pub use locate::{locate, Findings, Located};
pub use place::permuted_servers;
pub use pool::{Contact, ListingTimesSnapshot, PoolConfig, SessionPool};
pub use range::download_range;
pub use repair::{repair, RepairOptions, RepairReport, RepairResults};
pub use report::report_corrupt;
pub use round_trip::ROUND_TRIP_WINDOW;
pub use upload::{
    default_params, read_all, upload, KeyMode, UploadReport, UploadRequest, UploadWaits,
};
