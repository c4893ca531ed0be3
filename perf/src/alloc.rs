//! A global allocator that counts live heap bytes, and the most live at
//! once since [`reset_peak`], so benchmarks can report exactly what a
//! session or a node holds, and the high-water mark of an operation.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// Wraps the system allocator and counts live bytes.
#[derive(Debug)]
pub struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LARGE: AtomicU64 = AtomicU64::new(0);
/// Allocations of at least this many bytes count as large.
pub const LARGE_ALLOC: usize = 64 << 10;

/// Count one allocation of `size` bytes.
fn counted(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    if size >= LARGE_ALLOC {
        LARGE.fetch_add(1, Ordering::Relaxed);
    }
}

/// Count `delta` more live bytes, raising the peak if it is passed.
fn grow(delta: isize) {
    let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counter is bookkeeping only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grow(layout.size() as isize);
            counted(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grow(layout.size() as isize);
            counted(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            grow(new_size as isize - layout.size() as isize);
            counted(new_size);
        }
        p
    }
}

/// Heap bytes currently allocated through [`CountingAlloc`].
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed) as i64
}

/// The most heap bytes live at once since the last [`reset_peak`] (or the
/// start).
pub fn peak_bytes() -> i64 {
    PEAK.load(Ordering::Relaxed) as i64
}

/// Start a new high-water mark at the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Allocations (reallocations included) through [`CountingAlloc`] so far.
pub fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Allocations of at least [`LARGE_ALLOC`] bytes so far.
pub fn large_allocs() -> u64 {
    LARGE.load(Ordering::Relaxed)
}
