//! The non-ESP marker of UDP port 4500 (RFC 3948 §2.2, RFC 7296 §2.23).

/// Four zero bytes before an IKE message on port 4500 (an ESP SPI is never 0).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The IKE message in a port-4500 datagram, or `None` if it is ESP (or a
/// NAT-keepalive, whose one byte 0xff has no marker).
pub fn strip_non_esp_marker(datagram: &[u8]) -> Option<&[u8]> {
    match datagram.split_first_chunk::<4>() {
        Some((m, rest)) if *m == NON_ESP_MARKER => Some(rest),
        _ => None,
    }
}
