//! Inbound SPIs chosen by the gateway encode where their SA lives.
//!
//! The SA's destination picks the SPI (RFC 4301 4.1), so esprit makes every
//! inbound SPI `generation << 24 | slot`: the lookup is an array index and one
//! compare, whatever the number of tunnels. The generation changes each time
//! a slot is reused, so a late packet for a deleted SA cannot hit its
//! successor. SPIs 0..=255 are reserved (RFC 4303 2.1): generation 0 is only
//! used by manually keyed SAs, whose SPIs the operator picks (>= 256).

/// Bits of the SPI that index the slot.
pub const SLOT_BITS: u32 = 24;
/// Number of inbound SA slots.
pub const SLOT_COUNT: usize = 1 << SLOT_BITS;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// The slot an SPI indexes.
#[inline]
pub fn slot_of(spi: u32) -> usize {
    (spi & SLOT_MASK) as usize
}

/// The generation byte of an SPI.
#[inline]
pub fn generation_of(spi: u32) -> u8 {
    (spi >> SLOT_BITS) as u8
}

/// The SPI for `slot` at `generation`; `None` if the slot is out of range.
pub fn make_spi(slot: usize, generation: u8) -> Option<u32> {
    if slot >= SLOT_COUNT {
        return None;
    }
    Some(((generation as u32) << SLOT_BITS) | slot as u32)
}

/// The generation after `g`, skipping 0 (kept for manual SAs).
pub fn next_generation(g: u8) -> u8 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_round_trips_slot_and_generation() {
        let spi = make_spi(0x12_3456, 7).unwrap();
        assert_eq!(spi, 0x0712_3456);
        assert_eq!(slot_of(spi), 0x12_3456);
        assert_eq!(generation_of(spi), 7);
        assert!(make_spi(SLOT_COUNT, 1).is_none());
    }

    #[test]
    fn generations_skip_zero_so_spis_stay_out_of_the_reserved_range() {
        assert_eq!(next_generation(255), 1);
        assert_eq!(next_generation(1), 2);
        assert!(make_spi(0, next_generation(255)).unwrap() > 255);
    }
}
