//! One end-to-end planning pass over 10,000 synthetic tenants, reporting
//! wall time per stage and the process's peak memory (VmHWM). Used by
//! `scripts/bench-plan`; run with `cargo run --release --example plan-10k [N]`.

use kftenant::observed::Observed;
use kftenant::plan::{PlanOptions, plan};
use kftenant::{desired, model};
use std::time::Instant;

#[path = "../benches/synthetic.rs"]
mod synthetic;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let src = synthetic::repository(n);
    let t = Instant::now();
    let repo = model::load(&src).expect("valid");
    let load = t.elapsed();
    let want = desired::render(&repo);
    let live = Observed::converged(&want);
    let t = Instant::now();
    let p = plan(&want, &live, &PlanOptions::default()).expect("not refused");
    let planned = t.elapsed();
    assert!(p.is_empty());
    println!("tenants: {n}");
    println!("load+validate: {:.1} ms", load.as_secs_f64() * 1e3);
    println!(
        "plan (converged): {:.1} ms, {} changes",
        planned.as_secs_f64() * 1e3,
        p.changes.len()
    );
    println!(
        "peak RSS (whole process, incl. the synthetic repo and observed world): {:.1} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}
