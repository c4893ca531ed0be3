//! The peer cache: the records of members this node saw alive, kept in its
//! directory (`DIR/peers`), as Tahoe keeps its introducer cache, so that a
//! restarted node finds the grid again through them as well as through its
//! seeds. Without it, a grid's first node (no seeds) that restarts knows no
//! one, and a node whose seeds are down or restarting with it joins only
//! them: the two form an island until the others' pings of members that
//! left find it (`grapevine_membership::swim`'s `join` docs).
//!
//! The file holds one record a line, hex, after a comment line; at most
//! [`MAX_CACHED`] records of members alive (see [`current`]). It is written
//! the way `DIR/last_seq` is (temporary file, fsync, rename) by [`keep`]:
//! a few seconds after start, then every [`SAVE_EVERY`] when the set of
//! members changed, and once more when the node leaves. [`load`] reads it
//! back at start: each record's signature is checked (a file is input like
//! any other), lines that are not valid records are skipped and counted in
//! a warning, and this node's own id is left out. The membership core then
//! treats the records as it treats any record it receives (a closed grid
//! still wants its admission, records far ahead of the grid's time are
//! held back) and sends its `Join` to up to eight of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::{NodeId, SignedRecord};
use grapevine_membership::MemberState;

use crate::state::NodeState;

/// Records kept in the cache, at most.
pub const MAX_CACHED: usize = 256;
/// Time between looks at the member table (after a first one at
/// [`FIRST_SAVE`]).
pub const SAVE_EVERY: Duration = Duration::from_secs(30);
/// First look after start.
pub const FIRST_SAVE: Duration = Duration::from_secs(3);
/// A cache file longer than this is read only this far.
const MAX_FILE_BYTES: u64 = 1 << 20;
const HEADER: &str = "# grapevine peer cache: signed records of members last seen alive, hex";

/// The records of the peer cache at `path` that verify, this node's own
/// (`me`) left out; none if there is no file.
pub fn load(path: &Path, me: &NodeId) -> Vec<SignedRecord> {
    use std::io::Read;
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            if let Err(e) = f.take(MAX_FILE_BYTES).read_to_string(&mut text) {
                tracing::warn!("peer cache {}: {e}; starting without it", path.display());
                return Vec::new();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("peer cache {}: {e}; starting without it", path.display());
            return Vec::new();
        }
    }
    let mut bad = 0usize;
    let mut out: Vec<SignedRecord> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_CACHED {
            break;
        }
        let rec = data_encoding::HEXLOWER
            .decode(line.as_bytes())
            .ok()
            .and_then(|b| SignedRecord::decode(&b).ok());
        match rec {
            Some(r) if r.node_id() != *me && out.iter().all(|o| o.node_id() != r.node_id()) => {
                out.push(r)
            }
            Some(_) => {}
            None => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(
            "peer cache {}: {bad} lines are not valid records (skipped)",
            path.display()
        );
    }
    out
}

/// Write `records` (the first [`MAX_CACHED`]) as the peer cache at `path`.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, records: &[SignedRecord]) -> std::io::Result<()> {
    let mut text = String::with_capacity(64 + records.len() * 700);
    text.push_str(HEADER);
    text.push('\n');
    for r in records.iter().take(MAX_CACHED) {
        text.push_str(&data_encoding::HEXLOWER.encode(r.bytes()));
        text.push('\n');
    }
    crate::seq::write_durably(path, text.as_bytes())
}

/// The records worth caching now: members alive, at most [`MAX_CACHED`]:
/// in a larger grid those nearest this node's id by XOR, so the choice
/// changes only when members do (the file is rewritten only then) and
/// different nodes keep different members.
pub async fn current(state: &NodeState) -> Vec<SignedRecord> {
    let Ok(mut members) = state.membership().members().await else {
        return Vec::new();
    };
    let me = state.id();
    members.retain(|m| m.state == MemberState::Alive && m.record.is_some());
    members.sort_by_cached_key(|m| {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = m.id.0[i] ^ me.0[i];
        }
        d
    });
    members
        .into_iter()
        .filter_map(|m| m.record)
        .take(MAX_CACHED)
        .collect()
}

/// Save [`current`] to `path` if it differs from `last` (by ids and
/// sequence numbers); the set saved, or `last` if nothing was written.
pub async fn save_current(
    state: &NodeState,
    path: &Path,
    last: Vec<(NodeId, u64)>,
) -> Vec<(NodeId, u64)> {
    let recs = current(state).await;
    let mut now: Vec<(NodeId, u64)> = recs.iter().map(|r| (r.node_id(), r.seq())).collect();
    now.sort_unstable();
    if now == last || recs.is_empty() {
        return last;
    }
    let p = path.to_path_buf();
    match tokio::task::spawn_blocking(move || save(&p, &recs)).await {
        Ok(Ok(())) => now,
        Ok(Err(e)) => {
            tracing::warn!("peer cache {}: {e}", path.display());
            last
        }
        Err(e) => {
            tracing::warn!("peer cache {}: {e}", path.display());
            last
        }
    }
}

/// Keep the peer cache at `path` current until the task is dropped.
pub async fn keep(state: Arc<NodeState>, path: PathBuf) {
    let mut last = Vec::new();
    tokio::time::sleep(FIRST_SAVE).await;
    loop {
        last = save_current(&state, &path, last).await;
        tokio::time::sleep(SAVE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::{Identity, LocationRecord};

    fn rec(seed: u64, port: u16) -> SignedRecord {
        let id = Identity::generate_with(&mut grapevine_crypto::testing::rng(seed));
        LocationRecord::new(&id, vec![([127, 0, 0, 1], port).into()])
            .sign(&id)
            .unwrap()
    }

    #[test]
    fn the_cache_keeps_verified_records_of_others_only() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("peers");
        let me = rec(1, 1);
        assert!(load(&path, &me.node_id()).is_empty(), "no file, no peers");
        let others: Vec<SignedRecord> = (2..6).map(|i| rec(i, i as u16)).collect();
        let mut all = others.clone();
        all.push(me.clone());
        save(&path, &all).unwrap();
        let got = load(&path, &me.node_id());
        assert_eq!(got, others);
        // A forged line and garbage are skipped; the rest still load.
        let mut text = std::fs::read_to_string(&path).unwrap();
        let mut forged = others[0].bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        text.push_str(&data_encoding::HEXLOWER.encode(&forged));
        text.push_str("\nnot hex at all\n");
        std::fs::write(&path, text).unwrap();
        assert_eq!(load(&path, &me.node_id()), others);
        // Bounded: past MAX_CACHED records nothing more is read.
        let mut text = String::from("# many\n");
        for i in 10..10 + MAX_CACHED as u64 + 5 {
            text.push_str(&data_encoding::HEXLOWER.encode(rec(i, 1000).bytes()));
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        assert_eq!(load(&path, &me.node_id()).len(), MAX_CACHED);
    }
}
