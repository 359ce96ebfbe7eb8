//! IKE identities (RFC 7296 §3.5) and the patterns responder templates match them with.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};

use crate::error::with_hint;
use crate::schema::from_str::parse_str;

/// An identity as written: an IP address, `user@domain` (ID_RFC822_ADDR), `keyid:...`
/// (ID_KEY_ID), or a host name (ID_FQDN, an optional leading `@` forces it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ip(IpAddr),
    Email(String),
    Fqdn(String),
    KeyId(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("empty identity")]
    Empty,
    #[error("identity `{0}` contains a wildcard; only a remote_id may be a pattern")]
    Wildcard(String),
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, IdentityError> {
        if text.is_empty() {
            return Err(IdentityError::Empty);
        }
        if text.contains('*') {
            return Err(IdentityError::Wildcard(text.to_owned()));
        }
        if let Some(key_id) = text.strip_prefix("keyid:") {
            return Ok(Self::KeyId(key_id.as_bytes().to_vec()));
        }
        if let Some(fqdn) = text.strip_prefix('@') {
            return Ok(Self::Fqdn(fqdn.to_owned()));
        }
        if let Ok(ip) = text.parse() {
            return Ok(Self::Ip(ip));
        }
        if text.contains('@') {
            return Ok(Self::Email(text.to_owned()));
        }
        Ok(Self::Fqdn(text.to_owned()))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Email(email) => f.write_str(email),
            Self::Fqdn(fqdn) => f.write_str(fqdn),
            Self::KeyId(id) => write!(f, "keyid:{}", String::from_utf8_lossy(id)),
        }
    }
}

/// What a remote identity must look like: `any`, an exact identity, or a glob with `*`
/// (`*@example.org`, `*.branch.example.org`) matched against e-mail and FQDN identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityPattern {
    Any,
    Exact(Identity),
    Glob(String),
}

impl IdentityPattern {
    pub fn matches(&self, id: &Identity) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == id,
            Self::Glob(pattern) => match id {
                Identity::Email(name) | Identity::Fqdn(name) => glob_matches(pattern, name),
                Identity::Ip(_) | Identity::KeyId(_) => false,
            },
        }
    }
}

impl FromStr for IdentityPattern {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, IdentityError> {
        match text {
            "any" | "%any" => Ok(Self::Any),
            _ if text.contains('*') => Ok(Self::Glob(text.to_owned())),
            _ => text.parse().map(Self::Exact),
        }
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Exact(id) => write!(f, "{id}"),
            Self::Glob(pattern) => f.write_str(pattern),
        }
    }
}

/// `*` matches any run of characters (case-insensitive, as DNS names are).
fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

const ID_HINT: &str = "write an address, a host name, user@domain, or keyid:NAME";

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an identity", |text| {
            text.parse().map_err(|e| with_hint(e, ID_HINT))
        })
    }
}

impl<'de> Deserialize<'de> for IdentityPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an identity pattern", |text| {
            text.parse().map_err(|e| {
                with_hint(
                    e,
                    "write \"any\", an identity, or a pattern like \"*@example.org\"",
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Identity {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn pattern(text: &str) -> IdentityPattern {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn identity_kinds() {
        assert_eq!(id("192.0.2.1"), Identity::Ip([192, 0, 2, 1].into()));
        assert_eq!(
            id("alice@example.org"),
            Identity::Email("alice@example.org".into())
        );
        assert_eq!(
            id("vpn.example.org"),
            Identity::Fqdn("vpn.example.org".into())
        );
        assert_eq!(id("@192.0.2.1"), Identity::Fqdn("192.0.2.1".into()));
        assert_eq!(id("keyid:gw1"), Identity::KeyId(b"gw1".to_vec()));
        assert_eq!(
            "*.example.org".parse::<Identity>(),
            Err(IdentityError::Wildcard("*.example.org".into()))
        );
        assert_eq!("".parse::<Identity>(), Err(IdentityError::Empty));
    }

    #[test]
    fn patterns_match() {
        assert!(pattern("any").matches(&id("x@y")));
        assert!(pattern("*@example.org").matches(&id("alice@example.org")));
        assert!(pattern("*@example.org").matches(&id("Bob@Example.ORG")));
        assert!(!pattern("*@example.org").matches(&id("alice@example.org.evil")));
        assert!(!pattern("*@example.org").matches(&id("192.0.2.1")));
        assert!(pattern("gw-*.example.org").matches(&id("gw-7.example.org")));
        assert!(pattern("a*b*c").matches(&id("abc")));
        assert!(!pattern("a*bc*c").matches(&id("abc")));
        assert!(pattern("192.0.2.1").matches(&id("192.0.2.1")));
        assert!(!pattern("192.0.2.1").matches(&id("192.0.2.2")));
    }
}
