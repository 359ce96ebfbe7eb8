//! Known-answer tests: the GCM specification's test cases (McGrew & Viega,
//! as reused by NIST SP 800-38D and RFC 4106) and a NIST CAVS AAD-only case,
//! run through every backend this CPU offers.

use super::{AesGcm, CryptoError, TAG_LEN};

struct Vector {
    key: &'static str,
    iv: &'static str,
    aad: &'static str,
    pt: &'static str,
    ct: &'static str,
    tag: &'static str,
}

const P64: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                   1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const P60: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                   1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
const K128: &str = "feffe9928665731c6d6a8f9467308308";
const K256: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const IV: &str = "cafebabefacedbaddecaf888";
const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

const VECTORS: &[Vector] = &[
    // Test case 1: empty plaintext, empty AAD.
    Vector {
        key: "00000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "",
        ct: "",
        tag: "58e2fccefa7e3061367f1d57a4e7455a",
    },
    // Test case 2: one zero block.
    Vector {
        key: "00000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "00000000000000000000000000000000",
        ct: "0388dace60b6a392f328c2b971b2fe78",
        tag: "ab6e47d42cec13bdf53a67b21257bddf",
    },
    // Test case 3: four blocks, no AAD.
    Vector {
        key: K128,
        iv: IV,
        aad: "",
        pt: P64,
        ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
    },
    // Test case 4: 60 bytes (not a block multiple) with 20 bytes of AAD.
    Vector {
        key: K128,
        iv: IV,
        aad: AAD,
        pt: P60,
        ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        tag: "5bc94fbc3221a5db94fae95ae7121a47",
    },
    // NIST CAVS gcmEncryptExtIV128: AAD only, empty plaintext.
    Vector {
        key: "77be63708971c4e240d1cb79e8d77feb",
        iv: "e0e00f19fed7ba0136a797f3",
        aad: "7a43ec1d9c0a5a78a0b16533a6213cab",
        pt: "",
        ct: "",
        tag: "209fcc8d3675ed938e9c7166709dd946",
    },
    // Test case 13: AES-256, empty.
    Vector {
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "",
        ct: "",
        tag: "530f8afbc74536b9a963b4f1c4cb738b",
    },
    // Test case 14: AES-256, one zero block.
    Vector {
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        iv: "000000000000000000000000",
        aad: "",
        pt: "00000000000000000000000000000000",
        ct: "cea7403d4d606b6e074ec5d3baf39d18",
        tag: "d0d1c8a799996bf0265b98b5d48ab919",
    },
    // Test case 15: AES-256, four blocks.
    Vector {
        key: K256,
        iv: IV,
        aad: "",
        pt: P64,
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        tag: "b094dac5d93471bdec1a502270e3cc6c",
    },
    // Test case 16: AES-256, 60 bytes with AAD.
    Vector {
        key: K256,
        iv: IV,
        aad: AAD,
        pt: P60,
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in test vector: {e}"))
}

/// Every backend this CPU runs, plus the default choice.
fn backends(key: &[u8]) -> Vec<AesGcm> {
    let mut all = AesGcm::all_backends(key).expect("valid key length");
    all.push(AesGcm::new(key).expect("valid key length"));
    all
}

#[test]
fn gcm_spec_vectors_seal_and_open() {
    for (i, v) in VECTORS.iter().enumerate() {
        let nonce: [u8; 12] = h(v.iv).try_into().expect("12-byte IV");
        for g in backends(&h(v.key)) {
            let mut buf = h(v.pt);
            let tag = g.seal_in_place(&nonce, &h(v.aad), &mut buf);
            assert_eq!(hex::encode(&buf), v.ct, "vector {i} ct, {}", g.backend());
            assert_eq!(hex::encode(tag), v.tag, "vector {i} tag, {}", g.backend());
            g.open_in_place(&nonce, &h(v.aad), &mut buf, &tag)
                .unwrap_or_else(|e| panic!("vector {i} open, {}: {e}", g.backend()));
            assert_eq!(hex::encode(&buf), v.pt, "vector {i} pt, {}", g.backend());
        }
    }
}

#[test]
fn tampering_is_rejected_and_plaintext_withheld() {
    let key = h(K128);
    let nonce: [u8; 12] = h(IV).try_into().expect("12-byte IV");
    let aad = h(AAD);
    for g in backends(&key) {
        let mut ct = h(P64);
        let tag = g.seal_in_place(&nonce, &aad, &mut ct);

        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        let mut buf = ct.clone();
        assert_eq!(
            g.open_in_place(&nonce, &aad, &mut buf, &bad_tag),
            Err(CryptoError::AuthFailed)
        );
        assert!(
            buf.iter().all(|&b| b == 0),
            "{}: plaintext leaked",
            g.backend()
        );

        let mut buf = ct.clone();
        buf[17] ^= 0x80;
        assert_eq!(
            g.open_in_place(&nonce, &aad, &mut buf, &tag),
            Err(CryptoError::AuthFailed)
        );

        let mut bad_aad = aad.clone();
        bad_aad[0] ^= 1;
        let mut buf = ct.clone();
        assert_eq!(
            g.open_in_place(&nonce, &bad_aad, &mut buf, &tag),
            Err(CryptoError::AuthFailed)
        );

        let mut bad_nonce = nonce;
        bad_nonce[11] ^= 1;
        let mut buf = ct.clone();
        assert_eq!(
            g.open_in_place(&bad_nonce, &aad, &mut buf, &tag),
            Err(CryptoError::AuthFailed)
        );

        let mut buf = ct.clone();
        assert_eq!(g.open_in_place(&nonce, &aad, &mut buf, &tag), Ok(()));
        assert_eq!(buf, h(P64));
    }
}

#[test]
fn wrong_key_lengths_error() {
    for n in [0usize, 1, 15, 17, 24, 31, 33, 64] {
        let key = vec![0u8; n];
        assert_eq!(AesGcm::new(&key).err(), Some(CryptoError::KeyLength(n)));
        assert_eq!(
            AesGcm::new_portable(&key).err(),
            Some(CryptoError::KeyLength(n))
        );
    }
    assert_eq!(AesGcm::new(&[0u8; 16]).map(|g| g.key_len()), Ok(16));
    assert_eq!(AesGcm::new(&[0u8; 32]).map(|g| g.key_len()), Ok(32));
}

#[test]
fn debug_does_not_print_key_material() {
    let key = [0xa5u8; 16];
    let g = AesGcm::new(&key).expect("valid key length");
    let s = format!("{g:?}");
    assert!(!s.contains("a5"), "{s}");
    assert!(!s.to_lowercase().contains("165"), "{s}");
    assert!(s.contains("key_len: 16"), "{s}");
}

#[test]
fn shared_across_threads() {
    let g = std::sync::Arc::new(AesGcm::new(&h(K128)).expect("valid key length"));
    let nonce: [u8; 12] = h(IV).try_into().expect("12-byte IV");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let g = std::sync::Arc::clone(&g);
            std::thread::spawn(move || {
                let mut buf = h(P64);
                let tag: [u8; TAG_LEN] = g.seal_in_place(&nonce, &[], &mut buf);
                (buf, tag)
            })
        })
        .collect();
    for w in workers {
        let (buf, tag) = w.join().expect("worker thread");
        assert_eq!(hex::encode(buf), VECTORS[2].ct);
        assert_eq!(hex::encode(tag), VECTORS[2].tag);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn fast_backend_chosen_when_cpu_supports_it() {
    let g = AesGcm::new(&[1u8; 16]).expect("valid key length");
    let has = is_x86_feature_detected!("aes") && is_x86_feature_detected!("pclmulqdq");
    let wide = has && is_x86_feature_detected!("vaes") && is_x86_feature_detected!("vpclmulqdq");
    let b = g.backend();
    assert_eq!(!b.starts_with("portable"), has, "{b}");
    assert_eq!(
        b.starts_with("vaes"),
        wide && is_x86_feature_detected!("avx2"),
        "{b}"
    );
    let n = AesGcm::all_backends(&[1u8; 16]).map(|v| v.len());
    assert_eq!(
        n,
        Ok(1 + usize::from(has) + usize::from(b.starts_with("vaes")))
    );
}

/// Keyed in place (`unkeyed` then `set_key`, or `new_boxed`), every backend
/// gives the spec's answers, and a key of the wrong length changes nothing.
#[test]
fn keys_set_in_place_give_the_spec_answers() {
    for v in VECTORS {
        let key = h(v.key);
        let (iv, aad, pt) = (h(v.iv), h(v.aad), h(v.pt));
        let nonce: [u8; 12] = iv.as_slice().try_into().unwrap();
        let mut fast = AesGcm::unkeyed(key.len()).unwrap();
        fast.set_key(&key).unwrap();
        // The portable backend, re-keyed: made for a zero key first.
        let mut portable = AesGcm::new_portable(&vec![0; key.len()]).unwrap();
        portable.set_key(&key).unwrap();
        let boxed = AesGcm::new_boxed(&key).unwrap();
        for k in [&fast, &portable, &*boxed] {
            let mut data = pt.clone();
            let tag = k.seal_in_place(&nonce, &aad, &mut data);
            assert_eq!((data, tag.to_vec()), (h(v.ct), h(v.tag)), "{}", k.backend());
        }
        assert_eq!(fast.set_key(&key[..8]), Err(CryptoError::KeyLength(8)));
        let mut data = pt.clone();
        assert_eq!(
            fast.seal_in_place(&nonce, &aad, &mut data).to_vec(),
            h(v.tag)
        );
    }
    assert_eq!(AesGcm::unkeyed(24).err(), Some(CryptoError::KeyLength(24)));
    assert!(AesGcm::new_boxed(&[0; 15]).is_err());
}

#[test]
fn an_aes_128_key_answers_the_same_whatever_its_unread_tail_holds() {
    let key = [0x42u8; 16];
    let reference = AesGcm::new_portable(&key).expect("valid key length");
    let nonce = [7u8; 12];
    let mut fast = AesGcm::all_backends(&key).expect("valid key length");
    fast.pop(); // the portable one
    for mut g in fast {
        let tail = g.unread_tail();
        assert_eq!(tail, 64, "AES-128 on AES-NI leaves 4 round keys unread");
        // Scribble over the tail: the answers must not change.
        let end = std::ptr::from_mut(&mut g).cast::<u8>();
        // SAFETY: the tail is the last `tail` bytes of `g`, plain data
        // (round keys) with no invariants.
        unsafe {
            std::ptr::write_bytes(end.add(size_of::<AesGcm>() - tail), 0xa5, tail);
        }
        // Short (straight-line) and long (8-block, wide when the CPU has it).
        for len in [64usize, 1400] {
            let (mut a, mut b) = (vec![3u8; len], vec![3u8; len]);
            let tag = g.seal_in_place(&nonce, b"aad", &mut a);
            assert_eq!(tag, reference.seal_in_place(&nonce, b"aad", &mut b));
            assert_eq!(a, b, "{len} bytes, {}", g.backend());
            g.open_in_place(&nonce, b"aad", &mut a, &tag)
                .unwrap_or_else(|e| panic!("{len} bytes, {}: {e}", g.backend()));
        }
    }
    let aes256 = AesGcm::new(&[1u8; 32]).expect("valid key length");
    assert_eq!(aes256.unread_tail(), 0);
}
