//! ESP tunnel mode (RFC 4303) with AES-GCM (RFC 4106), in place on packet
//! buffers: `seal` wraps an inner IP packet, `open` unwraps one.
//!
//! Layout of what both produce/consume (the UDP or IP header around it is the
//! port's business):
//!
//! ```text
//! | SPI (4) | seq low (4) | IV (8) | inner packet | pad | pad len | next hdr | ICV (16) |
//!                                  \_________________ encrypted _________________/
//! ```
//! nonce = salt (4, from the keying material) || IV; AAD = SPI || seq low, or
//! SPI || seq high || seq low with extended sequence numbers (RFC 4106 5).

mod open;
mod seal;

pub use open::{open, Opened};
pub use seal::seal;

/// ESP header: SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// Explicit IV carried in each packet (RFC 4106 3.1).
pub const IV_LEN: usize = 8;
/// Integrity check value: the full 16-byte GCM tag.
pub const ICV_LEN: usize = 16;
/// Bytes seal adds in front of the inner packet.
pub const FRONT_OVERHEAD: usize = HEADER_LEN + IV_LEN;
/// Most bytes seal adds behind it: padding to 4, pad length, next header, ICV.
pub const MAX_BACK_OVERHEAD: usize = 3 + 2 + ICV_LEN;

/// Next-header values of inner packets (IANA protocol numbers).
pub mod next_header {
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 41;
    /// A dummy packet for traffic-flow confidentiality (RFC 4303 2.6).
    pub const NONE: u8 = 59;
    /// esprit's control messages (the epoch ping and pong, docs/ping.md):
    /// 253 is reserved for experimentation (RFC 3692), so no real inner
    /// protocol is ever mistaken for one.
    pub const CONTROL: u8 = 253;
}

#[inline]
fn nonce(salt: &[u8; 4], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    n
}

/// Builds the AAD into `buf` and returns the used part.
#[inline]
fn aad(buf: &mut [u8; 12], spi: u32, seq: u64, esn: bool) -> &[u8] {
    buf[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        buf[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        buf[8..].copy_from_slice(&(seq as u32).to_be_bytes());
        &buf[..]
    } else {
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        &buf[..8]
    }
}

#[cfg(test)]
mod tests;
