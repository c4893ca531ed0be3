//! A global allocator for tests that watch allocations: it forwards every
//! call to the system allocator unchanged and tells a function the size of
//! each allocation (and of each reallocation's new block). The test binary
//! that includes this (with `#![allow(unsafe_code)]`) declares
//! `#[global_allocator] static ALLOC: NotingAlloc = NotingAlloc(note);`
//! with its own `note`, which must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, telling `.0` each allocation's size.
pub struct NotingAlloc(pub fn(usize));

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the note is bookkeeping only and does not allocate.
unsafe impl GlobalAlloc for NotingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.0)(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.0)(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.0)(new_size);
        System.realloc(ptr, layout, new_size)
    }
}
