//! Ten thousand nodes on the simulator's virtual clock for one simulated
//! minute, with one node in a hundred crashed at the start: prints the wall
//! time it took, the steps (datagrams delivered and timers handled) and the
//! verdicts. Figures are printed, never asserted.
//!
//! ```text
//! cargo bench -p grapevine-membership --bench sim
//! SIM_NODES=10000 SIM_GRID=1000 SIM_SECS=60 cargo bench -p grapevine-membership --bench sim
//! ```
//!
//! Every node of a flat grid holds every record (N^2 state: 10,000 nodes in
//! one grid would need about 30 GB here), so the nodes form grids of
//! `SIM_GRID` (1000 by default) that share the one simulator: its event
//! queue holds all ten thousand nodes, and a step costs O(log N) in the
//! number of nodes simulated. Each grid starts converged (records signed
//! once and handed to every node, see `SimNet::add_converged_grid`): the
//! join storm's cost is signature checks, which this run is not about.

// Wall time is what this measures; the simulated nodes never see it.
#![allow(clippy::disallowed_methods)]

use hashbrown::HashSet;
use std::time::{Duration, Instant};

use grapevine_membership::sim::SimNet;
use grapevine_membership::{Config, MemberState};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes
    // nothing: run a small version then, so the target stays exercised.
    let bench = std::env::args().any(|a| a == "--bench");
    let (nodes, grid, secs) = if bench {
        (
            env("SIM_NODES", 10_000),
            env("SIM_GRID", 1000),
            env("SIM_SECS", 60),
        )
    } else {
        (200, 100, 5)
    };
    let grids = nodes.div_ceil(grid);
    let setup = Instant::now();
    let mut net = SimNet::new(1, Config::new_lan());
    for g in 0..grids {
        net.add_converged_grid(grid.min(nodes - g * grid));
    }
    // Joins answered, own records pushed: a grid in its steady state.
    net.run_for(Duration::from_secs(5));
    let setup = setup.elapsed();
    let killed: Vec<usize> = (0..net.len()).filter(|i| i % 100 == 50).collect();
    let ids: HashSet<_> = killed.iter().map(|&i| net.id(i)).collect();
    for &i in &killed {
        net.kill(i);
    }
    let steps = net.steps();
    let events = net.events.len();
    let wall = Instant::now();
    net.run_for(Duration::from_secs(secs as u64));
    let wall = wall.elapsed();
    let steps = net.steps() - steps;
    // Who sees each crashed node dead (every live node of its grid should).
    let (mut seen, mut expected) = (0usize, 0usize);
    for &k in &killed {
        let g = k / grid;
        for i in g * grid..((g + 1) * grid).min(nodes) {
            if let Some(x) = net.node(i) {
                expected += 1;
                seen += (x.state_of(&net.id(k)) == Some(MemberState::Dead)) as usize;
            }
        }
    }
    let false_deaths = net.false_deaths(&ids);
    println!(
        "sim: {nodes} nodes ({grids} grids of {grid}), {} crashed, {secs} s simulated: \
         wall {:.1} s ({:.2} simulated s per wall s), {steps} steps ({:.0} per wall s, \
         {:.2} us each); crashes seen dead {seen} of {expected}; false deaths {false_deaths}; \
         state changes {}; setup {:.1} s; peak RSS {} MiB",
        killed.len(),
        wall.as_secs_f64(),
        secs as f64 / wall.as_secs_f64(),
        steps as f64 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1e6 / steps.max(1) as f64,
        net.events.len() - events,
        setup.as_secs_f64(),
        peak_rss_mib().map_or("?".into(), |m| m.to_string()),
    );
}
