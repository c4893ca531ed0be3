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
//! giving back (truncating the memfd) happens inside the timed put, so
//! what it costs counts against the put. Never more than half the memory
//! this process may still use (the system's available memory, or its
//! memory cgroup's room if that is less: `headroom.rs`), so a put to disk
//! on a small board or in a small container is not killed for it
//! ([`primable`], `headroom::available_memory`). The time the writing
//! took is reported beside the run (`prime_s`): what that much new memory
//! cost on the day.

use std::time::{Duration, Instant};

/// Bytes of a page: one write per page faults it in.
const PAGE: usize = 4096;

/// How far ahead of what the put has stored a [`Ballast`] gives its
/// memory back: enough that the put never waits for pages, little enough
/// that they are reused before the kernel hands them to the host.
pub const LEAD: u64 = 256 << 20;

/// The least a [`Ballast`] gives back at once (one truncation per 64 MiB:
/// about 50 system calls for a 1 GiB put's 3.3 GiB).
pub const STEP: u64 = 64 << 20;

/// Memory written into a memfd and held, given back as the put stores
/// its shares ([`Ballast::give_back_for`]); the rest is freed when dropped.
#[derive(Debug)]
pub struct Ballast {
    file: Option<std::fs::File>,
    /// Bytes held at first.
    held: u64,
    /// Bytes still held.
    len: u64,
    lead: u64,
    step: u64,
}

impl Ballast {
    /// Write `bytes` (already bounded by [`primable`]) into a memfd and
    /// hold them; how long the writing took. Where no memfd can be made,
    /// fresh anonymous memory is touched and freed instead, and nothing
    /// is held.
    pub fn hold(bytes: u64) -> (Ballast, Duration) {
        let t = Instant::now();
        let file = if bytes == 0 {
            None
        } else {
            let file = memfd_with(bytes).ok();
            if file.is_none() {
                touch_anonymous(bytes);
            }
            file
        };
        let len = if file.is_some() { bytes } else { 0 };
        let ballast = Ballast {
            file,
            held: len,
            len,
            lead: LEAD,
            step: STEP,
        };
        (ballast, t.elapsed())
    }

    /// Give back what a put that has stored `stored` bytes will need next:
    /// keep the first holding less `stored` and [`LEAD`], in steps of at
    /// least [`STEP`] (the last step whatever is left).
    pub fn give_back_for(&mut self, stored: u64) {
        let keep = self.held.saturating_sub(stored.saturating_add(self.lead));
        let over = self.len.saturating_sub(keep);
        if over >= self.step || (keep == 0 && over > 0) {
            if let Some(f) = &self.file {
                // Truncating frees the pages beyond `keep` at once.
                let _ = f.set_len(keep);
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

/// A new memfd holding `bytes` written a MiB at a time.
fn memfd_with(bytes: u64) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    let fd = rustix::fs::memfd_create("grapevine-prime", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(file)
}

/// Touch `bytes` of fresh anonymous memory, a write per page, and free it.
fn touch_anonymous(bytes: u64) {
    let Ok(len) = usize::try_from(bytes) else {
        return;
    };
    // Zeroed and untouched (the allocator maps it), so each write below
    // is a page's first touch.
    let mut mem = vec![0u8; len];
    for i in (0..len).step_by(PAGE) {
        mem[i] = 1;
    }
    std::hint::black_box(&mem);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far (field 10 of
    /// `/proc/thread-self/stat`): other tests' threads fault pages too, so
    /// the process's count would not say whether this thread touched any.
    fn thread_minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which may hold spaces) start at
        // field 3, the state.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        rest.split_whitespace().nth(7).unwrap().parse().unwrap()
    }

    /// Bytes of memory a file really holds (its allocated blocks).
    fn resident(b: &Ballast) -> u64 {
        use std::os::unix::fs::MetadataExt;
        b.file
            .as_ref()
            .map_or(0, |f| f.metadata().unwrap().blocks() * 512)
    }

    #[test]
    fn a_ballast_holds_every_byte_in_shared_memory() {
        let (b, took) = Ballast::hold((8 << 20) + 123);
        assert!(took > Duration::ZERO);
        assert_eq!(b.len, (8 << 20) + 123);
        assert!(resident(&b) >= (8 << 20) + 123, "{}", resident(&b));
        let (none, _) = Ballast::hold(0);
        assert!(none.len == 0 && none.file.is_none());
    }

    /// As the put stores its shares, the ballast gives its memory back a
    /// lead ahead, in steps, and nothing is left once the put has stored
    /// all but the lead; the memory really leaves the file.
    #[test]
    fn a_ballast_gives_its_memory_back_as_the_put_stores() {
        const MIB: u64 = 1 << 20;
        let (b, _) = Ballast::hold(64 * MIB);
        let mut b = b.with_lead_and_step(8 * MIB, 4 * MIB);
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

    #[test]
    fn touching_anonymous_memory_faults_its_pages_in() {
        // 64 MiB of new pages: at least one fault per 2 MiB huge page, and
        // with 4 KiB pages one per page.
        let before = thread_minor_faults();
        touch_anonymous(64 << 20);
        let faults = thread_minor_faults() - before;
        assert!(faults >= 32, "{faults} minor faults for 64 MiB");
    }
}
