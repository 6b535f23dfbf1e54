//! Criterion benchmarks of the page-buffer slab: allocate/release, payload chains, and the
//! ledger scan that reclaims a dead agent's buffers.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neuralflow_swarm::segment::{Segment, SegmentConfig};
use neuralflow_swarm::slab::Owner;
use std::hint::black_box;

fn segment(buffers: u32) -> std::sync::Arc<Segment> {
    Segment::create(SegmentConfig {
        agent_slots: 2,
        ring_capacity: 64,
        buffer_size: 64 * 1024,
        buffer_count: buffers,
        agent_buffers: buffers,
        topics: 4,
        topic_capacity: 256,
        state_entries: 1024,
    })
    .unwrap()
}

fn alloc_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab/alloc_release");
    for held in [0u32, 900] {
        // `held` buffers of the pool stay allocated, so the scan has to skip them: the
        // supervisor's (which goes on from its last allocation) and an agent's (which
        // starts at its pool's first buffer).
        let seg = segment(1024);
        let slab = seg.slab(0);
        let agent = seg.slab(0).lowest_first();
        for _ in 0..held {
            slab.alloc(Owner::Supervisor).unwrap();
            agent.alloc(Owner::Agent(0)).unwrap();
        }
        for (who, view, owner) in [
            ("supervisor", &slab, Owner::Supervisor),
            ("agent", &agent, Owner::Agent(0)),
        ] {
            g.bench_with_input(BenchmarkId::new(who, held), &held, |b, _| {
                b.iter(|| {
                    let h = view.alloc(owner).unwrap();
                    view.release(black_box(h), owner).unwrap();
                })
            });
        }
    }
    g.finish();
}

fn payloads(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab/payload_write_claim_read_release");
    let seg = segment(256);
    let slab = seg.slab(0);
    for kib in [1usize, 64, 1024] {
        let bytes = vec![7u8; kib * 1024];
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{kib}KiB")),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let h = slab.write_payload(Owner::Agent(0), bytes).unwrap();
                    let len = bytes.len() as u64;
                    slab.claim_chain(h.to_raw(), len, Owner::Agent(0), Owner::Supervisor)
                        .unwrap();
                    let parts = slab.segments(h.to_raw(), len, Owner::Supervisor).unwrap();
                    black_box(parts.iter().map(|p| p[0] as usize).sum::<usize>());
                    slab.release_chain(h.to_raw(), len, Owner::Supervisor)
                        .unwrap();
                })
            },
        );
    }
    g.finish();
}

fn reclaim(c: &mut Criterion) {
    let seg = segment(4096);
    let slab = seg.slab(0);
    c.bench_function("slab/reclaim_scan_4096_buffers_64_held", |b| {
        b.iter(|| {
            for _ in 0..64 {
                slab.alloc(Owner::Agent(1)).unwrap();
            }
            assert_eq!(slab.reclaim(Owner::Agent(1)), 64);
        })
    });
}

criterion_group!(benches, alloc_release, payloads, reclaim);
criterion_main!(benches);
