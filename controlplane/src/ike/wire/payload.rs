//! The generic payload header (RFC 7296 §3.2) and payload chains.

use super::reader::Reader;
use super::sa::put_len;
use super::{
    Authentication, Configuration, Delete, Encrypted, Identification, KeyExchange, Nonce, Notify,
    ParseError, PayloadType, SecurityAssociation, TrafficSelectors, UnknownPayload, VendorId,
};

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;
const CRITICAL: u8 = 0x80;

/// One payload of a message, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Sa(SecurityAssociation),
    Ke(KeyExchange),
    IdI(Identification),
    IdR(Identification),
    Auth(Authentication),
    Nonce(Nonce),
    Notify(Notify),
    Delete(Delete),
    VendorId(VendorId),
    TsI(TrafficSelectors),
    TsR(TrafficSelectors),
    Sk(Encrypted),
    Cp(Configuration),
    /// Recognised but not interpreted (CERT, CERTREQ, EAP), or unknown and
    /// not critical (§2.5: skipped).
    Unknown(UnknownPayload),
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Sk(_) => PayloadType::SK,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Unknown(u) => u.payload_type,
        }
    }

    fn parse(
        t: PayloadType,
        critical: bool,
        next: PayloadType,
        body: &[u8],
    ) -> Result<Self, ParseError> {
        Ok(match t {
            PayloadType::SA => Payload::Sa(SecurityAssociation::parse(body)?),
            PayloadType::KE => Payload::Ke(KeyExchange::parse(body)?),
            PayloadType::IDI => Payload::IdI(Identification::parse(body)?),
            PayloadType::IDR => Payload::IdR(Identification::parse(body)?),
            PayloadType::AUTH => Payload::Auth(Authentication::parse(body)?),
            PayloadType::NONCE => Payload::Nonce(Nonce::parse(body)?),
            PayloadType::NOTIFY => Payload::Notify(Notify::parse(body)?),
            PayloadType::DELETE => Payload::Delete(Delete::parse(body)?),
            PayloadType::VENDOR_ID => Payload::VendorId(VendorId(body.to_vec())),
            PayloadType::TSI => Payload::TsI(TrafficSelectors::parse(body)?),
            PayloadType::TSR => Payload::TsR(TrafficSelectors::parse(body)?),
            PayloadType::SK => Payload::Sk(Encrypted {
                first_inner: next,
                body: body.to_vec(),
            }),
            PayloadType::CP => Payload::Cp(Configuration::parse(body)?),
            PayloadType::CERT | PayloadType::CERTREQ | PayloadType::EAP => {
                Payload::Unknown(UnknownPayload {
                    payload_type: t,
                    critical,
                    body: body.to_vec(),
                })
            }
            // §2.5: an unrecognised payload with the critical bit rejects the message.
            _ if critical => return Err(ParseError::UnsupportedCriticalPayload(t)),
            _ => Payload::Unknown(UnknownPayload {
                payload_type: t,
                critical,
                body: body.to_vec(),
            }),
        })
    }

    fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(p) => p.emit(out),
            Payload::Ke(p) => p.emit(out),
            Payload::IdI(p) | Payload::IdR(p) => p.emit(out),
            Payload::Auth(p) => p.emit(out),
            Payload::Nonce(p) => p.emit(out),
            Payload::Notify(p) => p.emit(out),
            Payload::Delete(p) => p.emit(out),
            Payload::VendorId(p) => p.emit(out),
            Payload::TsI(p) | Payload::TsR(p) => p.emit(out),
            Payload::Sk(p) => out.extend_from_slice(&p.body),
            Payload::Cp(p) => p.emit(out),
            Payload::Unknown(p) => out.extend_from_slice(&p.body),
        }
    }
}

/// Parses a chain of payloads starting with type `first`. An SK payload ends
/// the chain (§3.14: it must be last) and must end the buffer.
pub fn parse_chain(first: PayloadType, buf: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut r = Reader::new(buf, "payload chain");
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        let this = next;
        let mut h = Reader::new(r.take(GENERIC_HEADER_LEN)?, "generic payload header");
        next = PayloadType(h.u8()?);
        let critical = h.u8()? & CRITICAL != 0;
        let len = usize::from(h.u16()?);
        if len < GENERIC_HEADER_LEN {
            return Err(ParseError::BadLength {
                what: "generic payload header",
                len,
            });
        }
        let body = r.take(len - GENERIC_HEADER_LEN)?;
        out.push(Payload::parse(this, critical, next, body)?);
        if this == PayloadType::SK {
            next = PayloadType::NONE;
        }
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "trailing bytes after payload chain",
            len: r.remaining(),
        });
    }
    Ok(out)
}

/// Emits a chain of payloads and returns the type of the first (for the
/// preceding header's Next Payload field).
pub fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk(sk) => sk.first_inner,
            _ => payloads
                .get(i + 1)
                .map_or(PayloadType::NONE, Payload::payload_type),
        };
        let critical = match p {
            Payload::Unknown(u) if u.critical => CRITICAL,
            _ => 0,
        };
        let start = out.len();
        out.extend_from_slice(&[next.0, critical, 0, 0]);
        p.emit_body(out);
        put_len(out, start);
    }
    chain_type(payloads)
}

/// The type of a chain: its first payload's, for the Next Payload field
/// before it.
pub fn chain_type(payloads: &[Payload]) -> PayloadType {
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}
