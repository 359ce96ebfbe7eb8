//! The IKE codec never panics on arbitrary bytes, and what it emits parses
//! back to the same message.

mod ike_fixtures;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use controlplane::ike::wire::*;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<u128>(), any::<u128>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn transform() -> impl Strategy<Value = Transform> {
    (
        1u8..6,
        any::<u16>(),
        prop::option::of(any::<u16>()),
        prop::option::of(bytes(8)),
    )
        .prop_map(|(t, id, short, long)| {
            let mut tr = Transform::new(TransformType(t), id);
            if let Some(v) = short {
                tr.attributes.push(TransformAttribute {
                    attr_type: 14,
                    value: AttributeValue::Short(v),
                });
            }
            if let Some(v) = long {
                tr.attributes.push(TransformAttribute {
                    attr_type: 99,
                    value: AttributeValue::Long(v),
                });
            }
            tr
        })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(
            (
                any::<u8>(),
                0u8..4,
                bytes(9),
                prop::collection::vec(transform(), 0..5)
            )
                .prop_map(|(number, proto, spi, transforms)| Proposal {
                    number,
                    protocol: ProtocolId(proto),
                    spi,
                    transforms
                }),
            0..3
        )
        .prop_map(|proposals| Payload::Sa(SecurityAssociation { proposals })),
        (any::<u16>(), bytes(70))
            .prop_map(|(group, data)| Payload::Ke(KeyExchange { group, data })),
        (any::<u8>(), bytes(30)).prop_map(|(t, data)| Payload::IdI(Identification {
            id_type: IdType(t),
            data
        })),
        (any::<u8>(), bytes(30)).prop_map(|(t, data)| Payload::IdR(Identification {
            id_type: IdType(t),
            data
        })),
        (any::<u8>(), bytes(40)).prop_map(|(m, data)| Payload::Auth(Authentication {
            method: AuthMethod(m),
            data
        })),
        prop::collection::vec(any::<u8>(), 16..257).prop_map(|n| Payload::Nonce(Nonce(n))),
        (any::<u8>(), bytes(9), any::<u16>(), bytes(30)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify {
                protocol: ProtocolId(p),
                spi,
                notify_type: NotifyType(t),
                data,
            })
        }),
        prop::collection::vec(any::<u32>(), 0..5).prop_map(|s| Payload::Delete(Delete::esp(&s))),
        Just(Payload::Delete(Delete::ike())),
        bytes(20).prop_map(|v| Payload::VendorId(VendorId(v))),
        prop::collection::vec(
            (any::<u8>(), any::<u16>(), any::<u16>(), ip_pair()).prop_map(
                |(pr, sp, ep, (a, b))| {
                    TrafficSelector {
                        ip_protocol: pr,
                        start_port: sp,
                        end_port: ep,
                        start_addr: a,
                        end_addr: b,
                    }
                }
            ),
            0..4
        )
        .prop_map(|v| Payload::TsI(TrafficSelectors(v))),
        (1u8..5, prop::collection::vec((1u16..16, bytes(17)), 0..5)).prop_map(|(t, attrs)| {
            Payload::Cp(Configuration {
                cfg_type: CfgType(t),
                attributes: attrs
                    .into_iter()
                    .map(|(a, value)| CfgAttribute {
                        attr_type: CfgAttrType(a),
                        value,
                    })
                    .collect(),
            })
        }),
        (200u8..=255, bytes(20)).prop_map(|(t, body)| Payload::Unknown(UnknownPayload {
            payload_type: PayloadType(t),
            critical: false,
            body
        })),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<u64>(),
        34u8..38,
        any::<u8>(),
        any::<u32>(),
        prop::collection::vec(payload(), 0..6),
        prop::option::of((any::<u8>(), bytes(60))),
    )
        .prop_map(|(si, sr, ex, flags, mid, mut payloads, sk)| {
            if let Some((first, body)) = sk {
                payloads.push(Payload::Sk(Encrypted {
                    first_inner: PayloadType(first),
                    body,
                }));
            }
            Message {
                header: Header::new(si, sr, ExchangeType(ex), flags, mid),
                payloads,
            }
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in bytes(600)) {
        let _ = Message::parse(&b);
        let _ = parse_chain(PayloadType::SA, &b);
    }

    #[test]
    fn arbitrary_bytes_with_a_valid_header_never_panic(first in any::<u8>(), mut b in bytes(400)) {
        let mut h = Header::new(1, 2, ExchangeType::IKE_AUTH, 0x08, 1);
        h.next_payload = PayloadType(first);
        h.length = (HEADER_LEN + b.len()) as u32;
        let mut buf = Vec::new();
        h.emit(&mut buf);
        buf.append(&mut b);
        let _ = Message::parse(&buf);
    }

    #[test]
    fn mutated_captured_messages_never_panic(
        frame in prop::sample::select(vec![1u32, 3, 9, 19, 20, 21, 22]),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let d = ike_fixtures::frame(frame);
        let mut b = d.ike().unwrap().to_vec();
        for (i, x) in flips {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        if let Ok(mut m) = Message::parse(&b) {
            // Whatever parses must re-parse the same after emit.
            let again = Message::parse(&m.emit()).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    #[test]
    fn emitted_messages_parse_back(mut m in message()) {
        let bytes = m.emit();
        prop_assert_eq!(bytes.len() as u32, m.header.length);
        let parsed = Message::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, m);
    }
}

#[test]
fn critical_unknown_payload_is_rejected_and_non_critical_skipped() {
    for (critical, ok) in [(false, true), (true, false)] {
        let mut m = Message {
            header: Header::new(1, 2, ExchangeType::IKE_AUTH, 0x08, 1),
            payloads: vec![
                Payload::Unknown(UnknownPayload {
                    payload_type: PayloadType(250),
                    critical,
                    body: vec![1, 2, 3],
                }),
                Payload::Nonce(Nonce(vec![7; 16])),
            ],
        };
        let r = Message::parse(&m.emit());
        if ok {
            assert_eq!(r.unwrap().payloads.len(), 2);
        } else {
            assert_eq!(
                r.unwrap_err(),
                ParseError::UnsupportedCriticalPayload(PayloadType(250))
            );
        }
    }
}

#[test]
fn major_version_3_is_rejected() {
    let mut b = ike_fixtures::frame(19).ike().unwrap().to_vec();
    b[17] = 0x30;
    assert_eq!(Message::parse(&b), Err(ParseError::InvalidMajorVersion(3)));
}

#[test]
fn cp_addresses_decode() {
    let a = CfgAttribute::ip4(
        CfgAttrType::INTERNAL_IP4_ADDRESS,
        Ipv4Addr::new(10, 1, 2, 3),
    );
    assert_eq!(a.as_ip4(), Some(Ipv4Addr::new(10, 1, 2, 3)));
    let v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5);
    let b = CfgAttribute::ip6_prefix(CfgAttrType::INTERNAL_IP6_ADDRESS, v6, 64);
    assert_eq!(b.as_ip6(), Some((v6, Some(64))));
    assert_eq!(
        CfgAttribute::request(CfgAttrType::INTERNAL_IP4_DNS).as_ip4(),
        None
    );
}
