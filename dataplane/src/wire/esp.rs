//! ESP header view (RFC 4303 section 2) and the trailer found after
//! decryption.

use super::WireError;

mod field {
    use std::ops::Range;
    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
}

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;

/// A view of an ESP packet (header, then the opaque rest).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn spi(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The low 32 bits of the sequence number (the high half is never sent).
    #[inline]
    pub fn sequence_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// IV, encrypted payload and ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_spi(&mut self, v: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_sequence_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }
}

/// The meaning of an ESP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub spi: u32,
    pub sequence_number: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        Ok(Repr {
            spi: p.spi(),
            sequence_number: p.sequence_number(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), WireError> {
        p.check_len()?;
        p.set_spi(self.spi);
        p.set_sequence_number(self.sequence_number);
        Ok(())
    }
}

/// The ESP trailer at the end of a decrypted payload (RFC 4303 2.4-2.6):
/// `inner || padding || pad length || next header`. Returns the inner
/// length and the next header, after checking the padding is 1, 2, 3, ...
#[inline]
pub fn parse_trailer(decrypted: &[u8]) -> Result<(usize, u8), WireError> {
    let n = decrypted.len();
    let [.., pad_len, next_header] = decrypted else {
        return Err(WireError::Truncated);
    };
    let pad_len = *pad_len as usize;
    if pad_len + 2 > n {
        return Err(WireError::Malformed);
    }
    let inner = n - 2 - pad_len;
    let pad = &decrypted[inner..n - 2];
    if pad.iter().enumerate().any(|(i, b)| *b != (i + 1) as u8) {
        return Err(WireError::Malformed);
    }
    Ok((inner, *next_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &[u8] = include_bytes!("../../tests/fixtures/esp_in_udp.bin");

    #[test]
    fn captured_header_decodes_and_re_emits() {
        let esp = &CAPTURED[28..];
        let p = Packet::new_checked(esp).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_ne!(r.spi, 0, "not the non-ESP marker");
        assert!(r.sequence_number >= 1);
        let mut out = esp.to_vec();
        out[..8].fill(0);
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, esp);
    }

    #[test]
    fn trailer_is_checked() {
        assert_eq!(parse_trailer(&[9, 9, 1, 2, 2, 4]), Ok((2, 4)));
        assert_eq!(parse_trailer(&[9, 0, 41]), Ok((1, 41)));
        assert_eq!(parse_trailer(&[9, 1, 3, 2, 4]), Err(WireError::Malformed));
        assert_eq!(parse_trailer(&[5, 4]), Err(WireError::Malformed));
        assert_eq!(parse_trailer(&[4]), Err(WireError::Truncated));
    }
}
