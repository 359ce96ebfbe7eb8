//! Fetching the clients' SA state a few packets ahead, as the gateway's
//! worker does (`dataplane/src/worker/look_ahead.rs`). With 100,000
//! clients every seal and open meets a cold SA. Passes over a whole burst
//! (32 SAs of 11 lines each, asked for at once) stalled on the core's
//! line-fill buffers and were most of the generator's own time in a
//! profile; asking a few packets ahead keeps only a few SAs in flight.
//! With few clients everything is in the caches already and the asking
//! only costs, so it is off below `FROM_CLIENTS`.

use std::sync::Arc;

use dataplane::prefetch::prefetch_value;
use dataplane::sa::{InboundSa, OutboundSa};

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

    /// Before the `i`th seal of a burst; `sa_of(j)` is the outbound SA of
    /// the burst's `j`th packet. The AES-NI key is inline in the SA: its
    /// lines, then (an AES-256 key's last line) its state, are all there
    /// is to ask for.
    #[inline]
    pub(super) fn before_seal<'a>(
        self,
        sa_of: impl Fn(usize) -> Option<&'a Arc<OutboundSa>>,
        i: usize,
    ) {
        if !self.on {
            return;
        }
        for j in first(i, AHEAD)..=i + AHEAD {
            if let Some(sa) = sa_of(j) {
                sa.prefetch();
            }
        }
        for j in first(i, STATE_AHEAD)..=i + STATE_AHEAD {
            if let Some(sa) = sa_of(j) {
                sa.prefetch_state();
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
