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

criterion_group!(benches, codec, hmac);
criterion_main!(benches);
