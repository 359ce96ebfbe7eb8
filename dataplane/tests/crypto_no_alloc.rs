//! The per-packet path must not allocate: seal and open of every backend,
//! at every size class (short path, bulk + tail, long AAD), under a counting
//! global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dataplane::crypto::AesGcm;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn seal_and_open_do_not_allocate() {
    let mut buf = vec![0u8; 4096];
    let aad = [0x11u8; 40];
    let nonce = [7u8; 12];
    for key_len in [16, 32] {
        let key = vec![0x42u8; key_len];
        let backends = AesGcm::all_backends(&key).expect("valid key");
        for g in &backends {
            for len in [0usize, 1, 15, 16, 64, 96, 97, 127, 128, 129, 1400, 4096] {
                for aad_len in [0usize, 8, 12, 16, 17, 40] {
                    let data = &mut buf[..len];
                    let aad = &aad[..aad_len];
                    let before = allocs();
                    let tag = g.seal_in_place(&nonce, aad, data);
                    let opened = g.open_in_place(&nonce, aad, data, &tag);
                    let after = allocs();
                    assert_eq!(opened, Ok(()), "{} len {len}", g.backend());
                    assert_eq!(after - before, 0, "{} len {len} aad {aad_len}", g.backend());
                }
            }
        }
    }
}
