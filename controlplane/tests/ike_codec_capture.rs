//! Known-answer tests of the IKE codec against a real strongSwan 5.9.8
//! conversation (/work/shared/interop/captures, see its README).

mod ike_fixtures;

use controlplane::ike::wire::{
    transform_id, ExchangeType, Message, NotifyType, Payload, PayloadType, ProtocolId,
    TransformType,
};

fn kinds(m: &Message) -> Vec<PayloadType> {
    m.payloads.iter().map(Payload::payload_type).collect()
}

#[test]
fn every_ike_datagram_parses_and_reencodes_byte_for_byte() {
    let mut n = 0;
    for d in ike_fixtures::capture() {
        let Some(bytes) = d.ike() else { continue };
        let mut m = Message::parse(bytes).unwrap_or_else(|e| panic!("frame {}: {e}", d.frame));
        assert_eq!(m.emit(), bytes, "frame {} re-encodes differently", d.frame);
        n += 1;
    }
    // 26 frames, 8 of them ESP.
    assert_eq!(n, 18);
}

#[test]
fn exchange_types_message_ids_and_flags_match_the_capture() {
    use ExchangeType as E;
    // (frame, exchange, message id, initiator flag, response flag), from tshark.
    let expect = [
        (1, E::INFORMATIONAL, 2, true, false),
        (2, E::INFORMATIONAL, 2, false, true),
        (3, E::CREATE_CHILD_SA, 3, true, false),
        (4, E::CREATE_CHILD_SA, 3, false, true),
        (5, E::INFORMATIONAL, 4, true, false),
        (6, E::INFORMATIONAL, 4, false, true),
        (7, E::INFORMATIONAL, 0, false, false),
        (8, E::INFORMATIONAL, 0, true, true),
        (9, E::CREATE_CHILD_SA, 1, false, false),
        (10, E::CREATE_CHILD_SA, 1, true, true),
        (11, E::INFORMATIONAL, 2, false, false),
        (12, E::INFORMATIONAL, 2, true, true),
        (17, E::INFORMATIONAL, 0, false, false),
        (18, E::INFORMATIONAL, 0, true, true),
        (19, E::IKE_SA_INIT, 0, true, false),
        (20, E::IKE_SA_INIT, 0, false, true),
        (21, E::IKE_AUTH, 1, true, false),
        (22, E::IKE_AUTH, 1, false, true),
    ];
    for (frame, ex, mid, i, r) in expect {
        let d = ike_fixtures::frame(frame);
        let m = Message::parse(d.ike().unwrap()).unwrap();
        assert_eq!(m.header.exchange, ex, "frame {frame}");
        assert_eq!(m.header.message_id, mid, "frame {frame}");
        assert_eq!(m.header.flags.initiator(), i, "frame {frame}");
        assert_eq!(m.header.flags.response(), r, "frame {frame}");
        assert_eq!(m.header.version, 0x20);
    }
}

#[test]
fn ike_sa_init_request_fields() {
    let d = ike_fixtures::frame(19);
    assert_eq!(d.dst.port(), 500);
    let m = Message::parse(d.ike().unwrap()).unwrap();
    assert_eq!(m.header.spi_i, 0x9cf3_633e_72a7_ae9a);
    assert_eq!(m.header.spi_r, 0);
    use PayloadType as P;
    assert_eq!(
        kinds(&m),
        [
            P::SA,
            P::KE,
            P::NONCE,
            P::NOTIFY,
            P::NOTIFY,
            P::NOTIFY,
            P::NOTIFY,
            P::NOTIFY
        ]
    );
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sa.proposals.len(), 1);
    let p = &sa.proposals[0];
    assert_eq!((p.number, p.protocol, p.spi.len()), (1, ProtocolId::IKE, 0));
    let encr: Vec<_> = p.transforms_of(TransformType::ENCR).collect();
    assert_eq!(encr.len(), 1);
    assert_eq!(encr[0].id, transform_id::ENCR_AES_GCM_16);
    assert_eq!(encr[0].key_length(), Some(128));
    assert_eq!(
        p.transforms_of(TransformType::PRF).next().unwrap().id,
        transform_id::PRF_HMAC_SHA2_256
    );
    assert_eq!(
        p.transforms_of(TransformType::DH).next().unwrap().id,
        transform_id::DH_CURVE25519
    );
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!((ke.group, ke.data.len()), (31, 32));
    let Payload::Nonce(ni) = &m.payloads[2] else {
        panic!()
    };
    assert_eq!(ni.0.len(), 32);
    // From strongswan-left-charon.log, "natd_hash" dumps of IKE_SA lab[3].
    let src = m.notify(NotifyType::NAT_DETECTION_SOURCE_IP).unwrap();
    assert_eq!(
        src.data,
        ike_fixtures::unhex("9F53A90D7E181CCEBD1A06CB3AAAF0A2F2866866")
    );
    let dst = m.notify(NotifyType::NAT_DETECTION_DESTINATION_IP).unwrap();
    assert_eq!(
        dst.data,
        ike_fixtures::unhex("55476EEF6F41E0811915EFD8CDEC3F547B493D23")
    );
    assert!(m.notify(NotifyType::FRAGMENTATION_SUPPORTED).is_some());
    assert!(m.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS).is_some());
    assert!(m.notify(NotifyType::REDIRECT_SUPPORTED).is_some());
}

#[test]
fn ike_sa_init_response_fields() {
    let m = Message::parse(ike_fixtures::frame(20).ike().unwrap()).unwrap();
    assert_eq!(m.header.spi_i, 0x9cf3_633e_72a7_ae9a);
    assert_eq!(m.header.spi_r, 0xf133_8ba9_b327_7896);
    use PayloadType as P;
    assert_eq!(&kinds(&m)[..3], [P::SA, P::KE, P::NONCE]);
    assert!(m.notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED).is_some());
    assert!(m.notify(NotifyType::MULTIPLE_AUTH_SUPPORTED).is_some());
}

#[test]
fn ike_auth_and_informational_carry_one_sk_payload() {
    for frame in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17, 18, 21, 22] {
        let m = Message::parse(ike_fixtures::frame(frame).ike().unwrap()).unwrap();
        assert_eq!(kinds(&m), [PayloadType::SK], "frame {frame}");
    }
    // Frame 21's SK payload starts with IDi (log: "IKE_AUTH request 1 [ IDi ...").
    let m = Message::parse(ike_fixtures::frame(21).ike().unwrap()).unwrap();
    let Payload::Sk(sk) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sk.first_inner, PayloadType::IDI);
    // Empty INFORMATIONAL (liveness) responses: SK of 8 IV + 1 pad length + 16 ICV.
    let m = Message::parse(ike_fixtures::frame(2).ike().unwrap()).unwrap();
    let Payload::Sk(sk) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sk.first_inner, PayloadType::NONE);
    assert_eq!(sk.body.len(), 25);
}
