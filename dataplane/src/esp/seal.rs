//! Outbound: inner packet -> ESP.

use super::{aad, nonce, FRONT_OVERHEAD, ICV_LEN};
use crate::drop_reason::DropReason;
use crate::packet::Packet;
use crate::sa::OutboundSa;

/// Encapsulates the inner packet in `pkt` (of protocol `next_header`) with
/// `sa`, in place, and addresses it to the SA's peer. Owner worker only.
#[inline]
pub fn seal(sa: &OutboundSa, pkt: &mut Packet, next_header: u8) -> Result<(), DropReason> {
    if sa.limits.reached(&sa.counters) {
        return Err(DropReason::Expired);
    }
    let inner_len = pkt.len();
    // Payload + pad + 2 trailer bytes must end on a 4-byte boundary (RFC 4303 2.4).
    let pad = (4 - (inner_len + 2) % 4) % 4;
    let back = pad + 2 + ICV_LEN;
    if pkt.headroom() < FRONT_OVERHEAD || pkt.tailroom() < back {
        return Err(DropReason::TooBig);
    }
    let seq = sa.next_seq().ok_or(DropReason::SeqExhausted)?;

    let trailer = pkt.push_back(back).map_err(|_| DropReason::TooBig)?;
    // Padding 1, 2, 3 (RFC 4303 2.4), pad length and next header in one
    // 8-byte store (the ICV overwrites the rest): the cipher reads these
    // bytes right away, and a load forwards from one store, not from bytes
    // stored one by one.
    let padding = 0x0003_0201u64 & ((1u64 << (8 * pad)) - 1);
    let t = padding | (pad as u64) << (8 * pad) | u64::from(next_header) << (8 * (pad + 1));
    trailer[..8].copy_from_slice(&t.to_le_bytes());

    let head = pkt
        .push_front(FRONT_OVERHEAD)
        .map_err(|_| DropReason::TooBig)?;
    head[..4].copy_from_slice(&sa.spi.to_be_bytes());
    head[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    // The sequence number is unique per SA, so it serves as the IV (RFC 4106 3.1).
    head[8..16].copy_from_slice(&seq.to_be_bytes());

    let n = nonce(&sa.salt, &seq.to_be_bytes());
    let mut aad_buf = [0u8; 12];
    let aad = aad(&mut aad_buf, sa.spi, seq, sa.esn);
    let data = pkt.data_mut();
    let (body, icv) = data[FRONT_OVERHEAD..].split_at_mut(inner_len + pad + 2);
    let tag = sa.cipher.seal_in_place(&n, aad, body);
    icv.copy_from_slice(&tag);

    sa.counters.add(inner_len);
    pkt.meta.remote = sa.remote();
    pkt.meta.encap = sa.encap;
    Ok(())
}
