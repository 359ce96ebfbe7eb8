//! ESP header view (RFC 4303 section 2). PLACEHOLDER until the wire module lands.

use super::WireError;

/// The fixed ESP header: SPI and sequence number.
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

pub const HEADER_LEN: usize = 8;

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn spi(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn sequence_number(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
}
