//! Planning a repository of three clusters (dev and staging in one account,
//! prod in another) with N tenants on every cluster, in the order of
//! `kftenant plan REPO` (every cluster): load and validate every cluster's
//! view, then per cluster render, free, build the converged observed world
//! and plan. Beside it the same N tenants as one cluster, so the cost of
//! clusters is read against today's single-cluster figures. Reports wall time
//! per stage and the peak RSS of each pass (each in its own process, so the
//! peaks do not mix). Used by `scripts/bench-plan`; run with
//! `cargo run --release --example plan-clusters [N] [single|three]`.

use kftenant::model::{self, MemSource};
use kftenant::plan::desired;
use kftenant::plan::observed::Observed;
use kftenant::plan::{PlanOptions, plan};
use std::time::Instant;

#[path = "../benches/synthetic.rs"]
mod synthetic;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The synthetic repository made a three-cluster one: the base keeps the
/// account, cluster files name each cluster's issuer (and prod's account),
/// names carry the cluster.
fn three_clusters(src: MemSource) -> MemSource {
    let base = "[cluster]\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\n\n[iam]\nrole_name_template = \"{tenant}-{cluster}-role\"\npolicy_name_template = \"{policy}-{cluster}\"\npermissions_boundary = \"boundary\"\n\n[prune]\nmax_deletions = 10\n";
    let issuer =
        |id: &str| format!("oidc_issuer = \"oidc.eks.us-west-2.amazonaws.com/id/{id:0<32}\"\n");
    src.with("kftenant.toml", base)
        .with(
            "clusters/dev.toml",
            &format!("[cluster]\n{}", issuer("DEV")),
        )
        .with(
            "clusters/staging.toml",
            &format!("[cluster]\n{}", issuer("STAGING")),
        )
        .with(
            "clusters/prod.toml",
            &format!(
                "[cluster]\naccount_id = \"222222222222\"\n{}",
                issuer("PROD")
            ),
        )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let shape = args.next().unwrap_or_else(|| "three".into());
    let src = match shape.as_str() {
        "single" => synthetic::repository(n),
        _ => three_clusters(synthetic::repository(n)),
    };
    let t = Instant::now();
    let repos = model::load_all(&src).unwrap_or_else(|d| panic!("invalid: {d:#?}"));
    let load = t.elapsed();
    drop(src);
    println!(
        "{shape}: {n} tenants on {} cluster(s); load+validate: {:.1} ms",
        repos.len(),
        load.as_secs_f64() * 1e3
    );
    let (mut render_total, mut plan_total) = (0.0, 0.0);
    for repo in repos {
        let cluster = repo.config.cluster.name.clone();
        let t = Instant::now();
        let want = desired::render(&repo);
        let render = t.elapsed().as_secs_f64() * 1e3;
        drop(repo);
        let live = Observed::converged(&want);
        let t = Instant::now();
        let p = plan(&want, &live, &PlanOptions::default());
        let planned = t.elapsed().as_secs_f64() * 1e3;
        assert!(p.is_empty(), "a converged world plans nothing");
        println!("  {cluster:<16} render {render:>7.1} ms   plan {planned:>7.1} ms");
        render_total += render;
        plan_total += planned;
    }
    println!(
        "  total: load {:.1} ms, render {render_total:.1} ms, plan {plan_total:.1} ms; peak RSS {:.1} MiB",
        load.as_secs_f64() * 1e3,
        peak_rss_mib()
    );
}
