//! Ids: generation under contention against the 4,096-per-millisecond bound,
//! Base62 against the `base62` crate, and the cost of the code permutation.
//!
//! Run: `cargo bench -p snowlink-benches --bench ids`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use snowlink_id::{base62, CodeCodec, Generator, GeneratorConfig};

/// Ids per second one worker may issue: 4,096 per millisecond.
const BOUND_PER_SEC: f64 = 4_096_000.0;

/// `threads` threads each take `per_thread` ids from one shared generator;
/// returns the wall time.
fn hammer(threads: usize, per_thread: u64) -> Duration {
    let g = Arc::new(Generator::new(GeneratorConfig::new(1).unwrap()));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let g = g.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    black_box(g.next_id().unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn contended(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("next_id/{threads}_threads"), |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads as u64);
            // Time per id across all threads: the generator's throughput.
            hammer(threads, per_thread).div_f64((per_thread * threads as u64) as f64 / iters as f64)
        })
    });
    group.finish();

    // A direct reading for the results table: ids per second from one
    // generator hammered by every core, as a fraction of the bound.
    let per_thread = 2_000_000u64;
    let rate = (per_thread * threads as u64) as f64 / hammer(threads, per_thread).as_secs_f64();
    println!(
        "ids/contended: {rate:.0} ids/s with {threads} threads = {:.3} of the 4096/ms bound",
        rate / BOUND_PER_SEC
    );
}

fn encoding(c: &mut Criterion) {
    let values: Vec<u64> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let mut group = c.benchmark_group("base62");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("encode/snowlink", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|&v| base62::encode(v).len())
                .sum::<usize>()
        })
    });
    group.bench_function("encode/base62_crate", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|&v| ::base62::encode(v).len())
                .sum::<usize>()
        })
    });
    let ours: Vec<String> = values.iter().map(|&v| base62::encode(v)).collect();
    let theirs: Vec<String> = values.iter().map(|&v| ::base62::encode(v)).collect();
    assert_eq!(ours, theirs, "same alphabet, same output");
    group.bench_function("decode/snowlink", |b| {
        b.iter(|| ours.iter().map(|s| base62::decode(s).unwrap()).sum::<u64>())
    });
    group.bench_function("decode/base62_crate", |b| {
        b.iter(|| {
            theirs
                .iter()
                .map(|s| ::base62::decode(s).unwrap() as u64)
                .sum::<u64>()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let keyed = CodeCodec::keyed(b"bench secret");
    let sequential = CodeCodec::sequential();
    group.bench_function("permute/keyed", |b| {
        b.iter_batched(
            || 0x0123_4567_89AB_CDEFu64,
            |v| keyed.permute(v),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("encode/keyed", |b| b.iter(|| keyed.encode(black_box(42))));
    group.bench_function("encode/sequential", |b| {
        b.iter(|| sequential.encode(black_box(42)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = contended, encoding
}
criterion_main!(benches);
