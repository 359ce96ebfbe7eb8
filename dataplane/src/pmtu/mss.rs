//! TCP MSS clamping: a SYN crossing the tunnel says it can receive at most
//! what fits in the tunnel, so neither end sends segments that ESP would
//! make too big (RFC 9293 §3.7.1; RFC 4459 §3.2 lists this as the usual
//! tunnel remedy). The TCP checksum is patched, not recomputed (RFC 1624).

use crate::wire::{tcp_offset, Fragments};

/// TCP option kinds (RFC 9293 §3.2).
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const FLAG_SYN: u8 = 0x02;

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) in the IP packet `ip`
/// to `max_mss` if it is larger. Anything else (not TCP, not a SYN, a
/// later fragment, IPv6 extension headers, bad lengths) is left alone.
/// Returns whether the packet changed.
pub fn clamp_mss(ip: &mut [u8], max_mss: u16) -> bool {
    let Some(l4) = tcp_offset(ip, Fragments::First) else {
        return false;
    };
    let Some(tcp) = ip.get_mut(l4..) else {
        return false;
    };
    let (Some(&off), Some(&flags)) = (tcp.get(12), tcp.get(13)) else {
        return false;
    };
    if flags & FLAG_SYN == 0 {
        return false;
    }
    let doff = usize::from(off >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < doff {
        let kind = tcp[i];
        match kind {
            OPT_END => return false,
            OPT_NOP => i += 1,
            _ => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > doff {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= max_mss {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let new = patch_checksum(sum, old, max_mss);
                    tcp[16..18].copy_from_slice(&new.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
fn patch_checksum(sum: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{finish, sum};
    use crate::wire::PROTO_TCP;

    /// An IPv4 TCP SYN from 10.1.0.1:40000 to 10.3.0.1:80 with options
    /// NOP, NOP, MSS `mss`, and a correct checksum.
    fn syn_v4(mss: u16, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&48u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 1, 0, 1]);
        p[16..20].copy_from_slice(&[10, 3, 0, 1]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = 7 << 4;
        t[13] = flags;
        t[20..28].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_MSS, 4, 0, 0, OPT_END, 0]);
        t[24..26].copy_from_slice(&mss.to_be_bytes());
        let c = tcp_checksum_v4(&p);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn tcp_checksum_v4(p: &[u8]) -> u16 {
        let tcp = &p[20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, PROTO_TCP]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        let mut t = tcp.to_vec();
        t[16] = 0;
        t[17] = 0;
        finish(sum(&pseudo) + sum(&t))
    }

    #[test]
    fn a_syn_above_the_limit_is_clamped_and_its_checksum_stays_right() {
        let mut p = syn_v4(1460, FLAG_SYN);
        assert!(clamp_mss(&mut p, 1398));
        assert_eq!(u16::from_be_bytes([p[44], p[45]]), 1398);
        assert_eq!(
            u16::from_be_bytes([p[36], p[37]]),
            tcp_checksum_v4(&p),
            "incremental checksum equals a full one"
        );
        // SYN-ACKs too.
        let mut p = syn_v4(9000, FLAG_SYN | 0x10);
        assert!(clamp_mss(&mut p, 1398));
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum_v4(&p));
    }

    #[test]
    fn small_mss_non_syn_and_other_packets_are_untouched() {
        for (mut p, why) in [
            (syn_v4(1200, FLAG_SYN), "MSS already small"),
            (syn_v4(1460, 0x10), "an ACK"),
            (
                {
                    let mut p = syn_v4(1460, FLAG_SYN);
                    p[9] = 17;
                    p
                },
                "UDP",
            ),
            (
                {
                    let mut p = syn_v4(1460, FLAG_SYN);
                    p[7] = 1;
                    p
                },
                "a later fragment",
            ),
        ] {
            let before = p.clone();
            assert!(!clamp_mss(&mut p, 1398), "{why}");
            assert_eq!(p, before, "{why}");
        }
    }

    #[test]
    fn ipv6_syns_are_clamped() {
        let v4 = syn_v4(1440, FLAG_SYN);
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&28u16.to_be_bytes());
        p[6] = PROTO_TCP;
        p[7] = 64;
        p.extend_from_slice(&v4[20..]);
        let before_sum = u16::from_be_bytes([p[56], p[57]]);
        assert!(clamp_mss(&mut p, 1358));
        assert_eq!(u16::from_be_bytes([p[64], p[65]]), 1358);
        assert_eq!(
            u16::from_be_bytes([p[56], p[57]]),
            patch_checksum(before_sum, 1440, 1358)
        );
    }

    #[test]
    fn truncated_and_looping_options_never_panic() {
        let base = syn_v4(1460, FLAG_SYN);
        for n in 0..base.len() {
            let mut p = base[..n].to_vec();
            let _ = clamp_mss(&mut p, 1000);
        }
        let mut p = base.clone();
        p[40..44].copy_from_slice(&[5, 0, 0, 0]); // option length 0
        assert!(!clamp_mss(&mut p, 1000));
        let mut p = base;
        p[32] = 15 << 4; // data offset past the end
        assert!(!clamp_mss(&mut p, 1000));
    }

    #[test]
    fn patch_matches_rfc1624_example() {
        // RFC 1624 §4: HC 0xdd2f, m 0x5555 -> m' 0x3285 gives 0x0000.
        assert_eq!(patch_checksum(0xdd2f, 0x5555, 0x3285), 0x0000);
    }
}
