//! Bounces read per second on one core, over the fixture set (DSNs and
//! non-standard formats alike) and over Sisimai's corpus of real bounces
//! (`tests/sisimai/maildir`).
//!
//! `cargo bench -p mailroom-list-hygiene --bench bounces`; figures in
//! docs/performance.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut fixtures: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).expect("read"),
            )
        })
        .collect();
    fixtures.sort();
    let mut group = c.benchmark_group("bounce");
    group.throughput(Throughput::Elements(fixtures.len() as u64));
    group.bench_function("parse-all-fixtures", |b| {
        b.iter(|| {
            for (_, raw) in &fixtures {
                std::hint::black_box(list_hygiene::bounce::parse(raw).ok());
            }
        })
    });
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for sub in ["bsd", "not"] {
        let dir = format!("{}/tests/sisimai/maildir/{sub}", env!("CARGO_MANIFEST_DIR"));
        for e in std::fs::read_dir(&dir).expect("the Sisimai corpus") {
            corpus.push(std::fs::read(e.expect("entry").path()).expect("read"));
        }
    }
    group.throughput(Throughput::Elements(corpus.len() as u64));
    group.bench_function("parse-sisimai-corpus", |b| {
        b.iter(|| {
            for raw in &corpus {
                std::hint::black_box(list_hygiene::bounce::parse(raw).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
