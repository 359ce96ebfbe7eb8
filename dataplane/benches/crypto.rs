//! AES-128-GCM seal/open: esprit (fast and portable backends) vs ring vs
//! OpenSSL, on the same buffers and core, for ESP-sized payloads.
//!
//! Criterion runs first (short measurement times); then a plain repeated
//! timing loop (median of several runs per case) prints a ratio table
//! esprit/ring and esprit/openssl, so the targets are visible in one run.
//! Criterion's open benchmarks restore the ciphertext with one memcpy per
//! call, the same for every implementation. The table times open without
//! it: each call opens its own sealed copy in a batch of 256 KiB (in L2, as
//! a burst of received packets would be), and the copies are restored
//! between batches, outside the timed part. A memcpy just before the open
//! costs as much as a 64-byte open itself (its stores and the open's loads
//! meet in the store buffer), so it hid half the difference at 64 B.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use dataplane::crypto::{AesGcm, TAG_LEN};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use ring::aead;

const SIZES: [usize; 3] = [64, 512, 1400];
const KEY: [u8; 16] = [
    0x4c, 0x80, 0xcd, 0xef, 0xbb, 0x5d, 0x10, 0xda, 0x90, 0x6a, 0xc7, 0x3c, 0x36, 0x13, 0xa6, 0x34,
];
const NONCE: [u8; 12] = [
    0x2e, 0x44, 0x3b, 0x68, 0x49, 0x56, 0xed, 0x7e, 0x3b, 0x24, 0x4c, 0xfe,
];
/// ESP AAD without ESN: SPI || sequence number (RFC 4106 §5).
const AAD: [u8; 8] = [0, 0, 0x43, 0x21, 0, 0, 0, 1];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Seal,
    Open,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Seal => "seal",
            Op::Open => "open",
        }
    }
}

/// One implementation under test, holding its prebuilt key/context.
enum Impl {
    Esprit(&'static str, Box<AesGcm>),
    Ring(Box<aead::LessSafeKey>),
    Openssl(Box<CipherCtx>, Box<CipherCtx>),
}

impl Impl {
    fn all() -> Vec<Impl> {
        let ring_key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_128_GCM, &KEY).expect("ring key"),
        );
        let mut enc = CipherCtx::new().expect("openssl ctx");
        enc.encrypt_init(Some(Cipher::aes_128_gcm()), Some(&KEY), None)
            .expect("openssl init");
        let mut dec = CipherCtx::new().expect("openssl ctx");
        dec.decrypt_init(Some(Cipher::aes_128_gcm()), Some(&KEY), None)
            .expect("openssl init");
        // Fastest first (the default choice), portable last; on a VAES CPU
        // the middle one is the 128-bit AES-NI kernel.
        let mut ours = AesGcm::all_backends(&KEY).expect("key");
        let portable = ours.pop().expect("portable backend");
        let mut out: Vec<Impl> = ours
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                Impl::Esprit(
                    if i == 0 { "esprit" } else { "esprit-aesni128" },
                    Box::new(g),
                )
            })
            .collect();
        out.push(Impl::Esprit("esprit-portable", Box::new(portable)));
        out.push(Impl::Ring(Box::new(ring_key)));
        out.push(Impl::Openssl(Box::new(enc), Box::new(dec)));
        out
    }

    fn name(&self) -> &'static str {
        match self {
            Impl::Esprit(name, _) => name,
            Impl::Ring(_) => "ring",
            Impl::Openssl(..) => "openssl",
        }
    }

    fn seal(&mut self, data: &mut [u8]) -> [u8; TAG_LEN] {
        match self {
            Impl::Esprit(_, g) => g.seal_in_place(&NONCE, &AAD, data),
            Impl::Ring(k) => {
                let t = k
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(NONCE),
                        aead::Aad::from(AAD),
                        data,
                    )
                    .expect("ring seal");
                t.as_ref().try_into().expect("16-byte tag")
            }
            Impl::Openssl(enc, _) => {
                let mut tag = [0u8; TAG_LEN];
                enc.encrypt_init(None, None, Some(&NONCE)).expect("iv");
                enc.cipher_update(&AAD, None).expect("aad");
                let n = data.len();
                enc.cipher_update_inplace(data, n).expect("update");
                enc.cipher_final(&mut []).expect("final");
                enc.tag(&mut tag).expect("tag");
                tag
            }
        }
    }

    fn open(&mut self, data: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        match self {
            Impl::Esprit(_, g) => g.open_in_place(&NONCE, &AAD, data, tag).is_ok(),
            Impl::Ring(k) => {
                let n = data.len();
                k.open_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(NONCE),
                    aead::Aad::from(AAD),
                    aead::Tag::from(*tag),
                    data,
                    0..,
                )
                .map(|p| p.len() == n)
                .unwrap_or(false)
            }
            Impl::Openssl(_, dec) => {
                let ok = dec.decrypt_init(None, None, Some(&NONCE)).is_ok()
                    && dec.set_tag(tag).is_ok()
                    && dec.cipher_update(&AAD, None).is_ok();
                let n = data.len();
                ok && dec.cipher_update_inplace(data, n).is_ok()
                    && dec.cipher_final(&mut []).is_ok()
            }
        }
    }
}

/// One timed case: the sealed input for open, and a scratch buffer.
struct Case {
    plain: Vec<u8>,
    sealed: Vec<u8>,
    tag: [u8; TAG_LEN],
    buf: Vec<u8>,
}

impl Case {
    fn new(size: usize, imp: &mut Impl) -> Case {
        let plain: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        let mut sealed = plain.clone();
        let tag = imp.seal(&mut sealed);
        Case {
            buf: plain.clone(),
            plain,
            sealed,
            tag,
        }
    }

    #[inline]
    fn run(&mut self, imp: &mut Impl, op: Op) {
        match op {
            Op::Seal => {
                black_box(imp.seal(black_box(&mut self.buf)));
            }
            Op::Open => {
                self.buf.copy_from_slice(&self.sealed);
                let ok = imp.open(black_box(&mut self.buf), &self.tag);
                debug_assert!(ok);
                black_box(ok);
            }
        }
    }
}

fn criterion_benches(c: &mut Criterion, impls: &mut [Impl]) {
    for op in [Op::Seal, Op::Open] {
        let mut group = c.benchmark_group(format!("aes128gcm-{}", op.name()));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            for imp in impls.iter_mut() {
                let mut case = Case::new(size, imp);
                group.bench_function(BenchmarkId::new(imp.name(), size), |b| {
                    b.iter(|| case.run(imp, op))
                });
            }
        }
        group.finish();
    }
}

/// Calls per second over one slice of `RUN_TIME`.
fn rate(imp: &mut Impl, case: &mut Case, op: Op) -> f64 {
    const RUN_TIME: Duration = Duration::from_millis(10);
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        for _ in 0..32 {
            case.run(imp, op);
        }
        n += 32;
        let el = start.elapsed();
        if el >= RUN_TIME {
            return n as f64 / el.as_secs_f64();
        }
    }
}

/// Bytes of sealed copies one open batch goes through.
const OPEN_BATCH_BYTES: usize = 256 << 10;

/// Opens per second over `RUN_TIME` of timed batches: each open on a copy
/// of its own; restoring the copies is not timed.
fn open_rate(imp: &mut Impl, case: &Case) -> f64 {
    const RUN_TIME: Duration = Duration::from_millis(10);
    let size = case.sealed.len();
    let copies = (OPEN_BATCH_BYTES / size).max(1);
    let mut batch = case.sealed.repeat(copies);
    let mut timed = Duration::ZERO;
    let mut n: u64 = 0;
    while timed < RUN_TIME {
        for slot in batch.chunks_exact_mut(size) {
            slot.copy_from_slice(&case.sealed);
        }
        let start = Instant::now();
        for slot in batch.chunks_exact_mut(size) {
            let ok = imp.open(black_box(slot), &case.tag);
            debug_assert!(ok);
            black_box(ok);
        }
        timed += start.elapsed();
        n += copies as u64;
    }
    n as f64 / timed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The machine is shared, so implementations are timed in interleaved
/// rounds (each round times every implementation once, back to back) and
/// a ratio is the median of the per-round ratios: a load spike hits both
/// sides of a ratio alike.
fn ratio_table(impls: &mut [Impl]) {
    const ROUNDS: usize = 21;
    println!();
    println!(
        "AES-128-GCM, ESP AAD 8 B, one pinned core; {ROUNDS} interleaved rounds, medians \
         (open: each call on its own sealed copy, {} KiB of them)",
        OPEN_BATCH_BYTES >> 10
    );
    println!(
        "{:<5} {:>6} {:>16} {:>10} {:>8} {:>9} {:>9}",
        "op", "bytes", "impl", "Mcalls/s", "GB/s", "vs ring", "vs ossl"
    );
    for op in [Op::Seal, Op::Open] {
        for size in SIZES {
            let mut cases: Vec<Case> = impls.iter_mut().map(|i| Case::new(size, i)).collect();
            for (imp, case) in impls.iter_mut().zip(cases.iter()) {
                let ok = imp.open(&mut case.sealed.clone(), &case.tag);
                assert!(ok, "{} failed to open its own output", imp.name());
                assert_eq!(case.plain.len(), size);
            }
            let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); impls.len()];
            for _ in 0..ROUNDS {
                for ((imp, case), r) in impls
                    .iter_mut()
                    .zip(cases.iter_mut())
                    .zip(rounds.iter_mut())
                {
                    r.push(match op {
                        Op::Seal => rate(imp, case, op),
                        Op::Open => open_rate(imp, case),
                    });
                }
            }
            let idx = |n: &str| impls.iter().position(|i| i.name() == n);
            let (ring, ossl) = (idx("ring"), idx("openssl"));
            let ratio = |i: usize, base: Option<usize>| match base {
                Some(b) => median(
                    rounds[i]
                        .iter()
                        .zip(rounds[b].iter())
                        .map(|(x, y)| x / y)
                        .collect(),
                ),
                None => f64::NAN,
            };
            for (i, imp) in impls.iter().enumerate() {
                let r = median(rounds[i].clone());
                println!(
                    "{:<5} {:>6} {:>16} {:>10.2} {:>8.2} {:>9.2} {:>9.2}",
                    op.name(),
                    size,
                    imp.name(),
                    r / 1e6,
                    r * size as f64 / 1e9,
                    ratio(i, ring),
                    ratio(i, ossl)
                );
            }
        }
    }
}

fn main() {
    // One core for the whole run: no migrations between measurements.
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.last().copied()) {
        core_affinity::set_for_current(core);
    }
    let mut impls = Impl::all();
    // Every implementation must agree before anything is timed.
    let mut want = vec![0u8; 1400];
    let ring = impls.iter().position(|i| i.name() == "ring").expect("ring");
    let want_tag = impls[ring].seal(&mut want);
    for imp in impls.iter_mut() {
        let mut got = vec![0u8; 1400];
        assert_eq!(imp.seal(&mut got), want_tag, "{} tag", imp.name());
        assert_eq!(got, want, "{} ciphertext", imp.name());
    }
    for imp in &impls {
        if let Impl::Esprit(name, g) = imp {
            println!("{name}: {}", g.backend());
        }
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(20)
        .configure_from_args();
    criterion_benches(&mut c, &mut impls);
    c.final_summary();

    // CRYPTO_BENCH_TABLE=0 skips the table (e.g. when profiling one case).
    if std::env::var("CRYPTO_BENCH_TABLE").as_deref() != Ok("0") {
        ratio_table(&mut impls);
    }
}
