//! Criterion benchmarks of the descriptor ring: single-thread push/pop cost, batch sizes,
//! and a two-thread stream, on the heap and inside a shared segment.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neuralflow_swarm::descriptor::Descriptor;
use neuralflow_swarm::ring::{heap_ring, Wait};
use neuralflow_swarm::segment::{Direction, Segment, SegmentConfig};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/push_pop_one");
    let (mut tx, mut rx) = heap_ring::<Descriptor>(1024);
    g.bench_function("heap", |b| {
        b.iter(|| {
            tx.push(black_box(Descriptor::new(1, 0, 1))).unwrap();
            black_box(rx.pop().unwrap())
        })
    });
    let seg = Segment::create(SegmentConfig {
        agent_slots: 1,
        ring_capacity: 1024,
        buffer_size: 4096,
        buffer_count: 4,
        agent_buffers: 2,
        topics: 4,
        topic_capacity: 256,
        state_entries: 1024,
    })
    .unwrap();
    let mut stx = seg.producer(0, Direction::ToAgent).unwrap();
    let mut srx = seg.consumer(0, Direction::ToAgent).unwrap();
    g.bench_function("segment", |b| {
        b.iter(|| {
            stx.push(black_box(Descriptor::new(1, 0, 1))).unwrap();
            black_box(srx.pop().unwrap())
        })
    });
    g.finish();
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/batch_same_thread");
    for batch in [1usize, 8, 32, 128] {
        let (mut tx, mut rx) = heap_ring::<Descriptor>(1024);
        let items = vec![Descriptor::new(1, 0, 1); batch];
        let mut out = Vec::with_capacity(batch);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &n| {
            b.iter(|| {
                assert_eq!(tx.push_batch(black_box(&items)).unwrap(), n);
                out.clear();
                rx.pop_batch(&mut out, n).unwrap();
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/stream_two_threads");
    g.measurement_time(Duration::from_secs(3));
    for batch in [1usize, 64] {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let (mut tx, mut rx) = heap_ring::<Descriptor>(1024);
                let producer = std::thread::spawn(move || {
                    let items = vec![Descriptor::new(1, 0, 1); batch];
                    let mut sent = 0u64;
                    while sent < iters {
                        let n = (iters - sent).min(batch as u64) as usize;
                        let k = tx.push_batch(&items[..n]).unwrap();
                        sent += k as u64;
                        if k == 0 {
                            tx.wait_for_space(Wait::Spin, None).unwrap();
                        }
                    }
                });
                let start = Instant::now();
                let mut got = 0u64;
                let mut out = Vec::with_capacity(1024);
                while got < iters {
                    out.clear();
                    let n = rx.pop_batch(&mut out, 1024).unwrap();
                    got += n as u64;
                    if n == 0 {
                        rx.wait_for_data(Wait::Spin, None).unwrap();
                    }
                }
                let t = start.elapsed();
                producer.join().unwrap();
                t
            })
        });
    }
    g.finish();
}

criterion_group!(benches, push_pop, batches, two_threads);
criterion_main!(benches);
