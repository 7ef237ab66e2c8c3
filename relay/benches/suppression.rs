//! The suppression check per recipient with 1,000,000 suppressed addresses
//! (target ≤ 50 µs), on SQLite: a recipient nobody suppressed (the common
//! case, answered by the in-memory filter) and a suppressed one (confirmed
//! against the store).
//!
//! `cargo bench -p mailroom-relay --bench suppression`; figures in
//! docs/performance.md.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use relay::domain::Stream;
use relay::store::{Store, SuppressionRecord, now_ms};
use relay::suppression::{Reason, Scope, Suppressions, TargetKind};

const SUPPRESSED: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (store, filter) = rt.block_on(async {
        let store = Store::connect(&url).await.expect("store");
        let now = now_ms();
        let t = Instant::now();
        let rows: Vec<SuppressionRecord> = (0..SUPPRESSED)
            .map(|i| SuppressionRecord {
                scope: if i % 3 == 0 {
                    Scope::Stream(Stream::Marketing)
                } else {
                    Scope::Global
                },
                kind: TargetKind::Address,
                value: format!("user{i}@customer{}.example", i % 5000),
                reason: Reason::HardBounce,
                source: None,
                created_at: now,
                expires_at: None,
            })
            .collect();
        store.insert_suppressions(&rows).await.expect("insert");
        eprintln!("inserted {SUPPRESSED} suppressions in {:?}", t.elapsed());
        let t = Instant::now();
        let filter = Suppressions::load(&store).await.expect("load");
        eprintln!("loaded the filter in {:?}", t.elapsed());
        (store, filter)
    });
    let clean = vec![(
        "someone.new@customer42.example".to_string(),
        "customer42.example".to_string(),
    )];
    let suppressed = vec![(
        "user424242@customer4242.example".to_string(),
        "customer4242.example".to_string(),
    )];
    let mut group = c.benchmark_group("suppression-check-1M");
    group.bench_function("recipient-not-suppressed", |b| {
        b.iter(|| {
            let r = rt
                .block_on(filter.check(&store, Stream::Marketing, &clean))
                .expect("check");
            assert!(r[0].is_none());
        })
    });
    group.bench_function("recipient-suppressed", |b| {
        b.iter(|| {
            let r = rt
                .block_on(filter.check(&store, Stream::Marketing, &suppressed))
                .expect("check");
            assert!(r[0].is_some());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
