//! The node's metrics, through `prometheus-client`.
//!
//! A node keeps its figures where they are made (membership counters,
//! storage server counters, the share store), so the metrics are a
//! [`Collector`] that reads [`NodeState`] at each scrape rather than a
//! second set of counters to keep in step. [`registry`] builds a node's
//! registry; [`encode`] renders it in the Prometheus text format 0.0.4
//! (what `GET /metrics` serves, see [`crate::http`]); a harness running
//! many nodes can call [`encode`] directly and serve no HTTP at all.

use std::sync::Arc;

use grapevine_storage::latency::Snapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::procfs;
use crate::state::{ld, NodeState};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Reads a node's figures at each scrape.
#[derive(Debug)]
struct NodeCollector(Arc<NodeState>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Upper bounds of the buckets a latency histogram is exported with:
/// powers of two microseconds, 128 us to about 1 s (edges of
/// [`Snapshot`]'s buckets, so each count is exact).
const HISTOGRAM_BOUNDS_LOG2_MICROS: std::ops::RangeInclusive<u32> = 7..=20;

fn histogram(mut e: MetricEncoder<'_>, times: &Snapshot) -> std::fmt::Result {
    // The encoder adds the buckets up itself: each holds only what is
    // above the bound before it.
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for k in HISTOGRAM_BOUNDS_LOG2_MICROS {
        let upto = times.at_most((1u64 << k) - 1);
        buckets.push(((1u64 << k) as f64 / 1e6, upto - below));
        below = upto;
    }
    buckets.push((f64::INFINITY, times.total() - below));
    e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        times.sum_micros as f64 / 1e6,
        times.total(),
        &buckets,
        None,
    )
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = s.membership().counters();
        {
            let mut m = e.encode_descriptor(
                "grapevine_members",
                "Other members of the grid by state, as this node sees them (itself not counted)",
                None,
                MetricType::Gauge,
            )?;
            for (state, v) in [
                ("alive", &c.alive),
                ("suspect", &c.suspect),
                ("dead", &c.dead),
                ("left", &c.left),
            ] {
                ConstGauge::new(ld(v)).encode(m.encode_family(&[("state", state)])?)?;
            }
        }
        gauge(
            &mut e,
            "grapevine_sessions_open",
            "Storage sessions open",
            s.storage_stats().sessions_open(),
        )?;
        gauge(
            &mut e,
            "grapevine_records",
            "Signed location records held",
            ld(&c.records),
        )?;
        gauge(
            &mut e,
            "grapevine_rss_bytes",
            "Resident memory of this process",
            procfs::rss_bytes(),
        )?;
        let space = s.storage_figures();
        for (name, help, v) in [
            (
                "grapevine_storage_capacity_bytes",
                "Capacity this node offers the grid",
                space.capacity,
            ),
            (
                "grapevine_storage_stored_bytes",
                "Bytes of shares stored",
                space.used,
            ),
            (
                "grapevine_storage_available_bytes",
                "Bytes a new share may take (capacity left or disk above the reserve, the lesser)",
                space.free,
            ),
            (
                "grapevine_storage_disk_free_bytes",
                "Free bytes on the store's filesystem",
                space.disk_free,
            ),
        ] {
            gauge(&mut e, name, help, v)?;
        }
        gauge(
            &mut e,
            "grapevine_storage_serving",
            "1 while the share server listens (and the record advertises storage)",
            u64::from(s.storage_serving()),
        )?;
        let r = s.repair_stats().status();
        gauge(
            &mut e,
            "grapevine_scrub_pass_bytes",
            "Bytes read by the scrub pass under way",
            s.scrub_stats().pass_bytes(),
        )?;
        for (name, help, v) in [
            (
                "grapevine_storage_accept_errors",
                "Storage accepts that failed and were retried",
                s.storage_stats().accept_errors(),
            ),
            (
                "grapevine_storage_sessions_timed_out",
                "Storage sessions closed by a deadline",
                s.storage_stats().sessions_timed_out(),
            ),
            (
                "grapevine_storage_listings",
                "Listings answered without a session",
                s.storage_stats().listings(),
            ),
            (
                "grapevine_storage_datagram_listings",
                "Listings answered in datagrams (of grapevine_storage_listings)",
                s.storage_stats().datagram_listings(),
            ),
            (
                "grapevine_storage_datagrams_refused",
                "Listing datagrams not answered (malformed, unpadded, over bounds)",
                s.storage_stats().datagrams_refused(),
            ),
            (
                "grapevine_scrub_passes",
                "Scrub passes completed",
                s.scrub_stats().passes(),
            ),
            (
                "grapevine_scrub_shares_checked",
                "Shares the scrub checked",
                s.scrub_stats().shares_checked(),
            ),
            (
                "grapevine_scrub_bytes_checked",
                "Bytes the scrub read",
                s.scrub_stats().bytes_checked(),
            ),
            (
                "grapevine_scrub_corrupt_found",
                "Corrupt shares the scrub quarantined",
                s.scrub_stats().corrupt_found(),
            ),
            (
                "grapevine_repair_files_checked",
                "File checks made by the repair job",
                r.files_checked,
            ),
            (
                "grapevine_repair_started",
                "Repairs this node started",
                r.repairs_started,
            ),
            (
                "grapevine_repair_succeeded",
                "Repairs that healed their file",
                r.repairs_succeeded,
            ),
            (
                "grapevine_repair_shares_regenerated",
                "Shares regenerated by repair",
                r.shares_regenerated,
            ),
            (
                "grapevine_repair_read_bytes",
                "Bytes repair read",
                r.bytes_read,
            ),
            (
                "grapevine_repair_written_bytes",
                "Bytes repair wrote",
                r.bytes_written,
            ),
        ] {
            counter(&mut e, name, help, v)?;
        }
        gauge(
            &mut e,
            "grapevine_repair_below_threshold",
            "Files below their repair threshold at the last pass",
            r.below_threshold,
        )?;
        gauge(
            &mut e,
            "grapevine_repair_queue",
            "Files waiting for repair (grace, another holder, backoff) at the last pass",
            r.queue,
        )?;
        for (name, help, v) in [
            (
                "grapevine_datagrams_sent",
                "Gossip datagrams sent",
                &c.datagrams_sent,
            ),
            ("grapevine_bytes_sent", "Gossip bytes sent", &c.bytes_sent),
            (
                "grapevine_datagrams_received",
                "Gossip datagrams received",
                &c.datagrams_received,
            ),
            (
                "grapevine_bytes_received",
                "Gossip bytes received",
                &c.bytes_received,
            ),
        ] {
            counter(&mut e, name, help, ld(v))?;
        }
        // Only the sum and count are kept: a histogram with the one
        // (+Inf) bucket, which is what a summary without quantiles says.
        let requests = s.storage_stats().requests();
        e.encode_descriptor(
            "grapevine_storage_request_seconds",
            "Time to answer storage requests",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            s.storage_stats().request_micros() as f64 / 1e6,
            requests,
            &[(f64::INFINITY, requests)],
            None,
        )?;
        let st = s.storage_stats();
        let mut m = e.encode_descriptor(
            "grapevine_storage_listing_seconds",
            "Time to answer listings, by the way they were asked: in a datagram (from the node's socket reading it to the answer sent), over TCP (from the connection accepted) or on a session (from the request read)",
            None,
            MetricType::Histogram,
        )?;
        for (path, times) in [
            ("datagram", st.datagram_listing_times()),
            ("tcp", st.tcp_listing_times()),
            ("session", st.session_listing_times()),
        ] {
            histogram(m.encode_family(&[("path", path)])?, &times)?;
        }
        histogram(
            e.encode_descriptor(
                "grapevine_storage_datagram_handover_seconds",
                "Of a datagram listing's time, the part from the socket's read to a blocking thread taking its work up",
                None,
                MetricType::Histogram,
            )?,
            &st.datagram_handover_times(),
        )?;
        let up = ConstGauge::new(s.uptime_s().floor());
        up.encode(e.encode_descriptor(
            "grapevine_uptime_seconds",
            "Seconds since start",
            None,
            up.metric_type(),
        )?)
    }
}

/// A registry holding `state`'s metrics.
pub fn registry(state: Arc<NodeState>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(NodeCollector(state)));
    r
}

/// `registry` in the Prometheus text format 0.0.4.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!("encoding metrics: {e}");
    }
    out
}
