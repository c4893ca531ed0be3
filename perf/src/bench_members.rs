//! `grapevine-perf bench members`: what junk records cost a node of an
//! open grid, where anyone can sign a record (issue 16.4). One membership
//! core (sans-IO, a virtual clock) is offered `--records` records of new
//! nodes, each validly signed by its own fresh identity, none of which ever
//! answers; the bench reports the heap the core holds for them (live bytes
//! through the counting allocator, before and after), per record, and how
//! many the member cap (`--cap`, the core's `max_members`) let in, replaced
//! or refused. The core's policy at the cap: a new record takes the place
//! of a member dead or departed, then of one whose address never answered
//! (longest known first); past that it is refused (`records.over_cap`).
//! So the heap is bounded by the cap, not by what is offered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use grapevine_crypto::{Identity, LocationRecord, SignedRecord};
use grapevine_membership::{Config, Swim};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::alloc;

/// Arguments of `bench members`.
#[derive(Debug, clap::Args)]
pub struct MembersArgs {
    /// Junk records offered (each a new node's).
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// The member cap (`max_members`; the core's default is 16,384).
    #[arg(long, default_value_t = Config::new_lan().max_members)]
    pub cap: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct MembersReport {
    /// Records offered.
    pub offered: usize,
    /// The member cap.
    pub cap: usize,
    /// Members held afterwards.
    pub members: usize,
    /// Times a record found the table full (the core then frees a batch of
    /// places: members that never answered, longest known first).
    pub over_cap: u64,
    /// Members forgotten to make room (never-answered ones).
    pub evicted: u64,
    /// Records refused: neither held nor forgotten later.
    pub refused: u64,
    /// Heap the core held before the records, bytes.
    pub heap_before: i64,
    /// Heap the core holds after, bytes.
    pub heap_after: i64,
    /// (after - before) / members held, bytes.
    pub bytes_per_member: f64,
    /// Time to verify and offer them all, seconds.
    pub offer_s: f64,
}

/// A record of a new node, signed by a fresh identity.
fn junk(i: usize) -> SignedRecord {
    let id = Identity::generate();
    let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
    let mut r = LocationRecord::new(&id, vec![addr]);
    r.seq = 1;
    r.sign(&id).expect("junk record")
}

/// Run the bench.
///
/// # Errors
/// Never, today (the signature of every bench).
pub fn run(a: &MembersArgs) -> Result<()> {
    // Kept as bytes the whole time, so the heap counted below is the
    // core's own (each record is decoded, verified, into it).
    let records: Vec<Vec<u8>> = (0..a.records).map(|i| junk(i).bytes().to_vec()).collect();
    let me = Arc::new(Identity::generate());
    let own = LocationRecord::new(&me, vec!["10.255.255.1:7946".parse()?]).sign(&me)?;
    let cfg = Config {
        max_members: a.cap,
        ..Config::new_lan()
    };
    // The virtual clock's origin; only differences from it matter.
    let t0 = Instant::now();
    let before = alloc::live_bytes();
    let mut node = Swim::new(me, own, vec![], cfg, SmallRng::seed_from_u64(1), t0);
    let after_new = alloc::live_bytes();
    let start = Instant::now();
    let now = t0 + Duration::from_secs(1);
    for r in &records {
        node.add_verified_record(SignedRecord::decode(r)?, now);
    }
    // Let the core do what it does with new members (validation pings) and
    // drain its output, as a driver would.
    node.handle_timeout(now + Duration::from_secs(5));
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let offer_s = start.elapsed().as_secs_f64();
    let after = alloc::live_bytes();
    let st = node.stats();
    let (alive, suspect, dead, left) = node.state_counts();
    let members = alive + suspect + dead + left;
    let rep = MembersReport {
        offered: a.records,
        cap: a.cap,
        members,
        over_cap: st.records.over_cap,
        evicted: st.evicted,
        refused: (a.records as u64).saturating_sub(members as u64 + st.evicted),
        heap_before: after_new - before,
        heap_after: after - before,
        bytes_per_member: (after - after_new) as f64 / members.max(1) as f64,
        offer_s,
    };
    drop(node);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "{} junk records offered (cap {}): {} members held, {} forgotten to make room (never answered), {} refused; the table was found full {} times",
            rep.offered, rep.cap, rep.members, rep.evicted, rep.refused, rep.over_cap
        );
        println!(
            "heap of the core: {:.1} KiB empty, {:.1} MiB after ({:.0} bytes a member); offered in {:.2} s",
            rep.heap_before as f64 / 1024.0,
            rep.heap_after as f64 / f64::from(1 << 20),
            rep.bytes_per_member,
            rep.offer_s
        );
    }
    Ok(())
}
