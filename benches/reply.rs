//! Criterion benchmark of checking an agent's reply, the work every page costs the
//! supervisor: `CheckedReply::parse` (the project's scanner) against serde_json reading
//! the same shape with the pages kept raw (how replies were read before it).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use neuralflow_swarm::pdf::demo::{write_corpus, DemoSpec};
use neuralflow_swarm::pdf::wire::{CheckedReply, PageReply};
use serde_json::value::RawValue;
use std::hint::black_box;

/// A reply of 16 generated pages, as an agent writes it.
fn reply() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-reply-{}", std::process::id()));
    let spec = DemoSpec {
        documents: 1,
        min_pages: 16,
        max_pages: 16,
        ..DemoSpec::default()
    };
    let docs = write_corpus(&dir, spec).expect("corpus");
    let doc = neuralflow_swarm::pdf::extract_file(&docs[0].path);
    let _ = std::fs::remove_dir_all(&dir);
    let mut reply = PageReply {
        page_count: doc.page_count,
        first: 1,
        ..PageReply::default()
    };
    for p in doc.pages {
        reply.push(p);
    }
    reply.encode().expect("encodes")
}

fn check(c: &mut Criterion) {
    let bytes = reply();
    let mut g = c.benchmark_group("reply/check");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("scan", |b| {
        b.iter(|| CheckedReply::parse(black_box(bytes.clone())).expect("valid"))
    });
    g.bench_function("serde_json_raw", |b| {
        b.iter(|| {
            let copy = black_box(bytes.clone());
            let r: PageReply<&RawValue> = serde_json::from_slice(&copy).expect("valid");
            black_box(r.pages.len())
        })
    });
    g.bench_function("copy_only", |b| b.iter(|| black_box(bytes.clone())));
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
