//! An SA's expanded key is built where it stays: no copy of its round keys
//! is left behind in the dead stack frames its constructor ran in, as a
//! key built by value and moved into place leaves (the control case below
//! shows the scan finds such a copy).
//!
//! The scan reads the stack just below the caller, where the frames of the
//! functions it called before lay. An unoptimised build spills every local
//! to the stack, the key schedule's included, so this runs optimised:
//! `cargo test --release -p dataplane --test key_residue` (CI does).
#![cfg(target_arch = "x86_64")]

use std::hint::black_box;
use std::sync::Arc;

use dataplane::crypto::AesGcm;
use dataplane::packet::Encap;
use dataplane::sa::{
    HardLimits, InboundHandle, InboundSa, InboundSpec, OutboundSa, OutboundSpec, SaTables,
};

/// FIPS-197 appendix A.1: a key and two of its round keys, bytes as they
/// lie in memory. Statics, so the test itself never puts them on the stack.
static KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];
static ROUND_1: [u8; 16] = [
    0xa0, 0xfa, 0xfe, 0x17, 0x88, 0x54, 0x2c, 0xb1, 0x23, 0xa3, 0x39, 0x39, 0x2a, 0x6c, 0x76, 0x05,
];
static ROUND_10: [u8; 16] = [
    0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63, 0x0c, 0xa6,
];

/// How far below the caller the scan looks: far deeper than the
/// constructors' frames, well inside a test thread's 2 MiB stack.
const DEPTH: usize = 64 * 1024;

/// Overwrites the stack below the caller with zeros, so the scan sees only
/// what comes after.
#[inline(never)]
fn wipe_stack() {
    let mut buf = [0u8; DEPTH + 4096];
    black_box(&mut buf);
}

/// Whether the 16 bytes of `pattern` lie at a 16-byte aligned address (as
/// round keys do, being `__m128i`s) in the stack below the caller.
#[inline(never)]
fn stack_below_holds(pattern: &'static [u8; 16]) -> bool {
    let here = 0u8;
    let top = black_box(&here as *const u8) as usize & !15;
    let want = [
        u64::from_ne_bytes(pattern[..8].try_into().unwrap()),
        u64::from_ne_bytes(pattern[8..].try_into().unwrap()),
    ];
    // Past this function's own locals and red zone.
    (1..DEPTH / 16).any(|i| {
        let p = (top - 256 - i * 16) as *const u64;
        // SAFETY: below this thread's stack pointer but inside its stack
        // mapping (DEPTH is far less than the test thread's stack, and
        // `wipe_stack` touched it all): memory that is there to read.
        let got = unsafe {
            [
                std::ptr::read_volatile(p),
                std::ptr::read_volatile(p.add(1)),
            ]
        };
        got == want
    })
}

#[inline(never)]
fn key_built_by_value() -> Box<AesGcm> {
    // black_box makes the value exist in memory before it moves to the heap.
    Box::new(black_box(AesGcm::new(&KEY).unwrap()))
}

fn inbound_spec(spi: u32) -> InboundSpec<'static> {
    InboundSpec {
        spi,
        tunnel: 1,
        owner: 0,
        key: &KEY,
        salt: [1, 2, 3, 4],
        esn: true,
        replay_window: 1024,
        allowed_sources: Vec::new(),
        limits: HardLimits::default(),
    }
}

/// An inbound SA on the heap, one in a table's cell, an outbound SA and a
/// boxed key.
#[inline(never)]
fn sas_built_in_place(
    tables: &SaTables,
) -> (Arc<InboundSa>, InboundHandle, Arc<OutboundSa>, Box<AesGcm>) {
    let inbound = InboundSa::new(inbound_spec(0x0100_0001)).unwrap();
    let in_cell = tables.build_inbound(inbound_spec(0x0100_0002)).unwrap();
    let outbound = OutboundSa::new(OutboundSpec {
        spi: 0x0200_0001,
        tunnel: 1,
        owner: 0,
        key: &KEY,
        salt: [1, 2, 3, 4],
        esn: true,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        limits: HardLimits::default(),
    })
    .unwrap();
    (inbound, in_cell, outbound, AesGcm::new_boxed(&KEY).unwrap())
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "an unoptimised build spills the key schedule's locals: run with --release"
)]
fn keys_expanded_in_place_leave_no_round_keys_on_the_stack() {
    if !AesGcm::new(&[0; 16])
        .unwrap()
        .backend()
        .contains("pclmulqdq")
    {
        eprintln!("no AES-NI here: the portable backend's key moves by value (documented)");
        return;
    }
    wipe_stack();
    let control = key_built_by_value();
    assert!(
        stack_below_holds(&ROUND_1),
        "the scan must find the copy a key built by value leaves behind"
    );
    let tables = SaTables::default();
    wipe_stack();
    let (inbound, in_cell, outbound, boxed) = sas_built_in_place(&tables);
    assert!(in_cell.in_cell());
    let left = [stack_below_holds(&ROUND_1), stack_below_holds(&ROUND_10)];
    assert_eq!(
        left,
        [false, false],
        "round keys 1 and 10 left on the stack"
    );

    // And the keys in place are the right ones: the same ciphertext as the
    // key built by value.
    let nonce = [7u8; 12];
    let mut a = *b"sixteen byte msg and a little more";
    let mut b = a;
    let tag_a = control.seal_in_place(&nonce, b"aad", &mut a);
    let tag_b = boxed.seal_in_place(&nonce, b"aad", &mut b);
    assert_eq!((a, tag_a), (b, tag_b));
    assert_eq!(
        (inbound.spi, in_cell.spi, outbound.spi),
        (0x0100_0001, 0x0100_0002, 0x0200_0001)
    );
}
