//! Planner benchmarks. `cargo bench --bench plan`.
//!
//! Target (issue 2): planning 10,000 tenants against a converged observed
//! world in under 200 ms and 200 MiB peak (peak memory: `scripts/bench-plan`).

use criterion::{Criterion, criterion_group, criterion_main};
use kftenant::model;
use kftenant::plan::desired;
use kftenant::plan::observed::Observed;
use kftenant::plan::{PlanOptions, plan};
use std::hint::black_box;

#[path = "synthetic.rs"]
mod synthetic;

fn bench(c: &mut Criterion) {
    let src = synthetic::repository(10_000);
    let repo = model::load(&src).expect("synthetic repository is valid");
    let want = desired::render(&repo);
    let live = Observed::converged(&want);
    let opts = PlanOptions::default();
    assert!(
        plan(&want, &live, &opts).is_empty(),
        "converged world plans nothing"
    );

    let mut g = c.benchmark_group("10k_tenants");
    g.sample_size(10);
    g.bench_function("plan_converged", |b| {
        b.iter(|| plan(black_box(&want), black_box(&live), &opts))
    });
    g.bench_function("plan_empty_world", |b| {
        b.iter(|| plan(black_box(&want), black_box(&Observed::default()), &opts))
    });
    g.bench_function("load_and_validate", |b| {
        b.iter(|| model::load(black_box(&src)).unwrap())
    });
    g.bench_function("render_desired", |b| {
        b.iter(|| desired::render(black_box(&repo)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
