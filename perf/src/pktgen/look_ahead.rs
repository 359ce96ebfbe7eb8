//! Fetching the clients' SA state a few packets ahead, as the gateway's
//! worker does (`dataplane/src/worker/look_ahead.rs`). With 100,000
//! clients every seal and open meets a cold SA. Passes over a whole burst
//! (32 SAs of 11 lines each, asked for at once) stalled on the core's
//! line-fill buffers and were most of the generator's own time in a
//! profile; asking a few packets ahead keeps only a few SAs in flight.
//! With few clients everything is in the caches already and the asking
//! only costs, so it is off below `FROM_CLIENTS`. Sealing asks for the
//! client some packets before its SA (2026-12-08, lab round robin over
//! 100k tunnels in a shuffled order, two rounds: 1.27 / 1.34 -> 1.57 /
//! 1.54 M round trips/s, pktgen's user time 0.58 -> 0.45 µs a round trip).

use std::sync::Arc;

use dataplane::prefetch::prefetch_value;
use dataplane::sa::InboundSa;

use super::clients::Client;
use super::receiver::SeqWindow;

/// The client (lane, index) an inbound SPI belongs to, and the SA: during
/// a rekey a client receives on two.
pub(super) type Receiver = (usize, usize, Arc<InboundSa>);

/// From this many clients on (a thread's), the thread looks ahead; the
/// gateway's worker starts at the same number of SAs.
const FROM_CLIENTS: usize = 4096;

/// A packet's SA is asked for this many packets before it is sealed or
/// opened; an inbound SA's state behind it (the replay bitmap) one packet
/// before, once the SA has arrived to say where that state is.
const AHEAD: usize = 3;
const STATE_AHEAD: usize = 1;
/// A client to seal for is asked for this many packets ahead, so that its
/// SA's address is in the cache when the SA is asked for: in a shuffled
/// order the client, then its SA, were two misses in a row.
const CLIENT_AHEAD: usize = 6;

/// Whether one thread looks ahead.
#[derive(Clone, Copy)]
pub(super) struct LookAhead {
    on: bool,
}

impl LookAhead {
    /// For a thread with `clients` clients.
    pub(super) fn for_clients(clients: usize) -> Self {
        LookAhead {
            on: clients >= FROM_CLIENTS,
        }
    }

    /// Before the `i`th seal of a burst; `client_of(j)` is the client of
    /// the burst's `j`th packet (a place in memory, not yet read). The
    /// AES-NI key is inline in the SA: the client, the SA's lines, then
    /// (an AES-256 key's last line) its state, are all there is to ask for.
    #[inline]
    pub(super) fn before_seal<'a>(self, client_of: impl Fn(usize) -> Option<&'a Client>, i: usize) {
        if !self.on {
            return;
        }
        for j in first(i, CLIENT_AHEAD)..=i + CLIENT_AHEAD {
            if let Some(c) = client_of(j) {
                prefetch_value(c);
            }
        }
        for j in first(i, AHEAD)..=i + AHEAD {
            if let Some(c) = client_of(j) {
                c.outbound.prefetch();
            }
        }
        for j in first(i, STATE_AHEAD)..=i + STATE_AHEAD {
            if let Some(c) = client_of(j) {
                c.outbound.prefetch_state();
            }
        }
    }

    /// Before the `i`th packet of a received burst is opened: the SA and
    /// the client's sequence window of packet `i + AHEAD`, the replay
    /// state of packet `i + STATE_AHEAD`.
    #[inline]
    pub(super) fn before_open(
        self,
        receivers: &[Option<&Receiver>],
        windows: &[Vec<SeqWindow>],
        i: usize,
    ) {
        if !self.on {
            return;
        }
        let at = |j: usize| receivers.get(j).copied().flatten();
        for j in first(i, AHEAD)..=i + AHEAD {
            if let Some((l, c, sa)) = at(j) {
                sa.prefetch();
                if let Some(w) = windows.get(*l).and_then(|w| w.get(*c)) {
                    prefetch_value(w);
                }
            }
        }
        for j in first(i, STATE_AHEAD)..=i + STATE_AHEAD {
            if let Some((_, _, sa)) = at(j) {
                sa.prefetch_state();
            }
        }
    }
}

/// The first packet to ask for before packet `i`: the one `ahead` on, or,
/// before the first packet of a burst, every one up to it (nothing came
/// before them to overlap with).
fn first(i: usize, ahead: usize) -> usize {
    if i == 0 {
        0
    } else {
        i + ahead
    }
}
