//! What the SA handlers share with the endpoint: entropy, the SPI
//! allocator, the address pools and the output queues.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;

use rand::RngCore;

use super::policy::PoolName;
use super::{AddressPool, Event, PeerPolicy, SpiAllocator, Transmit};

pub(crate) struct Io {
    pub rng: Box<dyn RngCore + Send>,
    pub spis: Box<dyn SpiAllocator + Send>,
    /// Address pools by name (`Policy::pool`); `None` names the pool
    /// given to `accept` for a policy without one.
    pub pools: HashMap<Option<PoolName>, AddressPool>,
    /// The IPv6 pools, by the same names.
    pub pools6: HashMap<Option<PoolName>, AddressPool<Ipv6Addr>>,
    pub peer_policy: Option<PeerPolicy>,
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    /// IKE SAs born from a rekey, for the endpoint to adopt.
    pub born: Vec<super::ike_sa::IkeSa>,
    /// IKE SAs whose peer sent INITIAL_CONTACT (RFC 7296 §2.4): older SAs
    /// with the same peer identity are stale.
    pub initial_contact: Vec<super::IkeSaId>,
    /// IKE SAs whose peer just authenticated (or that inherited a peer
    /// identity through a rekey), for the endpoint's identity index.
    pub authenticated: Vec<super::IkeSaId>,
    /// After a CHILD SA rekey we started, leave the old pair for the
    /// caller to delete (`delete_child_sa`): esprit's epochs keep it until
    /// the peer has moved to the new one (docs/ping.md).
    pub defer_rekeyed_delete: bool,
    /// IKE SAs (by our SPI) whose peer may not rekey CHILD SAs: esprit
    /// clients with `ignore_peer_rekey` keep their own rhythm.
    pub refuse_child_rekeys: std::collections::HashSet<u64>,
    /// CHILD SAs a peer may have on one IKE SA (rekeys: twice as many).
    pub child_sa_limit: usize,
    /// `[ike] unique = "replace"`: a peer that authenticates anew has its
    /// identity's older IKE SAs deleted.
    pub unique_replace: bool,
    /// Responder SAs just authenticated under `unique_replace` without
    /// INITIAL_CONTACT: the endpoint deletes their identity's older SAs.
    pub replacing: Vec<super::IkeSaId>,
    /// Initiator: send INITIAL_CONTACT in IKE_AUTH (RFC 7296 §2.4); off
    /// only to play a client that omits it.
    pub send_initial_contact: bool,
}

impl Io {
    pub fn random_spi(&mut self) -> u64 {
        loop {
            let s = self.rng.next_u64();
            if s != 0 {
                return s;
            }
        }
    }

    /// 32-byte nonces: at least half the PRF key size for every PRF we use (§2.10).
    pub fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill_bytes(&mut n);
        n
    }
}
