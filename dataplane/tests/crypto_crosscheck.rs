//! Cross-checks esprit's AES-GCM, both backends, against three independent
//! implementations (RustCrypto `aes-gcm`, `ring`, OpenSSL) on seeded random
//! keys, nonces, AAD of 0..=32 bytes and data of 0..=2048 bytes.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use dataplane::crypto::{AesGcm, CryptoError, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn reference_aes_gcm(key: &[u8], nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    let n = aes_gcm::Nonce::from_slice(nonce);
    let tag = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .expect("16-byte key")
            .encrypt_in_place_detached(n, aad, data),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .expect("32-byte key")
            .encrypt_in_place_detached(n, aad, data),
    }
    .expect("aes-gcm seal");
    tag.into()
}

fn reference_ring(key: &[u8], nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    use ring::aead;
    let alg = if key.len() == 16 {
        &aead::AES_128_GCM
    } else {
        &aead::AES_256_GCM
    };
    let k = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).expect("ring key"));
    let tag = k
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            data,
        )
        .expect("ring seal");
    tag.as_ref().try_into().expect("16-byte tag")
}

fn reference_openssl(key: &[u8], nonce: &[u8; 12], aad: &[u8], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
    use openssl::symm::{encrypt_aead, Cipher};
    let c = if key.len() == 16 {
        Cipher::aes_128_gcm()
    } else {
        Cipher::aes_256_gcm()
    };
    let mut tag = [0u8; 16];
    let ct = encrypt_aead(c, key, Some(nonce), aad, data, &mut tag).expect("openssl seal");
    (ct, tag)
}

/// Every backend this CPU runs (wide VAES, 128-bit AES-NI, portable).
fn backends(key: &[u8]) -> Vec<AesGcm> {
    AesGcm::all_backends(key).expect("valid key")
}

struct Case {
    key: Vec<u8>,
    nonce: [u8; 12],
    aad: Vec<u8>,
    pt: Vec<u8>,
}

fn random_case(rng: &mut StdRng, data_len: usize) -> Case {
    let mut key = vec![0u8; if rng.random::<bool>() { 16 } else { 32 }];
    rng.fill_bytes(&mut key);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let mut aad = vec![0u8; rng.random_range(0..=32)];
    rng.fill_bytes(&mut aad);
    let mut pt = vec![0u8; data_len];
    rng.fill_bytes(&mut pt);
    Case {
        key,
        nonce,
        aad,
        pt,
    }
}

fn check(c: &Case) {
    let mut want_ct = c.pt.clone();
    let want_tag = reference_aes_gcm(&c.key, &c.nonce, &c.aad, &mut want_ct);
    for g in backends(&c.key) {
        let ctx = format!(
            "{} key {} aad {} len {}",
            g.backend(),
            c.key.len(),
            c.aad.len(),
            c.pt.len()
        );
        let mut buf = c.pt.clone();
        let tag = g.seal_in_place(&c.nonce, &c.aad, &mut buf);
        assert_eq!(buf, want_ct, "ciphertext, {ctx}");
        assert_eq!(tag, want_tag, "tag, {ctx}");
        g.open_in_place(&c.nonce, &c.aad, &mut buf, &want_tag)
            .unwrap_or_else(|e| panic!("open, {ctx}: {e}"));
        assert_eq!(buf, c.pt, "plaintext, {ctx}");
    }
}

#[test]
fn every_length_to_2048_matches_aes_gcm_crate() {
    let mut rng = StdRng::seed_from_u64(0x4106);
    for len in 0..=2048 {
        check(&random_case(&mut rng, len));
    }
}

#[test]
fn random_cases_match_ring_and_openssl() {
    let mut rng = StdRng::seed_from_u64(4303);
    for _ in 0..400 {
        let len = rng.random_range(0..=2048);
        let c = random_case(&mut rng, len);
        let mut ring_ct = c.pt.clone();
        let ring_tag = reference_ring(&c.key, &c.nonce, &c.aad, &mut ring_ct);
        let (ossl_ct, ossl_tag) = reference_openssl(&c.key, &c.nonce, &c.aad, &c.pt);
        assert_eq!(ring_ct, ossl_ct, "references disagree");
        assert_eq!(ring_tag, ossl_tag, "references disagree");
        for g in backends(&c.key) {
            let mut buf = c.pt.clone();
            let tag = g.seal_in_place(&c.nonce, &c.aad, &mut buf);
            assert_eq!(buf, ring_ct, "{} len {}", g.backend(), len);
            assert_eq!(tag, ring_tag, "{} len {}", g.backend(), len);
        }
    }
}

#[test]
fn esp_shaped_packets_open_what_ring_sealed() {
    // RFC 4106 §5: AAD is SPI||seq (8 bytes) or SPI||ESN||seq (12 bytes).
    let mut rng = StdRng::seed_from_u64(5282);
    for _ in 0..300 {
        let len = rng.random_range(0..=1500);
        let mut c = random_case(&mut rng, len);
        c.aad
            .resize(if rng.random::<bool>() { 8 } else { 12 }, 0x5a);
        let mut ct = c.pt.clone();
        let tag = reference_ring(&c.key, &c.nonce, &c.aad, &mut ct);
        for g in backends(&c.key) {
            let mut buf = ct.clone();
            assert_eq!(g.open_in_place(&c.nonce, &c.aad, &mut buf, &tag), Ok(()));
            assert_eq!(buf, c.pt, "{} len {}", g.backend(), len);
        }
    }
}

#[test]
fn any_flipped_bit_is_rejected() {
    let mut rng = StdRng::seed_from_u64(2406);
    for _ in 0..300 {
        let len = rng.random_range(0..=600);
        let c = random_case(&mut rng, len);
        for g in backends(&c.key) {
            let mut ct = c.pt.clone();
            let tag = g.seal_in_place(&c.nonce, &c.aad, &mut ct);
            let (mut ct2, mut aad2, mut tag2) = (ct.clone(), c.aad.clone(), tag);
            let bit = 1u8 << rng.random_range(0..8);
            match rng.random_range(0..3) {
                0 if !ct2.is_empty() => {
                    let i = rng.random_range(0..ct2.len());
                    ct2[i] ^= bit;
                }
                1 if !aad2.is_empty() => {
                    let i = rng.random_range(0..aad2.len());
                    aad2[i] ^= bit;
                }
                _ => tag2[rng.random_range(0..TAG_LEN)] ^= bit,
            }
            assert_eq!(
                g.open_in_place(&c.nonce, &aad2, &mut ct2, &tag2),
                Err(CryptoError::AuthFailed),
                "{} len {}",
                g.backend(),
                len
            );
        }
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn both_backends_agree_with_aes_gcm_crate(
            wide in any::<bool>(),
            key in proptest::collection::vec(any::<u8>(), 32),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..=32),
            pt in proptest::collection::vec(any::<u8>(), 0..=2048),
        ) {
            let key = if wide { &key[..] } else { &key[..16] };
            check(&Case { key: key.to_vec(), nonce, aad, pt });
        }
    }
}

#[test]
fn long_packets_carry_the_counter_across_bytes() {
    // Block 254 moves the counter from 0x000000ff to 0x00000100; go past it,
    // up to the largest IP datagram.
    let mut rng = StdRng::seed_from_u64(65535);
    for len in [4063usize, 4064, 4080, 4096, 4111, 8197, 65535] {
        check(&random_case(&mut rng, len));
    }
}
