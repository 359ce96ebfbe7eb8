//! Shared fixtures of the IKE tests: the datagrams of the strongSwan capture.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

/// One UDP datagram of `fixtures/strongswan-ikev2-direct.tsv`.
pub struct Datagram {
    pub frame: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The IKE message bytes: as is on port 500, after the non-ESP marker
    /// on 4500; `None` for ESP.
    pub fn ike(&self) -> Option<&[u8]> {
        if self.dst.port() == 500 {
            Some(&self.payload)
        } else {
            controlplane::ike::wire::strip_non_esp_marker(&self.payload)
        }
    }
}

pub fn capture() -> Vec<Datagram> {
    let text = include_str!("../fixtures/strongswan-ikev2-direct.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "bad fixture line {l}");
            let addr = |a: &str, p: &str| {
                SocketAddr::new(a.parse::<IpAddr>().unwrap(), p.parse().unwrap())
            };
            Datagram {
                frame: f[0].parse().unwrap(),
                src: addr(f[1], f[2]),
                dst: addr(f[3], f[4]),
                payload: hex::decode(f[5]).unwrap(),
            }
        })
        .collect()
}

pub fn frame(n: u32) -> Datagram {
    capture().into_iter().find(|d| d.frame == n).unwrap()
}

/// Hex with whitespace allowed, for values copied from charon's dumps.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}
