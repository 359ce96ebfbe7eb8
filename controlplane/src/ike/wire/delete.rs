//! Delete payload (RFC 7296 §3.11).

use super::reader::Reader;
use super::{ParseError, ProtocolId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub protocol: ProtocolId,
    /// SPI size in bytes: 0 for IKE, 4 for ESP/AH.
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Delete of the IKE SA carrying it (§3.11: no SPIs).
    pub fn ike() -> Self {
        Delete {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Delete of ESP SAs by the SPIs the sender uses inbound.
    pub fn esp(spis: &[u32]) -> Self {
        Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "D payload");
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let n = r.u16()?;
        let mut spis = Vec::new();
        for _ in 0..n {
            spis.push(r.take(usize::from(spi_size))?.to_vec());
        }
        if !r.is_empty() {
            return Err(ParseError::BadLength {
                what: "D payload",
                len: body.len(),
            });
        }
        Ok(Delete {
            protocol,
            spi_size,
            spis,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi_size);
        out.extend_from_slice(&(self.spis.len() as u16).to_be_bytes());
        for s in &self.spis {
            out.extend_from_slice(s);
        }
    }

    /// The SPIs as 32-bit values, for ESP/AH deletes.
    pub fn spis_u32(&self) -> impl Iterator<Item = u32> + '_ {
        self.spis
            .iter()
            .filter_map(|s| <[u8; 4]>::try_from(s.as_slice()).ok())
            .map(u32::from_be_bytes)
    }
}
