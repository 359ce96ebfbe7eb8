use std::net::SocketAddr;

use super::*;
use crate::drop_reason::DropReason;
use crate::packet::{Encap, Packet};
use crate::sa::{HardLimits, InboundSa, InboundSpec, OutboundSa, OutboundSpec};

const KEY: [u8; 16] = [7; 16];
const SALT: [u8; 4] = [1, 2, 3, 4];

fn pair(esn: bool) -> (std::sync::Arc<OutboundSa>, std::sync::Arc<InboundSa>) {
    let out = OutboundSa::new(OutboundSpec {
        spi: 0x0100_0001,
        tunnel: 1,
        owner: 0,
        key: &KEY,
        salt: SALT,
        esn,
        remote: "192.0.2.2:4500".parse::<SocketAddr>().unwrap(),
        encap: Encap::EspInUdp,
        limits: HardLimits::default(),
    })
    .unwrap();
    let inb = InboundSa::new(InboundSpec {
        spi: 0x0100_0001,
        tunnel: 1,
        owner: 0,
        key: &KEY,
        salt: SALT,
        esn,
        replay_window: 1024,
        allowed_sources: vec!["10.2.0.0/16".parse().unwrap()],
        limits: HardLimits::default(),
    })
    .unwrap();
    (out, inb)
}

fn inner(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7) as u8).collect()
}

#[test]
fn seal_then_open_restores_every_length() {
    let (out, inb) = pair(true);
    for len in 0..70 {
        let mut p = Packet::from_slice(&inner(len)).unwrap();
        seal(&out, &mut p, next_header::IPV4).unwrap();
        assert_eq!((p.len() - FRONT_OVERHEAD - ICV_LEN) % 4, 0, "len {len}");
        assert_eq!(p.meta.remote, out.remote());
        if len >= 4 {
            assert_ne!(
                &p.data()[FRONT_OVERHEAD..][..4],
                &inner(len)[..4],
                "encrypted"
            );
        }
        let o = open(&inb, &mut p).unwrap();
        assert_eq!(o.next_header, next_header::IPV4);
        assert_eq!(o.seq, len as u64 + 1);
        assert_eq!(p.data(), &inner(len)[..]);
    }
    assert_eq!(out.counters.packets(), 70);
    assert_eq!(inb.counters.packets(), 70);
    assert_eq!(inb.counters.bytes(), out.counters.bytes());
}

#[test]
fn header_carries_spi_and_sequence() {
    let (out, _) = pair(false);
    let mut p = Packet::from_slice(&inner(20)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    let h = crate::wire::esp::Packet::new_checked(p.data()).unwrap();
    assert_eq!(h.spi(), 0x0100_0001);
    assert_eq!(h.sequence_number(), 1);
}

#[test]
fn any_flipped_bit_fails_authentication_and_leaves_the_window_alone() {
    let (out, inb) = pair(true);
    let mut p = Packet::from_slice(&inner(40)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    let sealed = p.data().to_vec();
    // Every byte after the SPI: seq (AAD), IV (nonce), body, ICV.
    for i in 4..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x10;
        let mut q = Packet::from_slice(&bad).unwrap();
        assert_eq!(open(&inb, &mut q), Err(DropReason::AuthFailed), "byte {i}");
    }
    assert_eq!(inb.highest_seq(), 0, "failed packets never move the window");
    let mut q = Packet::from_slice(&sealed).unwrap();
    assert!(open(&inb, &mut q).is_ok());
}

#[test]
fn replayed_packets_are_refused() {
    let (out, inb) = pair(false);
    let mut p = Packet::from_slice(&inner(10)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    let sealed = p.data().to_vec();
    assert!(open(&inb, &mut Packet::from_slice(&sealed).unwrap()).is_ok());
    assert_eq!(
        open(&inb, &mut Packet::from_slice(&sealed).unwrap()),
        Err(DropReason::Replay)
    );
}

#[test]
fn esn_high_bits_are_authenticated_across_the_wrap() {
    let (out, inb) = pair(true);
    out.set_last_seq(u32::MAX as u64 - 1);
    for _ in 0..4 {
        let mut p = Packet::from_slice(&inner(30)).unwrap();
        seal(&out, &mut p, next_header::IPV6).unwrap();
        let o = open(&inb, &mut p).unwrap();
        assert_eq!(o.next_header, next_header::IPV6);
    }
    assert_eq!(inb.highest_seq(), (1u64 << 32) + 2);
    // A receiver that did not infer the high half would fail to authenticate.
    let (_, fresh) = pair(true);
    let mut p = Packet::from_slice(&inner(30)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    assert_eq!(open(&fresh, &mut p), Err(DropReason::AuthFailed));
}

#[test]
fn sequence_exhaustion_stops_sending() {
    let (out, _) = pair(false);
    out.set_last_seq(u32::MAX as u64 - 1);
    let mut p = Packet::from_slice(&inner(10)).unwrap();
    assert!(seal(&out, &mut p, next_header::IPV4).is_ok());
    let mut p = Packet::from_slice(&inner(10)).unwrap();
    assert_eq!(
        seal(&out, &mut p, next_header::IPV4),
        Err(DropReason::SeqExhausted)
    );
    assert_eq!(
        p.data(),
        &inner(10)[..],
        "a refused packet is left as it was"
    );
    assert_eq!(out.exhausted_drops(), 1);
}

#[test]
fn hard_limits_expire_the_sa() {
    let (_, inb) = pair(false);
    let out = OutboundSa::new(OutboundSpec {
        spi: 0x0100_0001,
        tunnel: 1,
        owner: 0,
        key: &KEY,
        salt: SALT,
        esn: false,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        limits: HardLimits {
            packets: 2,
            bytes: 0,
        },
    })
    .unwrap();
    for _ in 0..2 {
        let mut p = Packet::from_slice(&inner(10)).unwrap();
        seal(&out, &mut p, next_header::IPV4).unwrap();
        open(&inb, &mut p).unwrap();
    }
    let mut p = Packet::from_slice(&inner(10)).unwrap();
    assert_eq!(
        seal(&out, &mut p, next_header::IPV4),
        Err(DropReason::Expired)
    );
}

#[test]
fn truncated_and_misaligned_packets_are_malformed() {
    let (_, inb) = pair(false);
    for len in 0..FRONT_OVERHEAD + 2 + ICV_LEN {
        let mut p = Packet::from_slice(&vec![1u8; len]).unwrap();
        assert_eq!(open(&inb, &mut p), Err(DropReason::Malformed), "len {len}");
    }
    let mut p = Packet::from_slice(&[1u8; FRONT_OVERHEAD + 5 + ICV_LEN]).unwrap();
    assert_eq!(open(&inb, &mut p), Err(DropReason::Malformed));
}

#[test]
fn no_room_means_too_big_not_a_panic() {
    let (out, _) = pair(false);
    let mut p = Packet::new();
    p.push_back(p.tailroom() - 3).unwrap();
    assert_eq!(
        seal(&out, &mut p, next_header::IPV4),
        Err(DropReason::TooBig)
    );
    assert_eq!(out.last_seq(), 0, "no sequence number is burnt");
}

#[test]
fn a_moved_peer_gets_the_same_sa_at_its_new_address() {
    let (out, inb) = pair(true);
    let mut p = Packet::from_slice(&inner(40)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    open(&inb, &mut p).unwrap();
    let moved: SocketAddr = "203.0.113.1:40123".parse().unwrap();
    assert!(out.move_remote(moved));
    assert!(!out.move_remote(moved), "already there");
    let mut p = Packet::from_slice(&inner(40)).unwrap();
    seal(&out, &mut p, next_header::IPV4).unwrap();
    assert_eq!(p.meta.remote, moved);
    // Same key, and the sequence numbers go on: no nonce is reused.
    assert_eq!(open(&inb, &mut p).unwrap().seq, 2);
    assert!(!out.move_remote("[2001:db8::1]:4500".parse().unwrap()));
    assert_eq!(out.remote(), moved);
}
