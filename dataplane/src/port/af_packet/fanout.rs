//! PACKET_FANOUT with a classic BPF demux: the sockets of one interface
//! form a group, and each ESP packet goes to the socket of the worker that
//! owns its SA ([`crate::port::steering::steer_worker`] of the SPI), as the
//! SO_REUSEPORT program does for the UDP port. Everything else (ARP, ICMP,
//! IKE on 500, the non-ESP marker) goes to socket 0. IPv6 packets with
//! extension headers go to socket 0 too (and are handed off).
//!
//! The fanout program runs on received packets before the packet socket
//! pushes the MAC header back, so offsets are from the IP header and the
//! EtherType comes from the `skb->protocol` ancillary load.

use crate::port::steering::SPI_STEERING_MASK;

pub const PACKET_FANOUT: i32 = 18;
pub const PACKET_FANOUT_DATA: i32 = 22;
pub const PACKET_FANOUT_CBPF: u32 = 6;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL` (linux/filter.h).
const ANC_PROTOCOL: u32 = (-0x1000i32) as u32;

fn op(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// For IPv4 and IPv6 (no extension headers): `udp to nat_t_port ? SPI at
/// udp+8 : esp ? SPI at the IP payload : 0`, masked and taken modulo
/// `n_workers` (the kernel takes it modulo the group size again).
pub fn fanout_program(nat_t_port: u16, n_workers: usize) -> Vec<libc::sock_filter> {
    use libc::{BPF_A, BPF_K, BPF_LD, BPF_LDX, BPF_MOD, BPF_MSH, BPF_RET, BPF_W};
    use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP};
    let n = u32::try_from(n_workers.max(1)).unwrap_or(u32::MAX);
    let port = u32::from(nat_t_port);
    let jeq = |k, jt, jf| op(BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf);
    vec![
        /* 0 */ op(BPF_LD | BPF_H | BPF_ABS, ANC_PROTOCOL, 0, 0),
        /* 1 */ jeq(0x0800, 0, 10), // not IPv4 -> 12
        /* 2 */ op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0), // X = IHL * 4
        /* 3 */ op(BPF_LD | BPF_B | BPF_ABS, 9, 0, 0), // protocol
        /* 4 */ jeq(50, 5, 0), // ESP -> 10
        /* 5 */ jeq(17, 0, 18), // else -> 24
        /* 6 */ op(BPF_LD | BPF_H | BPF_IND, 2, 0, 0), // UDP dst port
        /* 7 */ jeq(port, 0, 16), // -> 24
        /* 8 */ op(BPF_LD | BPF_W | BPF_IND, 8, 0, 0), // SPI after UDP
        /* 9 */ op(BPF_JMP | BPF_JA, 11, 0, 0), // -> 21
        /* 10 */ op(BPF_LD | BPF_W | BPF_IND, 0, 0, 0), // SPI after IPv4
        /* 11 */ op(BPF_JMP | BPF_JA, 9, 0, 0), // -> 21
        /* 12 */ jeq(0x86dd, 0, 11), // not IPv6 either -> 24
        /* 13 */ op(BPF_LD | BPF_B | BPF_ABS, 6, 0, 0), // next header
        /* 14 */ jeq(50, 5, 0), // ESP -> 20
        /* 15 */ jeq(17, 0, 8), // else -> 24
        /* 16 */ op(BPF_LD | BPF_H | BPF_ABS, 42, 0, 0), // UDP dst port
        /* 17 */ jeq(port, 0, 6), // -> 24
        /* 18 */ op(BPF_LD | BPF_W | BPF_ABS, 48, 0, 0), // SPI after UDP
        /* 19 */ op(BPF_JMP | BPF_JA, 1, 0, 0), // -> 21
        /* 20 */ op(BPF_LD | BPF_W | BPF_ABS, 40, 0, 0), // SPI after IPv6
        /* 21 */ op(BPF_ALU | BPF_AND | BPF_K, SPI_STEERING_MASK, 0, 0),
        /* 22 */ op(BPF_ALU | BPF_MOD | BPF_K, n, 0, 0),
        /* 23 */ op(BPF_RET | BPF_A, 0, 0, 0),
        /* 24 */ op(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program_and_the_ends_return() {
        let p = fanout_program(4500, 4);
        for (i, ins) in p.iter().enumerate() {
            let class = u32::from(ins.code) & 0x07;
            if class == libc::BPF_JMP {
                let ja = u32::from(ins.code) & 0xf0 == libc::BPF_JA;
                let targets = if ja {
                    vec![i + 1 + ins.k as usize]
                } else {
                    vec![i + 1 + ins.jt as usize, i + 1 + ins.jf as usize]
                };
                assert!(targets.iter().all(|&t| t < p.len()), "jump at {i}");
            }
        }
        let ret = |i: usize| u32::from(p[i].code) & 0x07 == libc::BPF_RET;
        assert!(ret(23) && ret(24) && p[24].k == 0);
    }
}
