//! One planning pass over 10,000 synthetic tenants, in the order and with the
//! lifetimes of `kftenant plan REPO --observed SNAPSHOT`: load and validate,
//! render the desired world, free the repository, build the observed world
//! (converged), plan. Reports wall time per stage, memory after each stage,
//! and the peak RSS of the whole process (the target: under 200 ms to
//! plan, under 200 MiB peak). Used by `scripts/bench-plan`; run with
//! `cargo run --release --example plan-10k [N]`.
//!
//! Memory per stage is given twice: the heap in use (what malloc holds for
//! live allocations, headers included) and RSS. The difference is memory
//! freed but not returned to the kernel, plus code and stacks.

use kftenant::model;
use kftenant::plan::desired;
use kftenant::plan::observed::Observed;
use kftenant::plan::{PlanOptions, plan};
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

/// Bytes malloc holds for live allocations, in MiB (glibc only: NaN elsewhere).
/// Read at stage boundaries only, so the timings carry no counting overhead,
/// unlike a counting global allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use_mib() -> f64 {
    // SAFETY: mallinfo2 takes no arguments, only reads malloc's statistics
    // under its own locks, and returns a plain struct by value.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as f64 / (1024.0 * 1024.0)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use_mib() -> f64 {
    f64::NAN
}

/// One row of the memory table: after `stage`, heap in use and RSS.
fn memory_row(stage: &str) -> String {
    format!(
        "  {stage:<22} {:>8.1} {:>8.1}",
        heap_in_use_mib(),
        status_mib("VmRSS:")
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let src = synthetic::repository(n);
    let mut memory = vec![memory_row("repository files")];

    let t = Instant::now();
    let repo = model::load(&src).expect("valid");
    let load = t.elapsed();
    drop(src);
    memory.push(memory_row("repository loaded"));

    let t = Instant::now();
    let want = desired::render(&repo);
    let render = t.elapsed();
    memory.push(memory_row("desired rendered"));
    // As `kftenant plan` does: the repository is not needed once rendered.
    drop(repo);
    memory.push(memory_row("repository freed"));

    let live = Observed::converged(&want);
    memory.push(memory_row("observed built"));

    let t = Instant::now();
    let p = plan(&want, &live, &PlanOptions::default());
    let planned = t.elapsed();
    assert!(p.is_empty());
    memory.push(memory_row("planned"));

    println!("tenants: {n}");
    println!("load+validate: {:.1} ms", load.as_secs_f64() * 1e3);
    println!("render: {:.1} ms", render.as_secs_f64() * 1e3);
    println!(
        "plan (converged): {:.1} ms, {} changes",
        planned.as_secs_f64() * 1e3,
        p.changes.len()
    );
    println!("memory after each stage (MiB): heap in use, RSS");
    for row in memory {
        println!("{row}");
    }
    println!(
        "peak RSS of the whole process: {:.1} MiB",
        status_mib("VmHWM:")
    );
}
