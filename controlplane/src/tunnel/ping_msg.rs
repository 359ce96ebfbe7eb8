//! The ping and pong of esprit's epochs (docs/ping.md): the whole decrypted
//! payload of an ESP packet with next header 253 on the epoch's SA.
//!
//! ```text
//! | "EPNG" (4) | version 1 (1) | kind (1) | reserved (2) | epoch (4) | nonce (8) | sent ns (8) |
//! ```
//! ESP authenticates it and its anti-replay window stops copies; the nonce
//! ties a pong to one ping, so an old pong proves nothing about a new epoch.

/// Bytes in a ping or pong.
pub const PING_LEN: usize = 28;
const MAGIC: [u8; 4] = *b"EPNG";
const VERSION: u8 = 1;

/// Ping (asks) or pong (answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ping = 1,
    Pong = 2,
}

/// One control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingMsg {
    pub kind: Kind,
    /// The sender's epoch number (a pong echoes the ping's).
    pub epoch: u32,
    pub nonce: u64,
    /// When the ping left, in the pinger's nanoseconds (echoed, for RTT).
    pub sent_ns: u64,
}

/// A message that is not one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("control message of {0} bytes, expected {PING_LEN}")]
    Length(usize),
    #[error("not an esprit ping (bad magic)")]
    Magic,
    #[error("ping version {0} not supported")]
    Version(u8),
    #[error("unknown ping kind {0}")]
    Kind(u8),
}

impl PingMsg {
    pub fn encode(&self) -> [u8; PING_LEN] {
        let mut b = [0u8; PING_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.kind as u8;
        b[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        b[12..20].copy_from_slice(&self.nonce.to_be_bytes());
        b[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<PingMsg, PingError> {
        let b: &[u8; PING_LEN] = b.try_into().map_err(|_| PingError::Length(b.len()))?;
        if b[..4] != MAGIC {
            return Err(PingError::Magic);
        }
        if b[4] != VERSION {
            return Err(PingError::Version(b[4]));
        }
        let kind = match b[5] {
            1 => Kind::Ping,
            2 => Kind::Pong,
            k => return Err(PingError::Kind(k)),
        };
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u32_at(i) as u64) << 32 | u32_at(i + 4) as u64;
        Ok(PingMsg {
            kind,
            epoch: u32_at(8),
            nonce: u64_at(12),
            sent_ns: u64_at(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = PingMsg {
            kind: Kind::Pong,
            epoch: 7,
            nonce: 0x0102_0304_0506_0708,
            sent_ns: 99,
        };
        let b = m.encode();
        assert_eq!(&b[..6], b"EPNG\x01\x02");
        assert_eq!(PingMsg::decode(&b), Ok(m));
        assert_eq!(PingMsg::decode(&b[..27]), Err(PingError::Length(27)));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(PingMsg::decode(&bad), Err(PingError::Magic));
        let mut bad = b;
        bad[4] = 2;
        assert_eq!(PingMsg::decode(&bad), Err(PingError::Version(2)));
        let mut bad = b;
        bad[5] = 9;
        assert_eq!(PingMsg::decode(&bad), Err(PingError::Kind(9)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PingMsg::decode(&b);
        }
    }
}
