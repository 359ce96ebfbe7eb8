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

/// Asks for the `bytes` bytes from `p` on: every cache line they touch,
/// the first and last included when `p` is not on a line boundary (an
/// `Arc`'s value starts 16 bytes into its allocation).
#[inline(always)]
pub fn prefetch_bytes<T>(p: *const T, bytes: usize) {
    let p = p.cast::<u8>();
    let lead = p as usize % LINE;
    for off in line_offsets(lead, bytes) {
        prefetch(p.wrapping_sub(lead).wrapping_add(off));
    }
}

/// Asks for all of the value at `p` (an SA behind its `Arc`, say).
#[inline(always)]
pub fn prefetch_value<T>(p: *const T) {
    prefetch_bytes(p, size_of::<T>());
}

/// Offsets, from the line boundary at or before the start, of the lines
/// that `bytes` bytes starting `lead` bytes into a line touch.
#[inline(always)]
fn line_offsets(lead: usize, bytes: usize) -> impl Iterator<Item = usize> {
    let span = if bytes == 0 { 0 } else { lead + bytes };
    (0..span).step_by(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_a_span_touches_is_asked_for() {
        // 128 bytes from 16 into a line touch three lines, not two.
        assert_eq!(line_offsets(16, 128).collect::<Vec<_>>(), [0, 64, 128]);
        assert_eq!(line_offsets(0, 128).collect::<Vec<_>>(), [0, 64]);
        assert_eq!(line_offsets(63, 2).collect::<Vec<_>>(), [0, 64]);
        assert_eq!(line_offsets(5, 1).collect::<Vec<_>>(), [0]);
        assert_eq!(line_offsets(5, 0).count(), 0);
        for lead in 0..LINE {
            for bytes in 1..300 {
                let lines: Vec<usize> = line_offsets(lead, bytes).collect();
                let (first, last) = (lead / LINE, (lead + bytes - 1) / LINE);
                assert_eq!(lines.len(), last - first + 1, "lead {lead} bytes {bytes}");
            }
        }
    }
}
