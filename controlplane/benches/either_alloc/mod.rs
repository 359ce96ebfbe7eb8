//! A global allocator chosen when the process starts: glibc's (`System`)
//! if `ESPRIT_REKEY_ALLOC=system`, else mimalloc, as espritd has. One
//! bench binary can then time both, each in a child process of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use mimalloc::MiMalloc;

const UNKNOWN: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Reads the choice once, at the first allocation (before `main`, on one
/// thread). `getenv`, because `std::env` would allocate in here.
fn choice() -> u8 {
    match CHOICE.load(Relaxed) {
        UNKNOWN => {
            // SAFETY: a NUL-terminated name; the result is NULL or a
            // NUL-terminated string that lives as long as the environment,
            // which nothing changes this early.
            let value = unsafe { libc::getenv(c"ESPRIT_REKEY_ALLOC".as_ptr()) };
            let system = !value.is_null() && unsafe { CStr::from_ptr(value) } == c"system";
            let c = if system { SYSTEM } else { MIMALLOC };
            CHOICE.store(c, Relaxed);
            c
        }
        c => c,
    }
}

pub struct EitherAlloc;

// SAFETY: every call goes to the one allocator chosen for the whole
// process, so each block is freed by the allocator that made it.
unsafe impl GlobalAlloc for EitherAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match choice() {
            SYSTEM => unsafe { System.alloc(l) },
            _ => unsafe { MiMalloc.alloc(l) },
        }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match choice() {
            SYSTEM => unsafe { System.alloc_zeroed(l) },
            _ => unsafe { MiMalloc.alloc_zeroed(l) },
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match choice() {
            SYSTEM => unsafe { System.dealloc(p, l) },
            _ => unsafe { MiMalloc.dealloc(p, l) },
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        match choice() {
            SYSTEM => unsafe { System.realloc(p, l, new) },
            _ => unsafe { MiMalloc.realloc(p, l, new) },
        }
    }
}

#[global_allocator]
static ALLOCATOR: EitherAlloc = EitherAlloc;
