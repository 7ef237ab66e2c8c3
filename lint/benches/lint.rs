//! Messages linted per second on one core: a typical 60 KB HTML newsletter
//! and a 3 KB receipt, from raw bytes (MIME parse included) to report.
//!
//! `cargo bench -p mailroom-lint --bench lint`; figures in docs/performance.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lint::{Email, Options, Stream, lint};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lint");
    group.throughput(Throughput::Elements(1));
    for (name, stream) in [
        ("newsletter.eml", Stream::Marketing),
        ("receipt.eml", Stream::Transactional),
    ] {
        let raw = fixture(name);
        let options = Options {
            stream,
            ..Options::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let email = Email::parse(std::hint::black_box(&raw)).expect("fixture parses");
                lint(&email, &options)
            })
        });
    }
    group.finish();
}

/// The hostile inputs of tests/robustness.rs, timed: how long "a moment" is.
fn stress(c: &mut Criterion) {
    let mut group = c.benchmark_group("stress");
    group.sample_size(10);
    let deep = format!("{}text{}", "<div>".repeat(10_000), "</div>".repeat(10_000));
    let email = Email::from_html(deep);
    group.bench_function("10000-deep-divs", |b| {
        b.iter(|| lint(&email, &Options::default()))
    });
    let paragraph = "<p>Plenty of ordinary text about boots, jackets and socks, with a \
                     <a href=\"https://shop.example/p\">link</a> now and then.</p>\r\n";
    let mut raw = String::from(
        "From: Shop <news@shop.example>\r\nSubject: Big\r\nContent-Type: text/html\r\n\r\n",
    );
    while raw.len() < 20 * 1024 * 1024 {
        raw.push_str(paragraph);
    }
    group.bench_function("20MB-message", |b| {
        b.iter(|| {
            let email = Email::parse(raw.as_bytes()).expect("parses");
            lint(&email, &Options::default())
        })
    });
    group.finish();
}

criterion_group!(benches, bench, stress);
criterion_main!(benches);
