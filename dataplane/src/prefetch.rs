//! Software prefetch: with thousands of tunnels every packet meets a cold
//! SA, so a worker asks for a whole burst's SA state before it touches any
//! of it, and the cache misses overlap instead of queueing (the DPDK way).

/// Bytes per cache line on the CPUs esprit runs on.
pub const LINE: usize = 64;

/// Asks for the cache line holding `p`. A hint: it never faults, whatever
/// the address.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint and never faults, even on a bad address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the `bytes` bytes from `p` on, line by line.
#[inline(always)]
pub fn prefetch_bytes<T>(p: *const T, bytes: usize) {
    let p = p.cast::<u8>();
    let mut off = 0;
    while off < bytes {
        prefetch(p.wrapping_add(off));
        off += LINE;
    }
}
