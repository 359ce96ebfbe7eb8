//! Algorithms and proposals, named as strongSwan names them (`aes128gcm16-prfsha256-x25519`).

use std::fmt;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};

use crate::error::with_hint;
use crate::schema::from_str::parse_str;

/// ESP / IKE SK encryption: AES-GCM with a 16-byte ICV (RFC 4106, RFC 5282).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Aes128Gcm16,
    Aes256Gcm16,
}

impl Algorithm {
    /// Key length in bytes, without the 4-byte salt.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm16 => 16,
            Self::Aes256Gcm16 => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Gcm16 => "aes128gcm16",
            Self::Aes256Gcm16 => "aes256gcm16",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes128gcm16" => Some(Self::Aes128Gcm16),
            "aes256gcm16" => Some(Self::Aes256Gcm16),
            _ => None,
        }
    }
}

/// IKE pseudo-random function (RFC 7296 §3.3.2, transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "prfsha256" => Some(Self::HmacSha256),
            "prfsha384" => Some(Self::HmacSha384),
            "prfsha512" => Some(Self::HmacSha512),
            _ => None,
        }
    }
}

/// Diffie-Hellman group (IANA IKEv2 transform type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 31, Curve25519 (RFC 8031).
    X25519,
    /// Group 19, 256-bit random ECP (RFC 5903).
    Ecp256,
}

impl DhGroup {
    pub fn name(self) -> &'static str {
        match self {
            Self::X25519 => "x25519",
            Self::Ecp256 => "ecp256",
        }
    }

    /// The IANA group number.
    pub fn number(self) -> u16 {
        match self {
            Self::X25519 => 31,
            Self::Ecp256 => 19,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "x25519" | "curve25519" => Some(Self::X25519),
            "ecp256" => Some(Self::Ecp256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm `{0}` in proposal")]
pub struct ProposalError(String);

/// An IKE SA proposal: one encryption, one PRF, one DH group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    pub encryption: Algorithm,
    pub prf: Prf,
    pub dh: DhGroup,
}

impl FromStr for IkeProposal {
    type Err = ProposalError;

    fn from_str(text: &str) -> Result<Self, ProposalError> {
        let (mut encryption, mut prf, mut dh) = (None, None, None);
        for token in text.split('-') {
            if let Some(a) = Algorithm::from_name(token).filter(|_| encryption.is_none()) {
                encryption = Some(a);
            } else if let Some(p) = Prf::from_name(token).filter(|_| prf.is_none()) {
                prf = Some(p);
            } else if let Some(g) = DhGroup::from_name(token).filter(|_| dh.is_none()) {
                dh = Some(g);
            } else {
                return Err(ProposalError(token.to_owned()));
            }
        }
        match (encryption, prf, dh) {
            (Some(encryption), Some(prf), Some(dh)) => Ok(Self {
                encryption,
                prf,
                dh,
            }),
            _ => Err(ProposalError(text.to_owned())),
        }
    }
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.encryption.name(),
            self.prf.name(),
            self.dh.name()
        )
    }
}

/// A CHILD SA (ESP) proposal: encryption and, for PFS on rekey, a DH group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspProposal {
    pub encryption: Algorithm,
    pub dh: Option<DhGroup>,
}

impl FromStr for EspProposal {
    type Err = ProposalError;

    fn from_str(text: &str) -> Result<Self, ProposalError> {
        let mut tokens = text.split('-');
        let encryption = tokens
            .next()
            .and_then(Algorithm::from_name)
            .ok_or_else(|| ProposalError(text.to_owned()))?;
        let dh = match tokens.next() {
            None => None,
            Some(token) => {
                Some(DhGroup::from_name(token).ok_or_else(|| ProposalError(token.to_owned()))?)
            }
        };
        match tokens.next() {
            Some(extra) => Err(ProposalError(extra.to_owned())),
            None => Ok(Self { encryption, dh }),
        }
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encryption.name())?;
        if let Some(dh) = self.dh {
            write!(f, "-{}", dh.name())?;
        }
        Ok(())
    }
}

const ALGORITHM_HINT: &str = "valid: aes128gcm16, aes256gcm16";
const IKE_HINT: &str =
    "write encryption-prf-dh, like \"aes256gcm16-prfsha384-x25519\" (prf: prfsha256|prfsha384|prfsha512, dh: x25519|ecp256)";
const ESP_HINT: &str = "write encryption[-dh], like \"aes256gcm16\" or \"aes128gcm16-x25519\"";

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an algorithm name", |name| {
            Self::from_name(name)
                .ok_or_else(|| with_hint(format!("unknown algorithm `{name}`"), ALGORITHM_HINT))
        })
    }
}

impl<'de> Deserialize<'de> for IkeProposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an IKE proposal", |text| {
            text.parse().map_err(|e| with_hint(e, IKE_HINT))
        })
    }
}

impl<'de> Deserialize<'de> for EspProposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an ESP proposal", |text| {
            text.parse().map_err(|e| with_hint(e, ESP_HINT))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ike_proposals_in_any_order() {
        let p: IkeProposal = "aes256gcm16-prfsha384-x25519"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.encryption, p.prf, p.dh),
            (Algorithm::Aes256Gcm16, Prf::HmacSha384, DhGroup::X25519)
        );
        assert_eq!(p.to_string(), "aes256gcm16-prfsha384-x25519");
        let q: Result<IkeProposal, _> = "ecp256-prfsha256-aes128gcm16".parse();
        assert_eq!(q.map(|q| q.dh.number()), Ok(19));
    }

    #[test]
    fn rejects_incomplete_or_unknown() {
        assert!("aes256gcm16-prfsha384".parse::<IkeProposal>().is_err());
        assert!("aes256gcm16-prfsha384-modp2048"
            .parse::<IkeProposal>()
            .is_err());
        assert!("aes256gcm16-aes128gcm16-prfsha256-x25519"
            .parse::<IkeProposal>()
            .is_err());
        assert!("aes128cbc".parse::<EspProposal>().is_err());
        assert!("aes128gcm16-x25519-ecp256".parse::<EspProposal>().is_err());
    }

    #[test]
    fn parses_esp_proposals() {
        let p: Result<EspProposal, _> = "aes128gcm16-x25519".parse();
        assert_eq!(
            p.map(|p| p.to_string()).as_deref(),
            Ok("aes128gcm16-x25519")
        );
        let p: Result<EspProposal, _> = "aes256gcm16".parse();
        assert_eq!(p.map(|p| p.dh), Ok(None));
    }
}
