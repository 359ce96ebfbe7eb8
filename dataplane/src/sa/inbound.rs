//! An inbound SA: what a worker needs to open ESP packets of one SPI.

use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroize;

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
pub struct InboundSa {
    pub spi: u32,
    pub tunnel: TunnelId,
    pub owner: WorkerId,
    pub(crate) cipher: AesGcm,
    pub(crate) salt: [u8; 4],
    pub(crate) replay: ReplayWindow,
    esn: bool,
    allowed_sources: Box<[IpPrefix]>,
    pub limits: HardLimits,
    pub counters: SaCounters,
}

impl InboundSa {
    /// The SA, shared as the tables hold it. Its key is expanded once the
    /// SA is in its place on the heap, so no copy of it is left behind on
    /// the stack (see `crypto`).
    pub fn new(spec: InboundSpec<'_>) -> Result<Arc<InboundSa>, CryptoError> {
        let mut sa = Arc::new(InboundSa {
            spi: spec.spi,
            tunnel: spec.tunnel,
            owner: spec.owner,
            cipher: AesGcm::unkeyed(spec.key.len())?,
            salt: spec.salt,
            replay: ReplayWindow::new(spec.replay_window, spec.esn),
            esn: spec.esn,
            allowed_sources: spec.allowed_sources.into_boxed_slice(),
            limits: spec.limits,
            counters: SaCounters::default(),
        });
        keyed_in_place(&mut sa, |s| &mut s.cipher, spec.key)?;
        Ok(sa)
    }

    /// Asks the cache for what opening a packet reads behind this SA's
    /// own lines: the key, the replay bitmap, the allowed sources. The
    /// worker calls it for a whole burst before opening any packet.
    #[inline]
    pub fn prefetch_state(&self) {
        self.cipher.prefetch_key();
        self.replay.prefetch();
        crate::prefetch::prefetch(self.allowed_sources.as_ptr());
    }

    /// The inner-source policy check after decryption (RFC 4301 5.2): a
    /// client may only send from inside its own traffic selectors.
    #[inline]
    pub fn allows_source(&self, src: IpAddr) -> bool {
        self.allowed_sources.iter().any(|p| p.contains(src))
    }

    pub fn allowed_sources(&self) -> &[IpPrefix] {
        &self.allowed_sources
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
