//! The workload, as decisions: which operation a client does next and on
//! which file ([`Mix`], [`Catalogue`], [`plan`]), and how a finished
//! operation is classified ([`classify`], [`beyond_repair`]). Pure and
//! seeded; the client tasks that carry operations out are in
//! [`crate::grid::clients`].
//!
//! * Operations and sizes are drawn by weight (`--ops put=1,get=2,check=1`,
//!   `--sizes 4KiB=4,64KiB=3,1MiB=2,16MiB=1` by default). A put stores a new
//!   file of the drawn size. A get or a check reads, with probability
//!   `reuse`, one of the files this client stored last (it probably still
//!   holds sessions to their servers), and otherwise a file of the drawn
//!   size stored by any client (probably on servers it has no session to).
//!   With no file of that size yet, it is a put instead.
//! * Warm or cold: the session pool logs, for every session an operation
//!   asks for, whether the pool held one already. An operation is *warm* if
//!   it held one to every server it used, *cold* if to none, *mixed*
//!   otherwise (counted in the totals only).
//! * Beyond repair: a get or check on a file that has fewer than `k`
//!   distinct shares on servers up at the time cannot succeed by design;
//!   such operations are counted apart from failures.

use std::collections::{HashSet, VecDeque};

use anyhow::{bail, Context, Result};
use grapevine_crypto::NodeId;
use grapevine_storage::client::Contact;
use rand::Rng;

use crate::bench_storage::parse_size;

/// An operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Store a new file.
    Put,
    /// Read a file and compare it byte for byte.
    Get,
    /// Ask which servers hold which shares.
    Check,
}

impl OpKind {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Check => "check",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "put" => OpKind::Put,
            "get" => OpKind::Get,
            "check" => OpKind::Check,
            _ => bail!("unknown operation {s:?} (put, get, check)"),
        })
    }
}

/// Weights of operations and sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// (operation, weight).
    pub ops: Vec<(OpKind, u32)>,
    /// (size in bytes, weight).
    pub sizes: Vec<(u64, u32)>,
}

fn weights<T>(text: &str, what: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<(T, u32)>> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, w) = part
            .split_once('=')
            .with_context(|| format!("{what} {part:?}: want NAME=WEIGHT"))?;
        let w: u32 = w
            .trim()
            .parse()
            .with_context(|| format!("{what} {part:?}: bad weight"))?;
        out.push((parse(k.trim())?, w));
    }
    if out.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
        bail!("{what}: no weight above zero in {text:?}");
    }
    Ok(out)
}

impl Mix {
    /// Parse `put=1,get=2,check=1` and `4KiB=4,1MiB=1`.
    ///
    /// # Errors
    /// Unknown operations, bad sizes or weights, all weights zero, a file
    /// too small to be stored on servers (55 bytes or less lives in the
    /// capability).
    pub fn parse(ops: &str, sizes: &str) -> Result<Self> {
        let ops = weights(ops, "--ops", OpKind::parse)?;
        let sizes = weights(sizes, "--sizes", parse_size)?;
        if let Some((s, _)) = sizes
            .iter()
            .find(|(s, _)| *s <= grapevine_storage::cap::LIT_MAX as u64)
        {
            bail!("--sizes: {s} bytes is stored in the capability, not on servers");
        }
        Ok(Mix { ops, sizes })
    }

    fn draw<T: Copy>(rng: &mut impl Rng, table: &[(T, u32)]) -> T {
        let total: u64 = table.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = rng.gen_range(0..total.max(1));
        for (t, w) in table {
            if x < u64::from(*w) {
                return *t;
            }
            x -= u64::from(*w);
        }
        table[0].0
    }
}

/// A file the workload knows: what a get compares against.
#[derive(Debug, Clone)]
pub struct File {
    /// Id (client << 32 | counter).
    pub id: u64,
    /// Size.
    pub size: u64,
    /// Content seed.
    pub seed: u64,
    /// Read capability.
    pub cap: grapevine_storage::Cap,
    /// Shares needed.
    pub k: u16,
    /// (share number, server) placed.
    pub placements: Vec<(u16, NodeId)>,
}

/// Every file stored so far, by size.
#[derive(Debug, Default)]
pub struct Catalogue {
    files: Vec<File>,
    ids: HashSet<u64>,
}

impl Catalogue {
    /// Add a file (once; repeats are ignored).
    pub fn add(&mut self, f: File) {
        if self.ids.insert(f.id) {
            self.files.push(f);
        }
    }

    /// Every file, in the order learnt.
    pub fn files(&self) -> &[File] {
        &self.files
    }

    fn pick_of_size(&self, rng: &mut impl Rng, size: u64) -> Option<&File> {
        let n = self.files.iter().filter(|f| f.size == size).count();
        if n == 0 {
            return None;
        }
        let i = rng.gen_range(0..n);
        self.files.iter().filter(|f| f.size == size).nth(i)
    }
}

/// What a client does next.
#[derive(Debug, Clone)]
pub enum Planned {
    /// Store a new file of this size.
    Put {
        /// Size.
        size: u64,
    },
    /// Read this file.
    Get(File),
    /// Check this file.
    Check(File),
}

/// Decide a client's next operation. `recent` are the files this client
/// stored last.
pub fn plan(
    rng: &mut impl Rng,
    mix: &Mix,
    reuse: f64,
    catalogue: &Catalogue,
    recent: &VecDeque<File>,
) -> Planned {
    let op = Mix::draw(rng, &mix.ops);
    let size = Mix::draw(rng, &mix.sizes);
    if op == OpKind::Put {
        return Planned::Put { size };
    }
    let file = if !recent.is_empty() && rng.gen_bool(reuse.clamp(0.0, 1.0)) {
        Some(recent[rng.gen_range(0..recent.len())].clone())
    } else {
        catalogue.pick_of_size(rng, size).cloned()
    };
    match (op, file) {
        (OpKind::Get, Some(f)) => Planned::Get(f),
        (OpKind::Check, Some(f)) => Planned::Check(f),
        _ => Planned::Put { size },
    }
}

/// Whether the client held sessions to the servers an operation used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// To every one.
    Warm,
    /// To none.
    Cold,
    /// To some.
    Mixed,
    /// It used no server.
    None,
}

impl Class {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Warm => "warm",
            Class::Cold => "cold",
            Class::Mixed => "mixed",
            Class::None => "none",
        }
    }
}

/// Classify an operation from its pool's contact log: a server counts as
/// held if the first session asked for it was an idle one reused (later
/// requests for the same server reuse the session the operation opened).
/// Returns the class and the number of distinct servers.
pub fn classify(contacts: &[Contact]) -> (Class, usize) {
    let mut seen: HashSet<NodeId> = HashSet::new();
    let (mut held, mut not) = (0usize, 0usize);
    for c in contacts {
        if seen.insert(c.server) {
            if c.reused {
                held += 1;
            } else {
                not += 1;
            }
        }
    }
    let class = match (held, not) {
        (0, 0) => Class::None,
        (_, 0) => Class::Warm,
        (0, _) => Class::Cold,
        _ => Class::Mixed,
    };
    (class, seen.len())
}

/// Whether `file` has fewer than `k` distinct shares on servers not in
/// `down`.
pub fn beyond_repair(file: &File, down: &HashSet<NodeId>) -> bool {
    let up: HashSet<u16> = file
        .placements
        .iter()
        .filter(|(_, s)| !down.contains(s))
        .map(|(n, _)| *n)
        .collect();
    up.len() < usize::from(file.k)
}

/// Clients: nodes 1..=C (never the seed), spread over the workers by
/// block; returns each worker's `INDEX:NUMBER` list.
pub fn clients_of(nodes: usize, procs: usize, clients: usize) -> Vec<Vec<(usize, usize)>> {
    let per = nodes.div_ceil(procs);
    let mut out = vec![Vec::new(); procs];
    // Client c is the first node of worker c % P after the ones taken.
    let mut next: Vec<usize> = (0..procs).map(|p| (p * per).max(1)).collect();
    for c in 0..clients {
        let p = c % procs;
        out[p].push((next[p], c));
        next[p] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn file(id_: u64, size: u64) -> File {
        File {
            id: id_,
            size,
            seed: id_,
            cap: "gv:lit:".parse().unwrap(),
            k: 3,
            placements: (0..10).map(|n| (n, id(n as u8))).collect(),
        }
    }

    #[test]
    fn mixes_parse_and_bad_ones_are_refused() {
        let m = Mix::parse("put=1,get=2,check=1", "4KiB=4,16MiB=1").unwrap();
        assert_eq!(
            m.ops,
            vec![(OpKind::Put, 1), (OpKind::Get, 2), (OpKind::Check, 1)]
        );
        assert_eq!(m.sizes, vec![(4096, 4), (16 << 20, 1)]);
        for (ops, sizes) in [
            ("put=1,delete=1", "4KiB=1"),
            ("put", "4KiB=1"),
            ("put=0", "4KiB=1"),
            ("put=1", "lots=1"),
            ("put=1", "50=1"),
            ("put=x", "4KiB=1"),
        ] {
            assert!(Mix::parse(ops, sizes).is_err(), "{ops} {sizes}");
        }
    }

    #[test]
    fn draws_follow_the_weights() {
        let m = Mix::parse("put=1,get=3", "4KiB=1").unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let gets = (0..10_000)
            .filter(|_| Mix::draw(&mut rng, &m.ops) == OpKind::Get)
            .count();
        assert!((7000..8000).contains(&gets), "{gets}");
    }

    #[test]
    fn reads_fall_back_to_puts_until_there_is_a_file_and_reuse_picks_recent_ones() {
        let m = Mix::parse("get=1", "4KiB=1,64KiB=1").unwrap();
        let mut rng = SmallRng::seed_from_u64(2);
        let mut cat = Catalogue::default();
        let none = VecDeque::new();
        assert!(matches!(
            plan(&mut rng, &m, 0.0, &cat, &none),
            Planned::Put { .. }
        ));
        cat.add(file(1, 4096));
        cat.add(file(1, 4096));
        assert_eq!(cat.files().len(), 1, "a file is added once");
        cat.add(file(2, 65536));
        for _ in 0..100 {
            match plan(&mut rng, &m, 0.0, &cat, &none) {
                Planned::Get(f) => assert!(f.id == 1 || f.id == 2),
                other => panic!("{other:?}"),
            }
        }
        let recent: VecDeque<File> = [file(7, 4096)].into();
        for _ in 0..100 {
            match plan(&mut rng, &m, 1.0, &cat, &recent) {
                Planned::Get(f) => assert_eq!(f.id, 7),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn operations_are_warm_cold_or_mixed_by_their_first_contact_per_server() {
        let c = |b, reused| Contact {
            server: id(b),
            reused,
        };
        assert_eq!(classify(&[]), (Class::None, 0));
        // A session opened by the operation and reused later: still cold.
        assert_eq!(
            classify(&[c(1, false), c(1, true), c(2, false)]),
            (Class::Cold, 2)
        );
        assert_eq!(
            classify(&[c(1, true), c(2, true), c(1, true)]),
            (Class::Warm, 2)
        );
        assert_eq!(classify(&[c(1, true), c(2, false)]), (Class::Mixed, 2));
    }

    #[test]
    fn a_file_is_beyond_repair_when_fewer_than_k_shares_are_up() {
        let f = file(1, 4096);
        let down = |bs: &[u8]| bs.iter().map(|b| id(*b)).collect::<HashSet<_>>();
        assert!(!beyond_repair(&f, &down(&[])));
        assert!(!beyond_repair(&f, &down(&[0, 1, 2, 3, 4, 5, 6])));
        assert!(beyond_repair(&f, &down(&[0, 1, 2, 3, 4, 5, 6, 7])));
        let mut two_copies = f.clone();
        two_copies.placements = vec![(0, id(1)), (0, id(2)), (1, id(3)), (2, id(4))];
        assert!(!beyond_repair(&two_copies, &down(&[1])));
        assert!(beyond_repair(&two_copies, &down(&[3])));
    }

    #[test]
    fn clients_are_early_nodes_spread_over_the_workers_never_the_seed() {
        assert_eq!(
            clients_of(1000, 2, 4),
            vec![vec![(1, 0), (2, 2)], vec![(500, 1), (501, 3)]]
        );
        assert_eq!(clients_of(100, 1, 2), vec![vec![(1, 0), (2, 1)]]);
    }
}
