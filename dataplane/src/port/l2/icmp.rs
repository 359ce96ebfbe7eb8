//! ICMP echo (RFC 792) for the port's own address: operators ping the
//! gateway's outside address, and the kernel is not there to answer.

use super::ipv4::checksum;

/// ICMP types used here.
pub const ECHO_REPLY: u8 = 0;
pub const ECHO_REQUEST: u8 = 8;
/// Type, code, checksum, identifier, sequence.
pub const ECHO_HEADER_LEN: usize = 8;

/// Turns the ICMP message `icmp` (the IP payload) into its echo reply in
/// place, if it is a well-formed echo request with a valid checksum.
/// Identifier, sequence and data are kept (RFC 792, "Echo or Echo Reply").
pub fn answer_echo(icmp: &mut [u8]) -> bool {
    if icmp.len() < ECHO_HEADER_LEN || icmp[0] != ECHO_REQUEST || icmp[1] != 0 {
        return false;
    }
    if checksum(icmp) != 0 {
        return false;
    }
    icmp[0] = ECHO_REPLY;
    icmp[2] = 0;
    icmp[3] = 0;
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo request from `ping -c1 -p 41` (id 0x1234, seq 1, 8 data bytes).
    fn request() -> Vec<u8> {
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        m.extend_from_slice(&[0x41; 8]);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn answers_a_request_keeping_id_seq_and_data() {
        let mut m = request();
        assert!(answer_echo(&mut m));
        assert_eq!(m[0], ECHO_REPLY);
        assert_eq!(&m[4..8], &[0x12, 0x34, 0, 1]);
        assert_eq!(&m[8..], &[0x41; 8]);
        assert_eq!(checksum(&m), 0, "reply checksum verifies");
    }

    #[test]
    fn ignores_replies_bad_checksums_and_short_messages() {
        let mut m = request();
        m[0] = ECHO_REPLY;
        assert!(!answer_echo(&mut m));
        let mut m = request();
        m[9] ^= 0xff;
        assert!(!answer_echo(&mut m));
        assert!(!answer_echo(&mut request()[..7]));
    }
}
