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
//! [`prime`] writes as many bytes as the put will store into a
//! memory-backed file (a memfd: shared memory, as tmpfs shares are) and
//! frees them, untimed, right before the put, so that the put's shares
//! land in memory just used; never more than half the memory this process
//! may still use (the system's available memory, or its memory cgroup's
//! room if that is less: `headroom.rs`), so a put to disk on a small board
//! or in a small container is not killed for it. The time it took is
//! reported beside the run (`prime_s`): what that much new memory cost on
//! the day.

use std::time::{Duration, Instant};

use crate::headroom::available_memory;

/// Bytes of a page: one write per page faults it in.
const PAGE: usize = 4096;

/// Write `bytes` into a memory-backed file (as a tmpfs store's shares
/// are written: into the page cache's shared memory), then free it; how
/// long the writing took. Where no such file can be made, fresh anonymous
/// memory is touched page by page instead. Never more than half the
/// memory this process may still use ([`primable`],
/// [`available_memory`]): a put to disk on a small board, or in a small
/// container, must not be killed for the priming.
pub fn prime(bytes: u64) -> Duration {
    prime_at_most(bytes, available_memory())
}

/// [`prime`] with `available` bytes of memory free (`None`: unknown).
fn prime_at_most(bytes: u64, available: Option<u64>) -> Duration {
    let bytes = primable(bytes, available);
    let t = Instant::now();
    if bytes > 0 && write_memfd(bytes).is_err() {
        touch_anonymous(bytes);
    }
    t.elapsed()
}

/// How much of `bytes` may be primed with `available` bytes of memory
/// free: at most half of it; nothing where that is unknown.
pub fn primable(bytes: u64, available: Option<u64>) -> u64 {
    available.map_or(0, |a| bytes.min(a / 2))
}

/// Write `bytes` to a new memfd, a MiB at a time, and close it.
fn write_memfd(bytes: u64) -> std::io::Result<()> {
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
    Ok(())
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

    #[test]
    fn priming_writes_every_byte_into_shared_memory() {
        // The memfd takes the bytes; a file that cannot hold them fails.
        write_memfd((8 << 20) + 123).expect("a memfd holds 8 MiB");
        assert!(prime(1 << 20) > Duration::ZERO);
    }

    #[test]
    fn priming_takes_at_most_half_the_available_memory() {
        assert_eq!(primable(10 << 30, Some(4 << 30)), 2 << 30);
        assert_eq!(primable(1 << 20, Some(4 << 30)), 1 << 20);
        assert_eq!(primable(1 << 20, None), 0);
        assert_eq!(primable(1 << 20, Some(0)), 0);
        // Nothing to prime takes no time worth the name.
        assert!(prime_at_most(1 << 30, None) < Duration::from_millis(50));
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
