//! HmacFrameCodec encode and decode by frame size, and HMAC-SHA256 alone:
//! RustCrypto `hmac` + `sha2` (what the codec uses) against the TLS crypto
//! provider's HMAC (aws-lc-rs or ring). From 16 KiB up both run at the
//! speed of SHA-256 itself, which bounds a link's throughput (BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use secure_link::rustls::SupportedCipherSuite;
use secure_link::rustls::crypto::hash::HashAlgorithm;
use secure_link::rustls::crypto::tls13::{Hkdf, OkmBlock};
use secure_link::{HmacFrameCodec, tls};
use sha2::Sha256;
use tokio_util::codec::{Decoder, Encoder};

const SIZES: [usize; 5] = [64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024];

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in SIZES {
        let payload = Bytes::from(vec![0x5a; size]);
        let mut codec = HmacFrameCodec::new(&b"benchmark key"[..]).with_max_frame_len(size);
        group.throughput(Throughput::Bytes(size as u64));

        let mut dst = BytesMut::with_capacity(size + 64);
        group.bench_with_input(BenchmarkId::new("encode", size), &payload, |b, payload| {
            b.iter(|| {
                dst.clear();
                codec.encode(payload.clone(), &mut dst).unwrap();
            })
        });

        let mut frame = BytesMut::new();
        codec.encode(payload.clone(), &mut frame).unwrap();
        let frame = frame.freeze();
        group.bench_with_input(BenchmarkId::new("decode", size), &frame, |b, frame| {
            b.iter(|| {
                let mut src = BytesMut::from(&frame[..]);
                codec.decode(&mut src).unwrap().unwrap()
            })
        });

        // Two whole frames in the buffer: from 512 bytes up the decoder
        // verifies them together, hashes interleaved. Throughput counts
        // both payloads.
        let mut two = BytesMut::new();
        codec.encode(payload.clone(), &mut two).unwrap();
        codec.encode(payload.clone(), &mut two).unwrap();
        let two = two.freeze();
        group.throughput(Throughput::Bytes(2 * size as u64));
        group.bench_with_input(BenchmarkId::new("decode-two", size), &two, |b, two| {
            b.iter(|| {
                let mut src = BytesMut::from(&two[..]);
                let first = codec.decode(&mut src).unwrap().unwrap();
                let second = codec.decode(&mut src).unwrap().unwrap();
                (first, second)
            })
        });
    }
    group.finish();
}

/// The HMAC-SHA256 of the crypto provider the link's TLS uses.
fn provider_hmac() -> &'static dyn Hkdf {
    tls::provider()
        .cipher_suites
        .iter()
        .find_map(|suite| match suite {
            SupportedCipherSuite::Tls13(s)
                if s.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
            {
                Some(s.hkdf_provider)
            }
            _ => None,
        })
        .unwrap()
}

fn hmac(c: &mut Criterion) {
    let mut group = c.benchmark_group("hmac-sha256");
    let key = [0x42; 32];
    let rustcrypto = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    let (provider, okm) = (provider_hmac(), OkmBlock::new(&key));
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        // Keyed once, cloned per message: as HmacFrameCodec does.
        group.bench_with_input(BenchmarkId::new("rustcrypto", size), &payload, |b, p| {
            b.iter(|| {
                let mut mac = rustcrypto.clone();
                mac.update(p);
                mac.finalize().into_bytes()
            })
        });
        // Keyed per call (the only public way); that matters below 1 KiB.
        group.bench_with_input(BenchmarkId::new("provider", size), &payload, |b, p| {
            b.iter(|| provider.hmac_sign(&okm, p))
        });
    }
    group.finish();
}

/// The TLS record protection of the link: AES-256-GCM (the suite rustls
/// negotiates first between two ends of this crate) sealing and opening
/// full 16 KiB records with aws-lc-rs, the provider's own AEAD. With the
/// `hmac-sha256/rustcrypto` and `codec/decode-two` figures this gives the
/// format's throughput floor in BENCHMARKS.md.
fn record_protection(c: &mut Criterion) {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    const RECORD: usize = 16 * 1024;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x11; 32]).unwrap());
    let nonce = |seq: u64| {
        let mut n = [0x22; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let aad = [0x17, 0x03, 0x03, 0x40, 0x11];
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(RECORD as u64));
    let mut record = vec![0x5a; RECORD + 1];
    let mut seq = 0;
    group.bench_function(BenchmarkId::new("aes-256-gcm-seal", RECORD), |b| {
        b.iter(|| {
            seq += 1;
            key.seal_in_place_separate_tag(nonce(seq), Aad::from(aad), &mut record)
                .unwrap()
        })
    });
    let plain = vec![0x5a; RECORD + 1];
    let mut sealed = plain.clone();
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::from(aad), &mut sealed)
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    let mut wire = sealed.clone();
    group.bench_function(BenchmarkId::new("aes-256-gcm-open", RECORD), |b| {
        b.iter(|| {
            wire.copy_from_slice(&sealed);
            key.open_in_place(nonce(0), Aad::from(aad), &mut wire)
                .unwrap()
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec, hmac, record_protection);
criterion_main!(benches);
