//! One planning pass over 10,000 synthetic tenants, reporting wall time per
//! stage and memory: the RSS holding the planner's inputs, and the peak while
//! planning. Used by `scripts/bench-plan`; run with
//! `cargo run --release --example plan-10k [N]`.

use kftenant::observed::Observed;
use kftenant::plan::{PlanOptions, plan};
use kftenant::{desired, model};
use std::time::Instant;

#[path = "../benches/synthetic.rs"]
mod synthetic;

fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
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
    // The planner's inputs are the desired and observed worlds: free the rest,
    // then reset the peak (Linux: clear_refs 5) so VmHWM measures planning.
    drop((src, repo));
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let inputs = status_mib("VmRSS:");
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
        "RSS holding the desired and observed worlds: {inputs:.1} MiB; peak while planning: {:.1} MiB",
        status_mib("VmHWM:")
    );
}
