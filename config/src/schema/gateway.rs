//! `[gateway]`: where the gateway listens on the outside.

use std::net::SocketAddr;

use serde::Deserialize;

/// The outside (public) side of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    /// UDP listen addresses for ESP-in-UDP and IKE with NAT-T (RFC 3948), default `["0.0.0.0:4500"]`.
    pub outside: Vec<SocketAddr>,
    /// UDP port for IKE before NAT is detected (RFC 7296 §2.23), default 500; listened on at
    /// each `outside` address.
    pub ike_port: u16,
    /// Also accept raw ESP (IP protocol 50) at the `outside` addresses, default false.
    pub raw_esp: bool,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            outside: vec![SocketAddr::from(([0, 0, 0, 0], 4500))],
            ike_port: 500,
            raw_esp: false,
        }
    }
}
