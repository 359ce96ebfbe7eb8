//! Packet buffers with headroom and tailroom, recycled through a per-worker
//! pool so the fast path never allocates.
//!
//! ESP seal grows a packet at both ends (outer header, ESP header and IV in
//! front; padding, trailer and ICV behind), so every buffer keeps
//! [`HEADROOM`] bytes free in front of the data when it is (re)filled.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ptr::NonNull;

/// Bytes in one buffer: a 1500-byte MTU frame plus ESP overhead, rounded up.
pub const BUF_CAPACITY: usize = 2048;
/// Free bytes kept in front of freshly received data.
pub const HEADROOM: usize = 128;

/// How an outside packet travels (or travelled) between the gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encap {
    /// ESP inside UDP (RFC 3948), normally on port 4500.
    #[default]
    EspInUdp,
    /// Raw ESP, IP protocol 50.
    RawEsp,
    /// An inner (cleartext) packet on the inside port.
    Inner,
    /// A control message (esprit's ping) found inside ESP, on its way to
    /// the control plane; `Meta::spi` says which inbound SA it came on.
    Control,
}

/// Per-packet metadata the ports fill in and the worker reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Outside packets: the peer's address (source on rx, destination on tx).
    /// The port is 0 for raw ESP.
    pub remote: SocketAddr,
    /// Outside packets: the local UDP port it arrived on or leaves from.
    pub local_port: u16,
    pub encap: Encap,
    /// `Encap::Control`: the inbound SPI the message was decrypted with.
    pub spi: u32,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            remote: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            local_port: 0,
            encap: Encap::default(),
            spi: 0,
        }
    }
}

/// Not enough room in the buffer for the requested growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("packet buffer has no room for {wanted} more bytes")]
pub struct NoRoom {
    pub wanted: usize,
}

/// A buffer another allocator lent (a DPDK mbuf's data room, so that a
/// packet goes from the NIC through ESP and back without a copy):
/// `release(handle)` gives it back when the packet is dropped.
#[derive(Clone, Copy, Debug)]
pub struct ExternalBuffer {
    pub handle: *mut c_void,
    pub release: unsafe fn(*mut c_void),
    /// Which lender (e.g. DPDK's mbufs): a port that knows the lender may
    /// take the handle back instead of copying the bytes.
    pub lender: Lender,
}

/// The allocators that lend packet buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lender {
    /// A DPDK mbuf (`handle` is its `rte_mbuf*`).
    DpdkMbuf,
}

/// Who gives a packet's buffer back.
enum Owner {
    /// Our heap: `buf` came from a `Box<[u8; BUF_CAPACITY]>`.
    Heap,
    External(ExternalBuffer),
}

/// One packet: a fixed-size buffer and the window of valid bytes in it.
pub struct Packet {
    buf: NonNull<[u8; BUF_CAPACITY]>,
    owner: Owner,
    start: usize,
    end: usize,
    pub meta: Meta,
}

// SAFETY: a packet is the only holder of its buffer (a leaked Box, or a
// lent buffer nobody else touches until it is released), so it may move to
// another thread; DPDK mbufs may be released from any thread.
unsafe impl Send for Packet {}
// SAFETY: shared references only read the buffer.
unsafe impl Sync for Packet {}

impl Drop for Packet {
    fn drop(&mut self) {
        match self.owner {
            // SAFETY: `buf` came from Box::leak in `new` and is dropped once.
            Owner::Heap => drop(unsafe { Box::from_raw(self.buf.as_ptr()) }),
            // SAFETY: the lender's contract (`from_external`): released once.
            Owner::External(e) => unsafe { (e.release)(e.handle) },
        }
    }
}

impl std::fmt::Debug for Packet {
    /// Length and metadata only: packet contents may be secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len())
            .field("meta", &self.meta)
            .finish()
    }
}

/// The packet's bytes, for code generic over byte slices (the offloads).
impl AsRef<[u8]> for Packet {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}

impl Packet {
    /// An empty packet with the standard headroom. Allocates: use a
    /// [`PacketPool`] on the fast path.
    pub fn new() -> Packet {
        Packet {
            buf: NonNull::from(Box::leak(Box::new([0u8; BUF_CAPACITY]))),
            owner: Owner::Heap,
            start: HEADROOM,
            end: HEADROOM,
            meta: Meta::default(),
        }
    }

    /// A packet in a lent buffer, its bytes `start..end` valid.
    ///
    /// # Safety
    /// `buf` must be valid for reads and writes of `BUF_CAPACITY` bytes,
    /// touched by nobody else, until `ext.release(ext.handle)` is called,
    /// which the packet does exactly once (when dropped), unless
    /// [`Packet::into_external`] hands the buffer back first.
    pub unsafe fn from_external(
        buf: NonNull<[u8; BUF_CAPACITY]>,
        ext: ExternalBuffer,
        start: usize,
        end: usize,
    ) -> Packet {
        let end = end.min(BUF_CAPACITY);
        Packet {
            buf,
            owner: Owner::External(ext),
            start: start.min(end),
            end,
            meta: Meta::default(),
        }
    }

    /// The lender of this packet's buffer, if it is not ours.
    pub fn external(&self) -> Option<ExternalBuffer> {
        match self.owner {
            Owner::Heap => None,
            Owner::External(e) => Some(e),
        }
    }

    /// Gives a lent buffer back to the caller without releasing it, with
    /// the valid window (`start..end`) in it; a heap packet comes back as
    /// it is.
    pub fn into_external(self) -> Result<(ExternalBuffer, usize, usize), Packet> {
        match self.owner {
            Owner::Heap => Err(self),
            Owner::External(e) => {
                let p = ManuallyDrop::new(self);
                Ok((e, p.start, p.end))
            }
        }
    }

    #[inline(always)]
    fn bytes(&self) -> &[u8; BUF_CAPACITY] {
        // SAFETY: `buf` is valid and ours for the packet's life (see above).
        unsafe { self.buf.as_ref() }
    }

    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8; BUF_CAPACITY] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { self.buf.as_mut() }
    }

    /// A packet holding a copy of `data` after the standard headroom
    /// (tests and tools). Returns `None` if `data` does not fit.
    pub fn from_slice(data: &[u8]) -> Option<Packet> {
        let mut p = Packet::new();
        p.push_back(data.len()).ok()?.copy_from_slice(data);
        Some(p)
    }

    /// Forget the contents and restore the standard headroom.
    #[inline]
    pub fn reset(&mut self) {
        self.start = HEADROOM;
        self.end = HEADROOM;
        self.meta = Meta::default();
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.bytes()[self.start..self.end]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (a, b) = (self.start, self.end);
        &mut self.bytes_mut()[a..b]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    #[inline]
    pub fn tailroom(&self) -> usize {
        BUF_CAPACITY - self.end
    }

    /// The whole free space after the headroom, for a port to receive into;
    /// follow with [`Packet::set_received_len`].
    #[inline]
    pub fn rx_space(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        self.end = HEADROOM;
        &mut self.bytes_mut()[HEADROOM..]
    }

    /// Marks the first `n` bytes of [`Packet::rx_space`] as the packet.
    #[inline]
    pub fn set_received_len(&mut self, n: usize) {
        self.start = HEADROOM;
        self.end = HEADROOM + n.min(BUF_CAPACITY - HEADROOM);
    }

    /// Grows the packet by `n` bytes in front; returns the new front bytes.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Result<&mut [u8], NoRoom> {
        if n > self.start {
            return Err(NoRoom { wanted: n });
        }
        self.start -= n;
        let (a, b) = (self.start, self.start + n);
        Ok(&mut self.bytes_mut()[a..b])
    }

    /// Grows the packet by `n` bytes at the end; returns the new end bytes.
    #[inline]
    pub fn push_back(&mut self, n: usize) -> Result<&mut [u8], NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom { wanted: n });
        }
        let old = self.end;
        self.end += n;
        let end = self.end;
        Ok(&mut self.bytes_mut()[old..end])
    }

    /// Removes `n` bytes from the front (`n` is clamped to the length).
    #[inline]
    pub fn pull_front(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Shortens the packet to `len` bytes (no-op if already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    /// Replaces the contents with a copy of `data` after the standard headroom.
    pub fn set_data(&mut self, data: &[u8]) -> Result<(), NoRoom> {
        self.start = HEADROOM;
        self.end = HEADROOM;
        self.push_back(data.len())?.copy_from_slice(data);
        Ok(())
    }
}

/// Where a pool takes buffers from before its own: a port that owns the
/// NIC (DPDK) lends its receive buffers, so packets the worker builds (read
/// from the inside, sealed) leave without a copy.
pub trait BufferSource: Send {
    /// A fresh packet with the standard headroom, or `None` when the
    /// lender has none to spare (the pool falls back to its own).
    fn take(&mut self) -> Option<Packet>;
}

/// A worker's free list of buffers. Buffers are allocated up front; when the
/// list runs dry a new one is allocated and counted, so a leak shows up in
/// the stats instead of as a stall.
pub struct PacketPool {
    free: Vec<Packet>,
    allocated: u64,
    source: Option<Box<dyn BufferSource>>,
}

impl PacketPool {
    /// A pool with `n` buffers ready.
    pub fn with_capacity(n: usize) -> PacketPool {
        PacketPool {
            free: (0..n).map(|_| Packet::new()).collect(),
            allocated: n as u64,
            source: None,
        }
    }

    /// Takes buffers from `source` first from now on.
    pub fn set_source(&mut self, source: Box<dyn BufferSource>) {
        self.source = Some(source);
    }

    /// A reset buffer: the source's, else from the free list (or a new one).
    #[inline]
    pub fn get(&mut self) -> Packet {
        if let Some(p) = self.source.as_mut().and_then(|s| s.take()) {
            return p;
        }
        match self.free.pop() {
            Some(mut p) => {
                p.reset();
                p
            }
            None => {
                self.allocated += 1;
                Packet::new()
            }
        }
    }

    /// Returns a buffer to the free list; a lent one goes back to its
    /// lender (a pool must not hoard a NIC's buffers).
    #[inline]
    pub fn put(&mut self, p: Packet) {
        if p.external().is_none() {
            self.free.push(p);
        }
    }

    /// Returns all buffers in `pkts` to the free list (or their lender).
    #[inline]
    pub fn put_all(&mut self, pkts: &mut Vec<Packet>) {
        if self.source.is_none() && pkts.iter().all(|p| p.external().is_none()) {
            self.free.append(pkts);
            return;
        }
        for p in pkts.drain(..) {
            self.put(p);
        }
    }

    /// Buffers on the free list now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Buffers this pool has ever allocated.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_at_both_ends_within_bounds() {
        let mut p = Packet::from_slice(b"inner").unwrap();
        p.push_front(16).unwrap().fill(0xaa);
        p.push_back(20).unwrap().fill(0xbb);
        assert_eq!(p.len(), 41);
        assert_eq!(&p.data()[16..21], b"inner");
        assert!(p.push_front(HEADROOM).is_err());
        assert!(p.push_back(BUF_CAPACITY).is_err());
        p.pull_front(16);
        p.truncate(5);
        assert_eq!(p.data(), b"inner");
        p.pull_front(100);
        assert!(p.is_empty());
    }

    #[test]
    fn pool_recycles_without_allocating() {
        let mut pool = PacketPool::with_capacity(4);
        let mut v: Vec<Packet> = (0..4).map(|_| pool.get()).collect();
        assert_eq!(pool.allocated(), 4);
        v[0].set_data(b"x").unwrap();
        pool.put_all(&mut v);
        let p = pool.get();
        assert!(p.is_empty(), "a recycled buffer comes back reset");
        assert_eq!(pool.allocated(), 4);
    }
}
