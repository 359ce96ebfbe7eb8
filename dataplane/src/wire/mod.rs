//! Zero-copy, length-checked views over packet bytes (smoltcp style).
//!
//! PLACEHOLDER: minimal until the full wire module lands; the names below
//! are the contract the rest of the data plane uses.

pub mod esp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A header was truncated or inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated packet")]
    Truncated,
    #[error("malformed header")]
    Malformed,
}

/// Source and destination of an IPv4 or IPv6 packet.
pub fn ip_src_dst(buf: &[u8]) -> Result<(IpAddr, IpAddr), WireError> {
    match buf.first().map(|b| b >> 4) {
        Some(4) if buf.len() >= 20 => {
            let s: [u8; 4] = buf[12..16].try_into().map_err(|_| WireError::Truncated)?;
            let d: [u8; 4] = buf[16..20].try_into().map_err(|_| WireError::Truncated)?;
            Ok((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()))
        }
        Some(6) if buf.len() >= 40 => {
            let s: [u8; 16] = buf[8..24].try_into().map_err(|_| WireError::Truncated)?;
            let d: [u8; 16] = buf[24..40].try_into().map_err(|_| WireError::Truncated)?;
            Ok((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
        }
        Some(4) | Some(6) | None => Err(WireError::Truncated),
        Some(_) => Err(WireError::Malformed),
    }
}
