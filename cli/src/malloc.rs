//! glibc's allocator (and the sessions' sealing buffers), told at start-up
//! to give memory back under a small memory budget (issue 25).
//!
//! Two of glibc's defaults keep memory a download or an upload has freed:
//! every thread that allocates gets an arena of its own (up to eight per
//! core: tokio's workers and its blocking threads each fill one with the
//! blocks they handle), and the mmap threshold rises to the size of the
//! largest mapped buffer freed so far (up to 32 MiB), after which blocks
//! and segments come from the arenas and stay there when freed. Measured in
//! a 16 MiB cgroup with the node a member of a 1000-node grid
//! (docs/performance.md), `grapevine get` reached 9.8 to 14.5 MiB of
//! anonymous memory with the defaults and was OOM-killed; with one arena
//! and a fixed 64 KiB threshold it stayed at 4.5 MiB, the node at 3.4
//! instead of 5.5 MiB.
//!
//! So when the process's memory budget is bounded, [`tune`] makes the
//! allocator do what `MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=65536` in
//! the environment would: one arena for all threads, and a buffer of 64 KiB
//! or more that the arena has no free room for mapped on its own (and
//! unmapped when freed) rather than grown into the arena. A variable the
//! operator did set wins. With no bound (`memory_budget_mib = 0`) the
//! defaults stay, which are faster on a large machine. It must run before
//! the process starts a second thread: glibc fixes its arena limit when the
//! first thread beyond the main one allocates.
//!
//! Under a bounded budget the sessions also keep no sealing buffer between
//! the messages a thread sends (`grapevine_crypto::session`'s per-thread
//! spare, up to 516 KiB a thread otherwise).
//!
//! The unsafe code here is two calls of glibc's `mallopt(3)`, which takes
//! two integers and no pointer, made while the process has a single
//! thread (the binary's only other is in `signals`). Elsewhere than on
//! glibc nothing is done.

#![allow(unsafe_code)]

use grapevine_storage::MemoryBudget;

/// Arenas under a bounded budget: one, shared by every thread.
pub const ARENA_MAX: i32 = 1;
/// Size from which a buffer is mapped on its own (and so unmapped when
/// freed) under a bounded budget: 64 KiB, and fixed (glibc's dynamic
/// threshold is off once it is set).
pub const MMAP_THRESHOLD: i32 = 64 << 10;

/// What [`tune`] tells the allocator: `M_ARENA_MAX` and `M_MMAP_THRESHOLD`
/// values, each `None` to leave it be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Arenas at most.
    pub arena_max: Option<i32>,
    /// The mmap threshold, bytes.
    pub mmap_threshold: Option<i32>,
    /// Whether threads keep a sealing buffer between the messages they
    /// send ([`grapevine_crypto::session::keep_seal_buffers`]): not under
    /// a bounded budget.
    pub keep_seal_buffers: bool,
}

/// The settings for `budget`, leaving alone those whose environment
/// variable is set (`is_set`: whether a variable is in the environment).
pub fn settings(budget: MemoryBudget, is_set: impl Fn(&str) -> bool) -> Settings {
    if budget.bytes().is_none() {
        return Settings {
            arena_max: None,
            mmap_threshold: None,
            keep_seal_buffers: true,
        };
    }
    Settings {
        arena_max: (!is_set("MALLOC_ARENA_MAX")).then_some(ARENA_MAX),
        mmap_threshold: (!is_set("MALLOC_MMAP_THRESHOLD_")).then_some(MMAP_THRESHOLD),
        keep_seal_buffers: false,
    }
}

/// Tune the allocator for `budget` (see the module docs); call it before
/// any other thread is started. Returns what was set.
pub fn tune(budget: MemoryBudget) -> Settings {
    let s = settings(budget, |k| std::env::var_os(k).is_some());
    apply(s);
    grapevine_crypto::session::keep_seal_buffers(s.keep_seal_buffers);
    tracing::debug!(?s, "allocator settings for a memory budget of {budget}");
    s
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply(s: Settings) {
    if let Some(v) = s.arena_max {
        // SAFETY: mallopt takes two integers and touches only the
        // allocator's own parameters, under its lock; no pointer is passed.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, v) } != 1 {
            tracing::warn!("mallopt(M_ARENA_MAX, {v}) failed");
        }
    }
    if let Some(v) = s.mmap_threshold {
        // SAFETY: as above.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, v) } != 1 {
            tracing::warn!("mallopt(M_MMAP_THRESHOLD, {v}) failed");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(_: Settings) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_budget_asks_for_one_arena_and_a_64_kib_threshold() {
        let none = |_: &str| false;
        let s = settings(MemoryBudget::mib(8), none);
        assert_eq!(s.arena_max, Some(1));
        assert_eq!(s.mmap_threshold, Some(64 << 10));
        assert_eq!(settings(MemoryBudget::mib(1024), none), s);
        assert!(!s.keep_seal_buffers);
        // No bound: glibc's defaults, and sealing buffers kept.
        let s = settings(MemoryBudget::UNBOUNDED, none);
        assert_eq!((s.arena_max, s.mmap_threshold), (None, None));
        assert!(s.keep_seal_buffers);
        // The operator's variables win.
        let s = settings(MemoryBudget::mib(8), |k| k == "MALLOC_ARENA_MAX");
        assert_eq!((s.arena_max, s.mmap_threshold), (None, Some(64 << 10)));
        let s = settings(MemoryBudget::mib(8), |k| k == "MALLOC_MMAP_THRESHOLD_");
        assert_eq!((s.arena_max, s.mmap_threshold), (Some(1), None));
    }

    /// After [`tune`] with a bounded budget, 96 KiB buffers (below glibc's
    /// default threshold of 128 KiB, so all from an arena otherwise) are
    /// mapped on their own, and so given back to the kernel when freed,
    /// but for the few an arena has free room for. glibc puts a mapped
    /// chunk's 16-byte header at the start of a page, so its buffer starts
    /// 16 bytes into a page; from an arena, that is chance.
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    #[test]
    fn after_tuning_96_kib_buffers_are_mapped_on_their_own() {
        tune(MemoryBudget::mib(8));
        let bufs: Vec<Vec<u8>> = (0..32).map(|_| vec![1u8; 96 << 10]).collect();
        let mapped = bufs
            .iter()
            .filter(|b| b.as_ptr() as usize % 4096 == 16)
            .count();
        assert!(
            mapped >= 24,
            "{mapped} of 32 buffers mapped: the threshold was not set"
        );
    }
}
