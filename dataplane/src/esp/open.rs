//! Inbound: ESP -> inner packet.

use super::{aad, nonce, FRONT_OVERHEAD, HEADER_LEN, ICV_LEN};
use crate::drop_reason::DropReason;
use crate::packet::Packet;
use crate::sa::replay::ReplayError;
use crate::sa::InboundSa;
use crate::wire::esp as esp_wire;

/// What `open` found behind the ESP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub next_header: u8,
    /// The full (ESN) sequence number of the packet.
    pub seq: u64,
}

/// Authenticates and decrypts the ESP packet in `pkt` with `sa`, in place,
/// leaving only the inner packet. The replay window is checked before and
/// updated only after authentication (RFC 4303 3.4.3). Owner worker only.
#[inline]
pub fn open(sa: &InboundSa, pkt: &mut Packet) -> Result<Opened, DropReason> {
    let data = pkt.data_mut();
    let len = data.len();
    // Smallest valid packet: header, IV, pad length, next header, ICV; the
    // encrypted part is a multiple of 4 (RFC 4303 2.4).
    if len < FRONT_OVERHEAD + 2 + ICV_LEN || !(len - FRONT_OVERHEAD - ICV_LEN).is_multiple_of(4) {
        return Err(DropReason::Malformed);
    }
    let (spi, seq_low) = {
        let h = esp_wire::Packet::new_checked(&data[..HEADER_LEN])
            .map_err(|_| DropReason::Malformed)?;
        (h.spi(), h.sequence_number())
    };
    if sa.limits.reached(&sa.counters) {
        return Err(DropReason::Expired);
    }
    let seq = sa.replay.check(seq_low).map_err(|e| match e {
        ReplayError::Replayed | ReplayError::Zero => DropReason::Replay,
    })?;

    let (head, rest) = data.split_at_mut(FRONT_OVERHEAD);
    let (body, icv) = rest.split_at_mut(len - FRONT_OVERHEAD - ICV_LEN);
    let n = nonce(&sa.salt, &head[HEADER_LEN..FRONT_OVERHEAD]);
    let mut aad_buf = [0u8; 12];
    let aad = aad(&mut aad_buf, spi, seq, sa.replay_esn());
    let mut tag = [0u8; ICV_LEN];
    tag.copy_from_slice(icv);
    sa.cipher
        .open_in_place(&n, aad, body, &tag)
        .map_err(|_| DropReason::AuthFailed)?;
    if !sa.replay.accept(seq) {
        return Err(DropReason::Replay);
    }

    let (inner_len, next_header) =
        esp_wire::parse_trailer(body).map_err(|_| DropReason::Malformed)?;
    sa.counters.add(inner_len);
    pkt.pull_front(FRONT_OVERHEAD);
    pkt.truncate(inner_len);
    Ok(Opened { next_header, seq })
}
