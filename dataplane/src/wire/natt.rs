//! What arrives on UDP port 4500 (RFC 3948 section 2): ESP, IKE behind the
//! 4-byte zero non-ESP marker, or a one-byte NAT keepalive.

/// The non-ESP marker: where an SPI would be, four zero bytes (SPI 0 is
/// reserved, so no ESP packet starts like this).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT-keepalive payload.
pub const KEEPALIVE: u8 = 0xff;

/// Kinds of UDP-4500 payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified<'a> {
    /// An ESP packet (at least an ESP header long).
    Esp,
    /// An IKE message, without the marker.
    Ike(&'a [u8]),
    /// A NAT keepalive: nothing to do but count it.
    Keepalive,
    /// Too short for any of these.
    Malformed,
}

/// Classifies a UDP-4500 payload.
#[inline]
pub fn classify(payload: &[u8]) -> Classified<'_> {
    match payload {
        [KEEPALIVE] => Classified::Keepalive,
        [0, 0, 0, 0, ike @ ..] => Classified::Ike(ike),
        p if p.len() >= super::esp::HEADER_LEN => Classified::Esp,
        _ => Classified::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_traffic_is_classified() {
        let esp = &include_bytes!("../../tests/fixtures/esp_in_udp.bin")[28..];
        assert_eq!(classify(esp), Classified::Esp);
        let ike = &include_bytes!("../../tests/fixtures/ike4500.bin")[28..];
        match classify(ike) {
            // IKEv2 header: version 0x20 at offset 17.
            Classified::Ike(m) => assert_eq!(m[17], 0x20),
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(&[0xff]), Classified::Keepalive);
        assert_eq!(classify(&[1, 2, 3]), Classified::Malformed);
        assert_eq!(classify(&[]), Classified::Malformed);
    }
}
