//! Fetching SA state a few packets ahead. With thousands of tunnels every
//! packet meets a cold SA; while packet i is opened or sealed, the worker
//! asks for the SA of a packet a few places on, so its misses overlap with
//! the work in between. Only a few SAs are in flight at once: passes over
//! a whole burst (each SA of 32 packets at once) overran the core's
//! line-fill buffers. A clear packet's route, found while asking for its
//! SA, is kept for the packet's turn instead of being looked up twice
//! (at 100k tunnels the two lookups were 7.5% of the worker's time in a
//! profile). Measured on a Xeon VM (2 MiB L2), the benchmark's
//! round robin at 64 B, interleaved rounds, Mpps:
//!
//! - opening, against whole-burst passes: 5k tunnels 7.1-7.5 -> 8.3,
//!   10k 7.0-7.3 -> 8.9-9.1, 100k 5.5-6.1 -> 6.3-6.6;
//! - sealing, against nothing (passes were slower still): 20k 7.5 -> 6.7,
//!   40k even, 60k 5.0 -> 6.2, 100k 4.7 -> 5.7. That was before the route
//!   found ahead was handed to the packet; since, sealing looks ahead at
//!   any table size (2026-12-07, 3 interleaved rounds against looking
//!   ahead from 40k SAs: the bench's 1k round robin 10.2-11.5 -> 11.6-12.0,
//!   one tunnel 10.5-11.3 -> 11.8-11.9; the lab's round trips at 1k
//!   2.35-2.42 -> 2.92-3.01 M/s, at 10k 2.02-2.11 -> 2.55-2.62);
//! - sealing with the route looked up further ahead than the SA is asked
//!   for, its cells asked for in the plan (2026-12-08, 3 interleaved
//!   rounds): shuffled round robin over 100k tunnels 3.56-3.73 -> 4.89-5.20,
//!   over 1k 8.98-9.42 -> 9.71-10.89; set-up order (whose cells the
//!   prefetchers stream anyway) 7.30-7.71 -> 7.46-7.93. The replay
//!   bitmap and the rest two packets ahead instead of one: no gain; an
//!   ESP packet's SA 5 ahead instead of 3, shuffled opening over 100k:
//!   4.31-4.46 against 4.20-4.52, none either.

use std::net::IpAddr;

use crate::packet::{Encap, Packet};
use crate::sa::{SaTables, TunnelId};
use crate::wire;

/// From this many inbound SAs on, ESP packets look ahead. Below, a few
/// thousand SAs stay in the core's caches (and opening one tunnel's
/// packets lost 4-7% to the look-ahead's own work in the bench). Clear
/// packets always look ahead: the route found ahead is the packet's.
pub(super) const ESP_FROM_SAS: usize = 4096;

/// An ESP packet's SA is asked for this many packets ahead, and the state
/// behind it (replay bitmap, allowed sources, an AES-256 key's last line)
/// one packet ahead, once the SA has arrived to say where that state is
/// (clear packets' outbound SAs too). 2, 3 and 4 measured alike.
const ESP_AHEAD: usize = 3;
const ESP_STATE_AHEAD: usize = 1;
/// A clear packet's outbound SA, key included (2, 3 and 6 measured alike
/// when the route was looked up at this distance too).
const CLEAR_AHEAD: usize = 3;
/// A clear packet is routed this many packets ahead, and the outbound
/// table's cell for its tunnel asked for; its route's cell was asked for
/// when the burst was planned. Each lookup then finds its line in the
/// cache: routed at `CLEAR_AHEAD`, the route's cell and the table's were
/// two misses in a row for every packet whose tunnel did not follow the
/// last one's in memory.
const ROUTE_AHEAD: usize = 6;

/// What a packet of the burst will need.
#[derive(Clone, Copy)]
enum Need {
    Nothing,
    Inbound(u32),
    Outbound(IpAddr),
    /// An outbound packet whose route the look-ahead already found: the
    /// packet's own turn takes the tunnel instead of looking it up again.
    Routed(TunnelId),
}

/// One burst's needs, in packet order (reused from burst to burst).
#[derive(Default)]
pub(super) struct LookAhead {
    needs: Vec<Need>,
}

impl LookAhead {
    pub(super) fn with_capacity(n: usize) -> Self {
        LookAhead {
            needs: Vec::with_capacity(n),
        }
    }

    /// Asks for every ESP packet's SA slot and every clear packet's route
    /// cell (one line each: cheap at any table size); then notes what each
    /// packet of `rx` will need (clear packets always, ESP packets when the
    /// table is large enough for it to pay) and asks for what the first
    /// packets need.
    pub(super) fn plan(&mut self, t: &SaTables, rx: &[Packet]) {
        self.needs.clear();
        let inbound = t.inbound.len() >= ESP_FROM_SAS;
        let mut clear = false;
        for p in rx {
            let need = match p.meta.encap {
                Encap::Inner => {
                    clear = true;
                    wire::ip_src_dst(p.data()).map_or(Need::Nothing, |(_, dst)| {
                        t.routes.prefetch(dst);
                        Need::Outbound(dst)
                    })
                }
                _ => esp_spi(p).map_or(Need::Nothing, |spi| {
                    t.prefetch_inbound(spi);
                    if inbound {
                        Need::Inbound(spi)
                    } else {
                        Need::Nothing
                    }
                }),
            };
            self.needs.push(need);
        }
        // Nothing to look ahead for: `before` then returns at once.
        if !inbound && !clear {
            self.needs.clear();
            return;
        }
        for i in 0..ESP_AHEAD.max(ROUTE_AHEAD) {
            self.ask(t, i, i < ESP_STATE_AHEAD);
        }
    }

    /// Before packet `i` is handled: asks for what the packets ahead need.
    #[inline]
    pub(super) fn before(&mut self, t: &SaTables, i: usize) {
        if self.needs.is_empty() {
            return;
        }
        self.route_ahead(t, i + ROUTE_AHEAD);
        self.outbound_ahead(t, i + CLEAR_AHEAD);
        if let Some(Need::Inbound(spi)) = self.needs.get(i + ESP_AHEAD) {
            if let Some(sa) = t.inbound_sa(*spi) {
                sa.prefetch();
            }
        }
        self.state_ahead(t, i + ESP_STATE_AHEAD);
    }

    /// Asks for the state behind packet `j`'s SA, which was asked for
    /// earlier and has had time to arrive.
    #[inline]
    fn state_ahead(&self, t: &SaTables, j: usize) {
        match self.needs.get(j) {
            Some(Need::Inbound(spi)) => {
                if let Some(sa) = t.inbound_sa(*spi) {
                    sa.prefetch_state();
                }
            }
            Some(Need::Routed(tunnel)) => {
                if let Some(sa) = t.outbound_sa(*tunnel) {
                    sa.prefetch_state();
                }
            }
            _ => {}
        }
    }

    /// The tunnel the look-ahead found for packet `i`, if it routed it.
    #[inline]
    pub(super) fn routed(&self, i: usize) -> Option<TunnelId> {
        match self.needs.get(i) {
            Some(Need::Routed(tunnel)) => Some(*tunnel),
            _ => None,
        }
    }

    /// For the first packets, before the loop: the SA, and its state too
    /// when `state` (these have no packets before them to overlap with).
    fn ask(&mut self, t: &SaTables, i: usize, state: bool) {
        match self.needs.get(i) {
            Some(Need::Outbound(_)) if i < ROUTE_AHEAD => {
                self.route_ahead(t, i);
                if i < CLEAR_AHEAD {
                    self.outbound_ahead(t, i);
                }
            }
            Some(Need::Inbound(spi)) if i < ESP_AHEAD => {
                if let Some(sa) = t.inbound_sa(*spi) {
                    sa.prefetch();
                }
            }
            _ => {}
        }
        if state {
            self.state_ahead(t, i);
        }
    }

    /// Routes clear packet `j` and asks for its tunnel's cell in the
    /// outbound table, keeping the tunnel for the packet's turn.
    #[inline]
    fn route_ahead(&mut self, t: &SaTables, j: usize) {
        let Some(need) = self.needs.get_mut(j) else {
            return;
        };
        let Need::Outbound(dst) = *need else {
            return;
        };
        if let Some(tunnel) = t.routes.lookup(dst) {
            t.prefetch_outbound_cell(tunnel);
            *need = Need::Routed(tunnel);
        }
    }

    /// Asks for routed packet `j`'s outbound SA, key included.
    #[inline]
    fn outbound_ahead(&self, t: &SaTables, j: usize) {
        if let Some(Need::Routed(tunnel)) = self.needs.get(j) {
            if let Some(sa) = t.outbound_sa(*tunnel) {
                sa.prefetch();
            }
        }
    }
}

/// The SPI an outside packet would have. A non-ESP marker's zero SPI
/// finds no SA: harmless for a prefetch.
fn esp_spi(p: &Packet) -> Option<u32> {
    if !matches!(p.meta.encap, Encap::EspInUdp | Encap::RawEsp) {
        return None;
    }
    let b = p.data().get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
