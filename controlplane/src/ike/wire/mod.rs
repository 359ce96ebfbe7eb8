//! The IKEv2 message codec (RFC 7296 §3): parse into owned payloads,
//! emit back to bytes. Parsing never panics; every length is checked.

mod auth;
mod cp;
mod delete;
mod error;
mod header;
mod id;
mod ke;
mod message;
mod nat_t;
mod nonce;
mod notify;
mod payload;
mod reader;
mod sa;
mod sk;
mod ts;
mod types;
mod unknown;
mod vendor;

pub use auth::Authentication;
pub use cp::{CfgAttribute, Configuration};
pub use delete::Delete;
pub use error::ParseError;
pub use header::{Flags, Header, HEADER_LEN, MESSAGE_ROOM};
pub use id::Identification;
pub use ke::KeyExchange;
pub use message::Message;
pub use nat_t::{strip_non_esp_marker, NON_ESP_MARKER};
pub use nonce::Nonce;
pub use notify::Notify;
pub use payload::{chain_type, emit_chain, parse_chain, Payload, GENERIC_HEADER_LEN};
pub(crate) use sa::set_len;
pub use sa::{AttributeValue, Proposal, SecurityAssociation, Transform, TransformAttribute};
pub use sk::Encrypted;
pub use ts::{TrafficSelector, TrafficSelectors};
pub use types::{
    transform_id, AuthMethod, CfgAttrType, CfgType, ExchangeType, IdType, NotifyType, PayloadType,
    ProtocolId, TransformType, TsType,
};
pub use unknown::UnknownPayload;
pub use vendor::VendorId;
