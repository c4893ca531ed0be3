//! Priming the machine's memory before a timed put.
//!
//! On the virtual machines this project is measured on, the first write
//! to a page of memory the guest has not used for a while is slow: the
//! host must back it (free page reporting hands freed memory back to the
//! host; a guest on shadow page tables pays for every page it maps anew).
//! Measured on the 2-core machine of 2026-12-06 (docs/performance.md):
//! touching 3.3 GiB of new memory took 4.1 to 7.1 s and touching the same
//! pages again 0.07 s; `dd` wrote 1000 MiB into tmpfs at 1.8 GB/s, the
//! next 1000 MiB at 685 MB/s and the next at 283 MB/s. `bench storage`
//! deletes each run's shares when the run ends, so every put writes its
//! 10/3 of the file's size into memory that has been free for seconds: a
//! put of 1 GiB to tmpfs spent 3.5 to 7.8 s of kernel time against 2.6 to
//! 3.5 s right after as much memory had been written and freed. A node's
//! page cache, full of pages it reuses, does not meet that on every file;
//! a benchmark that frees all it wrote does, by an amount that changes
//! from minute to minute.
//!
//! Priming went through two steps. First the bench wrote as many bytes as
//! the put would store into a memory-backed file (a memfd: shared memory,
//! as tmpfs shares are) and freed them right before the put, so that the
//! shares would land in memory just used. That halved the worst runs but
//! left a spread: this machine's kernel hands free memory back to its host
//! continuously (free page reporting, here with no minimum time free: 90
//! to 140 MiB/s during the puts, counted by `reported_to_host_kib`),
//! and whatever was handed back between the priming and the moment the
//! put wrote there was slow again; the slow runs were those during which
//! most was handed back (600 to 840 MiB against 280 to 340).
//!
//! So priming now holds the memory ([`Ballast::hold`]) and gives it back
//! as the put stores its shares ([`Ballast::give_back_for`], called from
//! the upload's progress), a fixed lead ahead of what the put has stored:
//! the put's shares land in pages freed a moment before, not seconds. The
//! giving back happens inside the timed put, so what it costs counts
//! against the put. Until the eighteenth sitting the memory was a memfd,
//! and truncating it cost 0.5 s of kernel time per 1 GiB put (6 % of the
//! put's CPU); now it is anonymous memory in huge pages, given back by
//! unmapping whole ones (0.01 s; `anon_memory.rs`). Never more than half
//! the memory this process may still use (the system's available memory,
//! or its memory cgroup's room if that is less: `headroom.rs`), so a put
//! to disk on a small board or in a small container is not killed for it
//! ([`primable`], `headroom::available_memory`). The time the writing
//! took is reported beside the run (`prime_s`): what that much new memory
//! cost on the day.

use std::time::{Duration, Instant};

use crate::anon_memory::AnonMemory;

/// How far ahead of what the put has stored a [`Ballast`] gives its
/// memory back: enough that the put never waits for pages, little enough
/// that they are reused before the kernel hands them to the host.
pub const LEAD: u64 = 256 << 20;

/// The least a [`Ballast`] gives back at once (one unmapping per 64 MiB:
/// about 50 system calls for a 1 GiB put's 3.3 GiB).
pub const STEP: u64 = 64 << 20;

/// Memory written and held, given back as the put stores its shares
/// ([`Ballast::give_back_for`]); the rest is freed when dropped.
#[derive(Debug)]
pub struct Ballast {
    memory: Option<AnonMemory>,
    /// Bytes held at first.
    held: u64,
    /// Bytes still held.
    len: u64,
    lead: u64,
    step: u64,
}

impl Ballast {
    /// Write `bytes` (already bounded by [`primable`]) into new anonymous
    /// memory and hold them; how long the writing took. Where the memory
    /// cannot be mapped, nothing is held.
    pub fn hold(bytes: u64) -> (Ballast, Duration) {
        let t = Instant::now();
        let memory = usize::try_from(bytes)
            .ok()
            .filter(|b| *b > 0)
            .and_then(|b| AnonMemory::map(b).ok())
            .map(|mut m| {
                m.touch(0x5a);
                m
            });
        let len = if memory.is_some() { bytes } else { 0 };
        let ballast = Ballast {
            memory,
            held: len,
            len,
            lead: LEAD,
            step: STEP,
        };
        (ballast, t.elapsed())
    }

    /// Bytes of the memory held in huge pages, where the kernel says.
    pub fn huge_bytes(&self) -> Option<u64> {
        let m = self.memory.as_ref()?;
        crate::anon_memory::huge_bytes_at(m.address()?).map(|h| h.min(self.len))
    }

    /// Give back what a put that has stored `stored` bytes will need next:
    /// keep the first holding less `stored` and [`LEAD`], in steps of at
    /// least [`STEP`] (the last step whatever is left).
    pub fn give_back_for(&mut self, stored: u64) {
        let keep = self.held.saturating_sub(stored.saturating_add(self.lead));
        let over = self.len.saturating_sub(keep);
        if over >= self.step || (keep == 0 && over > 0) {
            if let Some(m) = &mut self.memory {
                // Unmapping frees the pages beyond `keep` (rounded up to a
                // whole huge page) at once.
                let _ = m.keep_first(usize::try_from(keep).unwrap_or(usize::MAX));
            }
            self.len = keep;
        }
    }

    /// Give back `lead` ahead in steps of `step` (tests).
    #[cfg(test)]
    fn with_lead_and_step(mut self, lead: u64, step: u64) -> Self {
        self.lead = lead;
        self.step = step;
        self
    }
}

/// How much of `bytes` may be primed with `available` bytes of memory
/// free: at most half of it; nothing where that is unknown.
pub fn primable(bytes: u64, available: Option<u64>) -> u64 {
    available.map_or(0, |a| bytes.min(a / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of memory the ballast really holds (resident pages).
    fn resident(b: &Ballast) -> u64 {
        b.memory.as_ref().map_or(0, |m| m.resident_bytes() as u64)
    }

    #[test]
    fn a_ballast_holds_every_byte_in_memory() {
        let (b, took) = Ballast::hold((8 << 20) + 123);
        assert!(took > Duration::ZERO);
        assert_eq!(b.len, (8 << 20) + 123);
        assert!(resident(&b) >= (8 << 20) + 123, "{}", resident(&b));
        let (none, _) = Ballast::hold(0);
        assert!(none.len == 0 && none.memory.is_none());
    }

    /// As the put stores its shares, the ballast gives its memory back a
    /// lead ahead, in steps, and nothing is left once the put has stored
    /// all but the lead; the memory really leaves the process (resident
    /// pages counted at each step).
    #[test]
    fn a_ballast_gives_its_memory_back_as_the_put_stores() {
        const MIB: u64 = 1 << 20;
        let (b, _) = Ballast::hold(64 * MIB);
        let mut b = b.with_lead_and_step(8 * MIB, 4 * MIB);
        assert_eq!(resident(&b), 64 * MIB);
        b.give_back_for(0);
        assert_eq!(b.len, 56 * MIB, "the lead is given back at once");
        assert_eq!(resident(&b), 56 * MIB);
        b.give_back_for(2 * MIB);
        assert_eq!(b.len, 56 * MIB, "less than a step: kept");
        b.give_back_for(10 * MIB);
        assert_eq!(b.len, 46 * MIB);
        assert_eq!(resident(&b), 46 * MIB);
        b.give_back_for(55 * MIB);
        assert_eq!(b.len, MIB);
        assert!(resident(&b) <= 2 * MIB, "whole huge pages are kept");
        b.give_back_for(56 * MIB);
        assert_eq!(b.len, 0, "the last bytes go whatever the step");
        assert_eq!(resident(&b), 0);
        b.give_back_for(u64::MAX);
        assert_eq!(b.len, 0);
    }

    #[test]
    fn priming_takes_at_most_half_the_available_memory() {
        assert_eq!(primable(10 << 30, Some(4 << 30)), 2 << 30);
        assert_eq!(primable(1 << 20, Some(4 << 30)), 1 << 20);
        assert_eq!(primable(1 << 20, None), 0);
        assert_eq!(primable(1 << 20, Some(0)), 0);
    }
}
