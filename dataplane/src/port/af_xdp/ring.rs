//! AF_XDP's four single-producer/single-consumer rings (fill, completion,
//! rx, tx), shared with the kernel through mmap: a producer index, a
//! consumer index and an array of entries (Documentation/networking/af_xdp.rst).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

/// `struct xdp_desc`: a frame in the UMEM.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// One mapped ring of entries of type `T` (u64 addresses or descriptors).
pub struct Ring<T: Copy> {
    map: NonNull<u8>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
}

// SAFETY: the mapping belongs to one socket owned by one worker.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of `fd`.
    pub fn map(fd: i32, off: &RingOffset, size: u32, pgoff: i64) -> io::Result<Ring<T>> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of a ring the kernel sized on this
        // socket; the kernel checks offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p.cast::<u8>();
        let at = |o: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping.
            NonNull::new(unsafe { base.add(o as usize) }).ok_or_else(io::Error::last_os_error)
        };
        Ok(Ring {
            map: NonNull::new(base).ok_or_else(io::Error::last_os_error)?,
            map_len,
            producer: at(off.producer)?.cast(),
            consumer: at(off.consumer)?.cast(),
            entries: at(off.desc)?.cast(),
            mask: size - 1,
        })
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: a 4-byte aligned u32 in the live mapping, shared with the
        // kernel and accessed only atomically.
        unsafe { self.producer.as_ref() }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as for `prod`.
        unsafe { self.consumer.as_ref() }
    }

    fn slot(&self, i: u32) -> *mut T {
        // SAFETY: `i & mask` < size: inside the entries array.
        unsafe { self.entries.as_ptr().add((i & self.mask) as usize) }
    }

    /// Producer side: how many entries are free to write.
    pub fn free(&self) -> u32 {
        let size = self.mask + 1;
        let used = self
            .prod()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.cons().load(Ordering::Acquire));
        size.saturating_sub(used)
    }

    /// Producer side: writes `items` (at most `free()`) and publishes them.
    pub fn produce(&mut self, items: impl IntoIterator<Item = T>) -> u32 {
        let free = self.free();
        let start = self.prod().load(Ordering::Relaxed);
        let mut n = 0;
        for item in items.into_iter().take(free as usize) {
            // SAFETY: the slot is between producer and consumer + size:
            // ours to write until we publish.
            unsafe { self.slot(start.wrapping_add(n)).write(item) };
            n += 1;
        }
        self.prod().store(start.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer side: calls `f` on up to `max` published entries and
    /// releases them.
    pub fn consume(&mut self, max: usize, mut f: impl FnMut(T)) -> u32 {
        let cons = self.cons().load(Ordering::Relaxed);
        let avail = self.prod().load(Ordering::Acquire).wrapping_sub(cons);
        let n = avail.min(u32::try_from(max).unwrap_or(u32::MAX));
        for i in 0..n {
            // SAFETY: entries between consumer and producer are published
            // by the kernel and stable until we move the consumer.
            f(unsafe { self.slot(cons.wrapping_add(i)).read() });
        }
        self.cons().store(cons.wrapping_add(n), Ordering::Release);
        n
    }
}

impl<T: Copy> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our mapping; nothing points into it after.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}
