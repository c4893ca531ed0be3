//! How a session receives a message of several frames, counted by the
//! allocator (issue 22.2): every frame is read onto the end of the message
//! and decrypted there, so receiving a storage block allocates its buffer
//! once (and grows it once, past the first frame; not at all when its size
//! is expected), not once per frame with a copy of each fragment into the
//! message.
//!
//! A test binary of its own: the counting allocator sees this test alone.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use grapevine_crypto::testing::{record_for, rng};
use grapevine_crypto::{Identity, Session, SessionConfig};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_message_of_many_frames_is_assembled_in_one_buffer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = Identity::generate_with(&mut rng(1));
        let b = Identity::generate_with(&mut rng(2));
        let ra = record_for(&a, "127.0.0.1:1").sign(&a).unwrap();
        let rb = record_for(&b, "127.0.0.1:2").sign(&b).unwrap();
        let cfg = SessionConfig {
            max_message: (1 << 20) + 4096,
            ..SessionConfig::default()
        };
        // Room in the pipe for the whole message: it is sent before it is
        // received, so the receive below is all this thread does.
        let (x, y) = tokio::io::duplex(4 << 20);
        let (client, server) = tokio::join!(
            Session::connect(x, &a, &ra, rb.node_id(), &cfg),
            Session::accept(y, &b, &rb, &cfg)
        );
        let (mut client, _) = client.unwrap();
        let (mut server, _) = server.unwrap();
        // A storage block of a 1 MiB segment, 3-of-10: six frames.
        let block: Vec<u8> = (0..349_526u32).map(|i| (i % 251) as u8).collect();
        client.send(&block).await.unwrap();
        client.send(&block).await.unwrap();

        let (n0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let got = server.recv().await.unwrap();
        let (allocs, bytes) = (
            ALLOCS.load(Ordering::Relaxed) - n0,
            BYTES.load(Ordering::Relaxed) - b0,
        );
        assert_eq!(got, block);
        // The first frame's buffer, grown once into the message's; a frame
        // per allocation (and per copy) was seven allocations and 1.4 MB.
        assert!(allocs <= 2, "{allocs} allocations to receive one message");
        // (Each frame's buffer has room for the next frame's 2-byte
        // length, read with it.)
        assert!(
            bytes <= (1 << 20) + 4096 + 65_535 + 2,
            "{bytes} bytes allocated to receive {} bytes",
            block.len()
        );

        // Expected at its size: one allocation, of the block and the
        // framing of its last frame, and nothing reserved past it.
        let (n0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let got = server.recv_expecting(block.len()).await.unwrap();
        let (allocs, bytes) = (
            ALLOCS.load(Ordering::Relaxed) - n0,
            BYTES.load(Ordering::Relaxed) - b0,
        );
        assert_eq!(got, block);
        assert_eq!(allocs, 1, "{allocs} allocations to receive one message");
        assert!(bytes <= block.len() as u64 + 32, "{bytes} bytes allocated");
    });
}
