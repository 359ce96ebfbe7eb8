//! A whole IKE message: header plus payload chain (RFC 7296 §3).

use super::header::{HEADER_LEN, MESSAGE_ROOM};
use super::payload::{chain_type, emit_chain, parse_chain};
use super::{Header, Notify, NotifyType, ParseError, Payload};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses one IKE message (without the non-ESP marker).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(buf)?;
        if usize::try_from(header.length).ok() != Some(buf.len()) {
            return Err(ParseError::MessageLength {
                header: header.length,
                actual: buf.len(),
            });
        }
        let chain = buf.get(HEADER_LEN..).unwrap_or_default();
        let payloads = parse_chain(header.next_payload, chain)?;
        Ok(Message { header, payloads })
    }

    /// Emits the message; the header's Next Payload and Length are
    /// recomputed (and stored back).
    pub fn emit(&mut self) -> Vec<u8> {
        self.header.next_payload = chain_type(&self.payloads);
        let mut out = Vec::with_capacity(MESSAGE_ROOM);
        self.header.emit(&mut out);
        emit_chain(&self.payloads, &mut out);
        let length = out.len();
        self.header.length = length as u32;
        Header::patch_length(&mut out, length);
        out
    }

    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    pub fn notify(&self, t: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == t)
    }
}
