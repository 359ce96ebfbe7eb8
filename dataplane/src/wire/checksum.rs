//! The Internet checksum (RFC 1071), for IPv4 headers and UDP.

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16
/// bits (not yet complemented), so partial sums can be added together.
///
/// Adds 32-bit words into a 64-bit accumulator: 2^16 is 1 modulo 2^16 - 1,
/// so a 32-bit word sums to the same as its two halves, and the carries wait
/// in the high bits until the end. It runs over every byte of TCP segments
/// the TUN offloads cut and merge, so it is worth being quick.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a sum to 16 bits and complements it.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&data)), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    /// The plain RFC 1071 loop, 16 bits at a time.
    fn sum16(data: &[u8]) -> u32 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_is_the_16_bit_sum(data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(sum(&data), sum16(&data));
        }
    }
}
