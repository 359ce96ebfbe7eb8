//! An inbound SA: what a worker needs to open ESP packets of one SPI.

use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroize;

use super::allowed_sources::AllowedSources;
use super::counters::{HardLimits, SaCounters};
use super::prefix::IpPrefix;
use super::replay::ReplayWindow;
use super::sa_key::keyed_in_place;
use super::{TunnelId, WorkerId};
use crate::crypto::{AesGcm, CryptoError};

/// What the control plane (or a manual config) says about an inbound SA.
pub struct InboundSpec<'a> {
    pub spi: u32,
    pub tunnel: TunnelId,
    pub owner: WorkerId,
    /// AES key, 16 or 32 bytes.
    pub key: &'a [u8],
    /// The 4 bytes of keying material after the key (RFC 4106 8.1).
    pub salt: [u8; 4],
    pub esn: bool,
    /// Anti-replay window in packets; 0 turns the check off.
    pub replay_window: u32,
    /// Inner source addresses the peer may use (its traffic selectors).
    pub allowed_sources: Vec<IpPrefix>,
    pub limits: HardLimits,
}

/// Immutable keys and policy plus owner-written state (replay, counters).
///
/// Laid out in order (`repr(C)`) with the key last, so the lines a packet
/// never reads (an AES-128 key's spare round keys) end the value and
/// [`InboundSa::prefetch`] leaves them out.
#[repr(C)]
pub struct InboundSa {
    pub spi: u32,
    pub tunnel: TunnelId,
    pub(crate) salt: [u8; 4],
    pub owner: WorkerId,
    esn: bool,
    pub counters: SaCounters,
    pub limits: HardLimits,
    pub(crate) replay: ReplayWindow,
    allowed_sources: AllowedSources,
    pub(crate) cipher: AesGcm,
}

const _: () = assert!(
    std::mem::offset_of!(InboundSa, cipher) + size_of::<AesGcm>() == size_of::<InboundSa>(),
    "the key ends the SA"
);

impl InboundSa {
    /// The SA on the heap, shared. Its key is expanded once the SA is in
    /// its place, so no copy of it is left behind on the stack (see
    /// `crypto`). A table builds its SAs in its own cells instead
    /// ([`SaTables::build_inbound`](super::SaTables::build_inbound)).
    pub fn new(spec: InboundSpec<'_>) -> Result<Arc<InboundSa>, CryptoError> {
        let key = spec.key;
        let mut sa = Arc::new(Self::unkeyed(spec)?);
        keyed_in_place(&mut sa, |s| &mut s.cipher, key)?;
        Ok(sa)
    }

    /// Builds the SA at `place` and keys it there, as [`InboundSa::new`]
    /// does in its `Arc`. On an error `place` is left uninitialized.
    ///
    /// # Safety
    /// `place` is valid, aligned, uninitialized room for an `InboundSa`
    /// that nothing else reads or writes until this returns.
    pub(super) unsafe fn build_at(
        place: *mut InboundSa,
        spec: InboundSpec<'_>,
    ) -> Result<(), CryptoError> {
        let key = spec.key;
        // SAFETY: the caller's promise.
        let sa = unsafe {
            place.write(Self::unkeyed(spec)?);
            &mut *place
        };
        if let Err(e) = sa.cipher.set_key(key) {
            // SAFETY: written just above and not handed out.
            unsafe { std::ptr::drop_in_place(place) };
            return Err(e);
        }
        Ok(())
    }

    /// Everything but the key schedule, which stays zero until keyed in place.
    fn unkeyed(spec: InboundSpec<'_>) -> Result<InboundSa, CryptoError> {
        Ok(InboundSa {
            spi: spec.spi,
            tunnel: spec.tunnel,
            owner: spec.owner,
            cipher: AesGcm::unkeyed(spec.key.len())?,
            salt: spec.salt,
            replay: ReplayWindow::new(spec.replay_window, spec.esn),
            esn: spec.esn,
            allowed_sources: AllowedSources::new(spec.allowed_sources),
            limits: spec.limits,
            counters: SaCounters::default(),
        })
    }

    /// Asks the cache for the SA's own lines, key included, but not the
    /// last round keys, which an AES-128 key never reads: leaving them out
    /// gained 3-4% opening round robin over 100k tunnels. The length is a
    /// constant: learning the key's would mean waiting for a cold line.
    /// [`InboundSa::prefetch_state`] asks for them if the key uses them.
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::prefetch_bytes(self, size_of::<Self>() - AesGcm::SPARE_TAIL);
    }

    /// Asks the cache for what opening a packet reads beyond
    /// [`InboundSa::prefetch`]: the replay bitmap's next line, any further
    /// allowed sources, an AES-256 key's last round keys (or a portable
    /// key). The SA says where and whether, so ask once its lines have come.
    #[inline]
    pub fn prefetch_state(&self) {
        self.replay.prefetch();
        self.allowed_sources.prefetch();
        self.cipher.prefetch_rest();
    }

    /// The inner-source policy check after decryption (RFC 4301 5.2): a
    /// client may only send from inside its own traffic selectors.
    #[inline]
    pub fn allows_source(&self, src: IpAddr) -> bool {
        self.allowed_sources.allows(src)
    }

    /// Whether the SA uses extended sequence numbers.
    #[inline]
    pub fn replay_esn(&self) -> bool {
        self.esn
    }

    /// Highest sequence number received.
    pub fn highest_seq(&self) -> u64 {
        self.replay.top()
    }
}

impl Drop for InboundSa {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("tunnel", &self.tunnel)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}
