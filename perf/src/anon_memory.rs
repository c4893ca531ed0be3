//! Anonymous memory held in huge pages where the kernel gives them, and
//! given back from its end.
//!
//! The bench's priming ([`crate::prime::Ballast`]) holds a put's worth of
//! memory and gives it back inside the timed put, so what giving back
//! costs counts against the put. Measured on the 2-core machine of
//! 2026-12-06 (docs/performance.md), giving back 3 GiB in 64 MiB steps
//! took 0.50 s of kernel time from a memfd (truncation frees page by page
//! from the page cache), 0.25 s from anonymous memory in 4 KiB pages
//! (`MADV_DONTNEED`) and 0.01 s from anonymous memory in 2 MiB huge pages:
//! a put of 1 GiB costs about 8.5 s of CPU, so the memfd was 6 % of it.
//! So the memory is an anonymous private mapping advised to use huge
//! pages (`MADV_HUGEPAGE`: transparent huge pages in `madvise` mode, this
//! machine's default), given back by unmapping its tail on whole huge
//! pages. Where the kernel gives no huge pages, the same calls work on
//! 4 KiB pages.
//!
//! The only `unsafe` of the bench outside its counting allocator: the
//! mapping is this type's own, never lent out as a slice, written only
//! through [`AnonMemory::touch`] and unmapped only from its end.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;

use rustix::mm::{Advice, MapFlags, ProtFlags};

/// Bytes of a base page: one write per page faults it in.
const PAGE: usize = 4096;

/// Bytes of a huge page on x86-64 and arm64 (4 KiB base pages): memory is
/// given back in whole ones, so none is split.
pub const HUGE_PAGE: usize = 2 << 20;

/// A private anonymous mapping owned by this value.
#[derive(Debug)]
pub struct AnonMemory {
    ptr: NonNull<c_void>,
    /// Bytes still mapped, from `ptr`.
    len: usize,
}

// SAFETY: the mapping is owned by this value alone (no slice of it is ever
// lent out), so moving it to another thread moves its only user.
unsafe impl Send for AnonMemory {}

impl AnonMemory {
    /// Map `len` bytes (at least one) of anonymous memory that starts on a
    /// huge page's boundary, advised to use huge pages; nothing is touched
    /// yet.
    pub fn map(len: usize) -> std::io::Result<AnonMemory> {
        if len == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        // A huge page more than asked for, so that a boundary falls in the
        // first one: the kernel aligns only mappings whose length is a
        // multiple of a huge page, and the priming's is not.
        let padded = len
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks aliases no memory of this process.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                padded,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let raw = raw.cast::<u8>();
        let head = (raw as usize).next_multiple_of(HUGE_PAGE) - raw as usize;
        // Both ends are page-aligned: `raw` and `HUGE_PAGE` are, and the
        // tail's start is `head + len` rounded up to a page.
        let end = (head + len).next_multiple_of(PAGE);
        // SAFETY: the head and tail cut off are parts of the mapping just
        // made, which nothing points into; what stays is `[head, end)`.
        unsafe {
            if head > 0 {
                rustix::mm::munmap(raw.cast(), head)?;
            }
            if padded > end {
                rustix::mm::munmap(raw.add(end).cast(), padded - end)?;
            }
        }
        // SAFETY: `head < HUGE_PAGE < padded`, inside the mapping.
        let ptr = NonNull::new(unsafe { raw.add(head) }.cast::<c_void>())
            .ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        // SAFETY: advice on this value's own mapping; it changes no
        // contents. It fails only on a kernel built without transparent
        // huge pages (with them turned off it succeeds and changes
        // nothing), and then the memory is in base pages.
        let _ = unsafe { rustix::mm::madvise(ptr.as_ptr(), len, Advice::LinuxHugepage) };
        Ok(AnonMemory { ptr, len })
    }

    /// Write `byte` to every page, so that the kernel backs them all.
    pub fn touch(&mut self, byte: u8) {
        let base = self.ptr.as_ptr().cast::<u8>();
        for offset in (0..self.len).step_by(PAGE) {
            // SAFETY: `offset < self.len`, inside the mapping, which is
            // readable and writable and not borrowed elsewhere.
            unsafe { base.add(offset).write_volatile(byte) };
        }
    }

    /// Give back everything from `keep` bytes on (rounded up to a whole
    /// huge page: the mapping starts on a boundary, so none is split);
    /// nothing if that is not less than what is mapped.
    pub fn keep_first(&mut self, keep: usize) -> std::io::Result<()> {
        let keep = keep.div_ceil(HUGE_PAGE).saturating_mul(HUGE_PAGE);
        if keep >= self.len {
            return Ok(());
        }
        // SAFETY: `[keep, len)` is the end of this value's mapping, which
        // no reference points into; it is forgotten below.
        unsafe {
            rustix::mm::munmap(
                self.ptr.as_ptr().cast::<u8>().add(keep).cast(),
                self.len - keep,
            )
        }?;
        self.len = keep;
        Ok(())
    }

    /// Bytes of the mapping resident in memory (`mincore`; tests).
    #[cfg(test)]
    pub fn resident_bytes(&self) -> usize {
        if self.len == 0 {
            return 0;
        }
        let mut pages = vec![0u8; self.len.div_ceil(PAGE)];
        // SAFETY: the range is this value's mapping; `pages` has a byte
        // per page of it.
        let rc = unsafe { libc::mincore(self.ptr.as_ptr(), self.len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        pages.iter().filter(|p| *p & 1 == 1).count() * PAGE
    }

    /// Where the mapping starts (to find it in `/proc/self/smaps`), while
    /// anything is still mapped.
    pub fn address(&self) -> Option<usize> {
        (self.len > 0).then_some(self.ptr.as_ptr() as usize)
    }
}

impl Drop for AnonMemory {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the whole of what is still mapped, owned by this
            // value, which is going away.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
        }
    }
}

/// Bytes in huge pages (`AnonHugePages` of `/proc/self/smaps`) of the
/// mapping that holds `address`: the kernel may have merged this value's
/// mapping with a neighbour of the same kind, so this is an upper bound
/// where it has; `None` where the kernel does not say.
pub fn huge_bytes_at(address: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    huge_bytes_in(&smaps, address)
}

/// [`huge_bytes_at`] over the text of an smaps file: the `AnonHugePages`
/// field of the mapping whose range holds `address`; `None` if no
/// mapping holds it or that mapping has no such field.
fn huge_bytes_in(smaps: &str, address: usize) -> Option<u64> {
    let mut lines = smaps.lines();
    // Each mapping's header is `start-end perms offset dev inode [path]`
    // in hex; its fields follow, `VmFlags` last, until the next header.
    let holds = |line: &str| -> bool {
        let Some((range, _)) = line.split_once(' ') else {
            return false;
        };
        let Some((start, end)) = range.split_once('-') else {
            return false;
        };
        match (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) {
            (Ok(start), Ok(end)) => (start..end).contains(&address),
            _ => false,
        }
    };
    lines.by_ref().find(|l| holds(l))?;
    for line in lines {
        if let Some(rest) = line.strip_prefix("AnonHugePages:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return kib.parse::<u64>().ok().map(|k| k.saturating_mul(1024));
        }
        if line.starts_with("VmFlags:") {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memory_is_backed_once_touched_and_leaves_as_its_end_is_given_back() {
        let mut m = AnonMemory::map(16 * MIB + 123).unwrap();
        assert_eq!(
            m.resident_bytes(),
            0,
            "nothing is backed before it is touched"
        );
        m.touch(0x5a);
        assert_eq!(m.resident_bytes(), 16 * MIB + PAGE, "every page is backed");
        assert_eq!(m.address().unwrap() % HUGE_PAGE, 0, "starts on a boundary");
        if let Some(huge) = m.address().and_then(huge_bytes_at) {
            eprintln!("{huge} bytes in huge pages");
        }

        // Given back on whole huge pages: 5 MiB kept is 6 MiB kept.
        m.keep_first(5 * MIB).unwrap();
        assert_eq!(m.len, 6 * MIB);
        assert_eq!(m.resident_bytes(), 6 * MIB);
        m.keep_first(7 * MIB).unwrap();
        assert_eq!(m.len, 6 * MIB, "keeping more than is mapped keeps it");
        m.keep_first(0).unwrap();
        assert_eq!(m.len, 0);
        assert_eq!(m.address(), None);
    }

    /// Two mappings as `/proc/self/smaps` shows them (fields cut short).
    const SMAPS: &str = "\
55d0c0000000-55d0c0021000 r--p 00000000 00:1f 1234   /usr/bin/grapevine-perf
Size:                132 kB
AnonHugePages:         0 kB
VmFlags: rd mr mw me sd
7f29ff000000-7f29ff001000 rw-p 00000000 00:00 0
Size:                  4 kB
VmFlags: rd wr mr mw me ac sd
7f2a00000000-7f2ad5600000 rw-p 00000000 00:00 0
Size:            3495936 kB
Rss:             3493888 kB
AnonHugePages:   3493888 kB
VmFlags: rd wr mr mw me ac sd hg
";

    #[test]
    fn huge_pages_are_read_from_the_mapping_that_holds_the_address() {
        let at = 0x7f2a_0000_0000;
        assert_eq!(huge_bytes_in(SMAPS, at), Some(3_493_888 * 1024));
        assert_eq!(huge_bytes_in(SMAPS, at + 0x1000), Some(3_493_888 * 1024));
        assert_eq!(huge_bytes_in(SMAPS, 0x55d0_c000_0000), Some(0));
        // The end of a range is not in it; a gap is in none.
        assert_eq!(huge_bytes_in(SMAPS, 0x7f2a_d560_0000), None);
        // A mapping without the field: the next mapping's is not taken.
        assert_eq!(huge_bytes_in(SMAPS, 0x7f29_ff00_0000), None);
        assert_eq!(huge_bytes_in("", at), None);
        assert_eq!(huge_bytes_in("garbage\nzz-yy x\n", at), None);
        assert_eq!(
            huge_bytes_in(
                "7f2a00000000-7f2ad5600000 rw-p\nAnonHugePages: lots kB\n",
                at
            ),
            None
        );
    }

    #[test]
    fn nothing_is_mapped_for_nothing() {
        assert!(AnonMemory::map(0).is_err());
    }
}
