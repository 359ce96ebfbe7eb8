//! The IKE header (RFC 7296 §3.1).

use super::reader::Reader;
use super::{ExchangeType, ParseError, PayloadType};

/// Length of the fixed IKE header.
pub const HEADER_LEN: usize = 28;

/// Where the header's Length field starts.
const LENGTH_AT: usize = 24;

/// Room a message's buffer starts with: an IKE_AUTH or CREATE_CHILD_SA
/// fits, so building one does not grow (and copy) its buffer.
pub const MESSAGE_ROOM: usize = 512;

/// Header flags (RFC 7296 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;

    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }
}

/// The parsed IKE header. `next_payload` and `length` are recomputed on emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    /// Major version in the high nibble (2), minor in the low one.
    pub version: u8,
    pub exchange: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// IKEv2.0 header with zero `next_payload`/`length`, to be filled by emit.
    pub fn new(spi_i: u64, spi_r: u64, exchange: ExchangeType, flags: u8, message_id: u32) -> Self {
        Header {
            spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: Flags(flags),
            message_id,
            length: 0,
        }
    }

    /// Parses the first 28 bytes; rejects major versions other than 2 (§2.5).
    pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
        let mut r = Reader::new(buf, "IKE header");
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next_payload = PayloadType(r.u8()?);
        let version = r.u8()?;
        if version >> 4 != 2 {
            return Err(ParseError::InvalidMajorVersion(version >> 4));
        }
        Ok(Header {
            spi_i,
            spi_r,
            next_payload,
            version,
            exchange: ExchangeType(r.u8()?),
            flags: Flags(r.u8()?),
            message_id: r.u32()?,
            length: r.u32()?,
        })
    }

    /// Writes `length` into the Length field of the header that starts
    /// `msg`: messages are written header first, and their length is known
    /// last.
    pub fn patch_length(msg: &mut [u8], length: usize) {
        if let Some(field) = msg.get_mut(LENGTH_AT..HEADER_LEN) {
            field.copy_from_slice(&(length as u32).to_be_bytes());
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}
