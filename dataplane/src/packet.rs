//! Packet buffers with headroom and tailroom, recycled through a per-worker
//! pool so the fast path never allocates.
//!
//! ESP seal grows a packet at both ends (outer header, ESP header and IV in
//! front; padding, trailer and ICV behind), so every buffer keeps
//! [`HEADROOM`] bytes free in front of the data when it is (re)filled.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

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

/// One packet: a fixed-size heap buffer and the window of valid bytes in it.
pub struct Packet {
    buf: Box<[u8; BUF_CAPACITY]>,
    start: usize,
    end: usize,
    pub meta: Meta,
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
            buf: Box::new([0u8; BUF_CAPACITY]),
            start: HEADROOM,
            end: HEADROOM,
            meta: Meta::default(),
        }
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
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
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
        &mut self.buf[HEADROOM..]
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
        Ok(&mut self.buf[self.start..self.start + n])
    }

    /// Grows the packet by `n` bytes at the end; returns the new end bytes.
    #[inline]
    pub fn push_back(&mut self, n: usize) -> Result<&mut [u8], NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom { wanted: n });
        }
        let old = self.end;
        self.end += n;
        Ok(&mut self.buf[old..self.end])
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

/// A worker's free list of buffers. Buffers are allocated up front; when the
/// list runs dry a new one is allocated and counted, so a leak shows up in
/// the stats instead of as a stall.
pub struct PacketPool {
    free: Vec<Packet>,
    allocated: u64,
}

impl PacketPool {
    /// A pool with `n` buffers ready.
    pub fn with_capacity(n: usize) -> PacketPool {
        PacketPool {
            free: (0..n).map(|_| Packet::new()).collect(),
            allocated: n as u64,
        }
    }

    /// A reset buffer from the free list (or a new one).
    #[inline]
    pub fn get(&mut self) -> Packet {
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

    /// Returns a buffer to the free list.
    #[inline]
    pub fn put(&mut self, p: Packet) {
        self.free.push(p);
    }

    /// Returns all buffers in `pkts` to the free list.
    #[inline]
    pub fn put_all(&mut self, pkts: &mut Vec<Packet>) {
        self.free.append(pkts);
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
