//! IPv4 fragmentation of an inner packet without DF that does not fit its
//! tunnel (RFC 791 §3.2, "fragmentation" procedure): split before sealing,
//! so each piece travels in its own ESP packet and the far end's host
//! reassembles (RFC 4459 §3.1: fragment the inner packet, not the outer;
//! the gateway then never reassembles anything).

use crate::packet::{Packet, PacketPool};
use crate::wire::checksum::checksum;

const HEADER: usize = 20;
const MF: u16 = 0x2000;

/// Splits the IPv4 packet `p` into fragments of at most `max` bytes: `p`
/// becomes the first and the others are pushed to `out`, buffers from
/// `pool`. Returns false, `p` untouched, when it cannot: not IPv4, DF set,
/// header options (their copy rules are not worth it here), bad lengths,
/// or `max` too small for 8 bytes of data.
pub fn fragment_v4(
    p: &mut Packet,
    max: usize,
    pool: &mut PacketPool,
    out: &mut Vec<Packet>,
) -> bool {
    let d = p.data();
    let (Some(&vihl), Some(flags)) = (d.first(), d.get(6..8)) else {
        return false;
    };
    let Some(total) = d
        .get(2..4)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return false;
    };
    let flags = u16::from_be_bytes([flags[0], flags[1]]);
    let chunk = max.saturating_sub(HEADER) & !7;
    if vihl != 0x45 || flags & 0x4000 != 0 || total > d.len() || total <= max || chunk == 0 {
        return false;
    }
    let offset = flags & 0x1fff;
    let last_mf = flags & MF;
    let mut header = [0u8; HEADER];
    header.copy_from_slice(&d[..HEADER]);
    let payload = total - HEADER;
    let first_out = out.len();
    let mut at = chunk;
    while at < payload {
        let len = chunk.min(payload - at);
        let mut f = pool.get();
        let more = if at + len < payload { MF } else { last_mf };
        let fits = f.set_data(&header).is_ok()
            && f.push_back(len)
                .map(|b| b.copy_from_slice(&p.data()[HEADER + at..HEADER + at + len]))
                .is_ok();
        if !fits {
            pool.put(f);
            for f in out.drain(first_out..) {
                pool.put(f);
            }
            return false;
        }
        f.meta = p.meta;
        write_fragment_fields(f.data_mut(), HEADER + len, offset + (at / 8) as u16, more);
        out.push(f);
        at += len;
    }
    p.truncate(HEADER + chunk);
    write_fragment_fields(p.data_mut(), HEADER + chunk, offset, MF);
    true
}

/// Sets total length, fragment offset and MF, and the header checksum.
fn write_fragment_fields(ip: &mut [u8], total: usize, offset: u16, mf: u16) {
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&((offset & 0x1fff) | mf).to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..HEADER]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ipv4_udp;
    use std::net::Ipv4Addr;

    fn no_df(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len - 28).map(|i| i as u8).collect();
        let mut p = ipv4_udp(
            Ipv4Addr::new(10, 1, 0, 9),
            Ipv4Addr::new(10, 2, 0, 5),
            (1, 2),
            &payload,
        );
        p[6] &= !0x40;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// Puts fragments back together by offset (what the far host does).
    fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for f in frags {
            assert_eq!(checksum(&f[..20]), 0, "header checksum");
            let off = usize::from(u16::from_be_bytes([f[6], f[7]]) & 0x1fff) * 8;
            let total = usize::from(u16::from_be_bytes([f[2], f[3]]));
            assert_eq!(total, f.len());
            assert_eq!(off, body.len(), "in order, no gap");
            body.extend_from_slice(&f[20..]);
        }
        let last = frags.last().unwrap();
        assert_eq!(last[6] & 0x20, 0, "the last has MF clear");
        body
    }

    #[test]
    fn a_large_packet_splits_into_fitting_fragments_that_reassemble() {
        let orig = no_df(1900);
        let mut p = Packet::new();
        p.set_data(&orig).unwrap();
        let mut pool = PacketPool::with_capacity(4);
        let mut rest = Vec::new();
        assert!(fragment_v4(&mut p, 600, &mut pool, &mut rest));
        let mut all = vec![p.data().to_vec()];
        all.extend(rest.iter().map(|f| f.data().to_vec()));
        // 1880 bytes of data: 3 x 576 + 152.
        assert_eq!(all.len(), 4);
        for f in &all {
            assert!(f.len() <= 600, "{}", f.len());
            assert_eq!(&f[12..20], &orig[12..20], "same addresses");
            assert_eq!(&f[4..6], &orig[4..6], "same identification");
        }
        assert_eq!(all[0].len(), 20 + 576, "data a multiple of 8");
        assert_eq!(all[3].len(), 20 + 152);
        assert_eq!(all[0][6] & 0x20, 0x20);
        assert_eq!(reassemble(&all), orig[20..]);
    }

    #[test]
    fn df_small_ipv6_and_options_are_not_fragmented() {
        let mut pool = PacketPool::with_capacity(4);
        let mut rest = Vec::new();
        let mut df = no_df(1900);
        df[6] |= 0x40;
        let mut opts = no_df(1900);
        opts[0] = 0x46;
        for (bytes, max) in [
            (df, 600),
            (no_df(500), 600),
            (no_df(1900), 27),
            (opts, 600),
            (vec![0x60; 1900], 600),
            (vec![], 600),
        ] {
            let mut p = Packet::new();
            p.set_data(&bytes).unwrap();
            assert!(!fragment_v4(&mut p, max, &mut pool, &mut rest));
            assert_eq!(p.data(), &bytes[..]);
        }
        assert!(rest.is_empty());
    }
}
