//! NAT detection hashes (RFC 7296 §2.23): SHA-1(SPIi | SPIr | IP | Port).

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

pub fn nat_detection_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}
