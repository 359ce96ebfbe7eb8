//! An outbound SA: what a worker needs to seal packets into one tunnel.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use zeroize::Zeroize;

use super::counters::{HardLimits, SaCounters};
use super::sa_key::keyed_in_place;
use super::{TunnelId, WorkerId};
use crate::crypto::{AesGcm, CryptoError};
use crate::packet::Encap;

/// What the control plane (or a manual config) says about an outbound SA.
pub struct OutboundSpec<'a> {
    pub spi: u32,
    pub tunnel: TunnelId,
    pub owner: WorkerId,
    pub key: &'a [u8],
    pub salt: [u8; 4],
    pub esn: bool,
    /// The peer's outer address (port 4500 for ESP-in-UDP, ignored for raw ESP).
    pub remote: SocketAddr,
    pub encap: Encap,
    pub limits: HardLimits,
}

/// Immutable keys and addresses plus the owner-written sequence counter.
///
/// Laid out in order with the key last, as [`InboundSa`](super::InboundSa)
/// is, for [`OutboundSa::prefetch`].
#[repr(C)]
pub struct OutboundSa {
    pub spi: u32,
    pub tunnel: TunnelId,
    pub(crate) salt: [u8; 4],
    pub owner: WorkerId,
    pub esn: bool,
    pub encap: Encap,
    /// Last sequence number used; 0 before the first packet.
    last_seq: AtomicU64,
    /// The peer's IPv4 address and port after its NAT mapping moved
    /// (`MOVED | ip << 16 | port`), or 0.
    moved: AtomicU64,
    /// The peer's address when the SA was made; see [`OutboundSa::remote`].
    remote: SocketAddr,
    pub counters: SaCounters,
    pub limits: HardLimits,
    exhausted: AtomicU64,
    pub(crate) cipher: AesGcm,
}

const _: () = assert!(
    std::mem::offset_of!(OutboundSa, cipher) + size_of::<AesGcm>() == size_of::<OutboundSa>(),
    "the key ends the SA"
);

impl OutboundSa {
    /// The SA, shared as the tables hold it, keyed in its place on the heap
    /// (see [`InboundSa::new`](super::InboundSa::new)).
    pub fn new(spec: OutboundSpec<'_>) -> Result<Arc<OutboundSa>, CryptoError> {
        let mut sa = Arc::new(OutboundSa {
            spi: spec.spi,
            tunnel: spec.tunnel,
            owner: spec.owner,
            cipher: AesGcm::unkeyed(spec.key.len())?,
            salt: spec.salt,
            esn: spec.esn,
            remote: spec.remote,
            moved: AtomicU64::new(0),
            encap: spec.encap,
            last_seq: AtomicU64::new(0),
            limits: spec.limits,
            counters: SaCounters::default(),
            exhausted: AtomicU64::new(0),
        });
        keyed_in_place(&mut sa, |s| &mut s.cipher, spec.key)?;
        Ok(sa)
    }

    /// Asks the cache for the SA's lines, key included (it is inline), but
    /// not the last round keys, as [`InboundSa::prefetch`](super::InboundSa::prefetch)
    /// does; [`OutboundSa::prefetch_state`] asks for them if the key uses them.
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::prefetch_bytes(self, size_of::<Self>() - AesGcm::SPARE_TAIL);
    }

    /// An AES-256 key's last round keys (or a portable key), once the SA's
    /// lines have come to say it is one.
    #[inline]
    pub fn prefetch_state(&self) {
        self.cipher.prefetch_rest();
    }

    /// Takes the next sequence number, or `None` once the space is used up:
    /// a sequence number must never cycle (RFC 4303 3.3.3), so the SA stops
    /// sending until it is rekeyed. Owner worker only.
    #[inline]
    pub fn next_seq(&self) -> Option<u64> {
        let last = self.last_seq.load(Relaxed);
        let max = if self.esn { u64::MAX } else { u32::MAX as u64 };
        if last >= max {
            self.exhausted
                .store(self.exhausted.load(Relaxed) + 1, Relaxed);
            return None;
        }
        self.last_seq.store(last + 1, Relaxed);
        Some(last + 1)
    }

    /// Last sequence number sent.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Relaxed)
    }

    /// Packets refused because the sequence space was used up.
    pub fn exhausted_drops(&self) -> u64 {
        self.exhausted.load(Relaxed)
    }

    /// Where the sealed packets go: the address the SA was made with, or
    /// where the peer's NAT mapping moved to.
    #[inline]
    pub fn remote(&self) -> SocketAddr {
        match self.moved.load(Relaxed) {
            0 => self.remote,
            m => SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from((m >> 16) as u32),
                m as u16,
            )),
        }
    }

    /// The peer now sends from `to` (an authenticated packet of this
    /// tunnel came from there): send there too. The key, the sequence
    /// numbers and everything else stay. IPv4 only (NAT66 is rare);
    /// returns whether the address changed.
    pub fn move_remote(&self, to: SocketAddr) -> bool {
        let SocketAddr::V4(v4) = to else {
            return false;
        };
        if self.remote() == to {
            return false;
        }
        let packed = MOVED | u64::from(u32::from(*v4.ip())) << 16 | u64::from(v4.port());
        self.moved.store(packed, Relaxed);
        true
    }

    /// Test and tool hook: continue numbering after `seq`.
    pub fn set_last_seq(&self, seq: u64) {
        self.last_seq.store(seq, Relaxed);
    }
}

/// Marks `moved` as set (an address and port alone may be all zero).
const MOVED: u64 = 1 << 48;

impl Drop for OutboundSa {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("tunnel", &self.tunnel)
            .field("owner", &self.owner)
            .field("remote", &self.remote())
            .finish_non_exhaustive()
    }
}
