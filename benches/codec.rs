//! HmacFrameCodec encode and decode by frame size.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secure_link::HmacFrameCodec;
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
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
