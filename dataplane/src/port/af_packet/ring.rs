//! The TPACKET_V3 receive ring (Documentation/networking/packet_mmap.rst):
//! the kernel fills blocks of frames in a shared mapping and hands each
//! whole block to user space by flipping its status; we hand it back once
//! every frame in it is consumed.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `SOL_PACKET` options (linux/if_packet.h).
pub const PACKET_RX_RING: i32 = 5;
pub const PACKET_VERSION: i32 = 10;
pub const TPACKET_V3: i32 = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;

// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then
// `struct tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT_OFFSET: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_MAC: usize = 24;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketReq3 {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_blk_tov: u32,
    pub sizeof_priv: u32,
    pub feature_req_word: u32,
}

/// One frame as the kernel stored it.
pub struct Frame<'a> {
    /// The captured bytes, from the Ethernet header.
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data` if truncated).
    pub wire_len: usize,
}

/// The mapped ring and where we are in it.
pub struct RxRing {
    base: NonNull<u8>,
    map_len: usize,
    block_size: usize,
    block_nr: usize,
    block: usize,
    /// Frames left in the current block; 0 = no block held.
    left: u32,
    /// Offset of the next frame in the current block.
    at: usize,
}

// SAFETY: the mapping is owned by this ring alone (one socket, one worker);
// the raw pointer is what keeps the type from being Send automatically.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Maps the ring that `req` set up on `fd` (PACKET_RX_RING done).
    pub fn map(fd: i32, req: &TpacketReq3) -> io::Result<RxRing> {
        let block_size = req.block_size as usize;
        let block_nr = req.block_nr as usize;
        let map_len = block_size * block_nr;
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // checks the length against the ring it created.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        // MAP_LOCKED fails without CAP_IPC_LOCK or enough RLIMIT_MEMLOCK:
        // retry unlocked (slower under memory pressure, still correct).
        let p = if p == libc::MAP_FAILED {
            // SAFETY: as above.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            }
        } else {
            p
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(RxRing {
            base,
            map_len,
            block_size,
            block_nr,
            block: 0,
            left: 0,
            at: 0,
        })
    }

    fn block_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: i < block_nr, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(i * self.block_size) }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block_status is a 4-byte aligned u32 at a fixed offset of
        // each (page aligned) block, shared with the kernel: accessed only
        // atomically.
        unsafe { &*(self.block_ptr(i).add(BLOCK_STATUS) as *const AtomicU32) }
    }

    /// The current block's bytes; only valid while we own the block.
    fn block_bytes(&self) -> &[u8] {
        // SAFETY: the block is ours (status USER, acquired), so the kernel
        // does not write it until we release it; it lies inside the mapping.
        unsafe { std::slice::from_raw_parts(self.block_ptr(self.block), self.block_size) }
    }

    /// Returns the current block to the kernel and moves to the next.
    fn release(&mut self) {
        self.status(self.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.block_nr;
        self.left = 0;
    }

    /// Takes the next block if the kernel has filled it; false if not.
    fn acquire(&mut self) -> bool {
        loop {
            if self.status(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return false;
            }
            let b = self.block_bytes();
            let num = read_u32(b, BLOCK_NUM_PKTS).unwrap_or(0);
            let first = read_u32(b, BLOCK_FIRST_PKT).unwrap_or(0) as usize;
            if num == 0 || first >= self.block_size {
                self.release();
                continue;
            }
            self.left = num;
            self.at = first;
            return true;
        }
    }

    /// Calls `f` on up to `max` frames; returns how many it saw.
    pub fn for_each_frame(&mut self, max: usize, mut f: impl FnMut(Frame<'_>)) -> usize {
        let mut n = 0;
        while n < max {
            if self.left == 0 && !self.acquire() {
                break;
            }
            let b = self.block_bytes();
            let at = self.at;
            let hdr = |o: usize| read_u32(b, at + o);
            let mac = b
                .get(at + PKT_MAC..at + PKT_MAC + 2)
                .map(|m| u16::from_ne_bytes([m[0], m[1]]) as usize);
            let (next, snap, len) = (hdr(PKT_NEXT_OFFSET), hdr(PKT_SNAPLEN), hdr(PKT_LEN));
            let frame = match (mac, snap) {
                (Some(mac), Some(snap)) => b.get(at + mac..at + mac + snap as usize),
                _ => None,
            };
            if let Some(data) = frame {
                f(Frame {
                    data,
                    wire_len: len.unwrap_or(0) as usize,
                });
            }
            n += 1;
            self.left -= 1;
            match next {
                Some(next) if self.left > 0 && next > 0 => self.at = at + next as usize,
                // Last frame, or a corrupt link: give the block back.
                _ => self.release(),
            }
        }
        n
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no references
        // into it outlive `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}
