//! Writes the synthetic tenant repository of the benchmarks to a folder:
//! `cargo run --example gen-repo -- DIR [TENANTS] [--account-id ID] [--cluster NAME] [--prefix P]`
//! (default 1,000 tenants in account 123456789012, cluster `kubeflow-bench`,
//! tenants `team-00000`...; a prefix makes them `P-team-00000`..., so runs that
//! share an API server do not meet).

use std::path::PathBuf;

#[path = "../benches/synthetic.rs"]
mod synthetic;

fn main() -> std::io::Result<()> {
    let usage = "usage: gen-repo DIR [TENANTS] [--account-id ID] [--cluster NAME] [--prefix P]";
    let (mut positional, mut account_id, mut cluster, mut prefix) =
        (Vec::new(), None, None, String::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect(usage);
        match arg.as_str() {
            "--account-id" => account_id = Some(value()),
            "--cluster" => cluster = Some(value()),
            "--prefix" => prefix = format!("{}-", value()),
            _ => positional.push(arg),
        }
    }
    let dir = PathBuf::from(positional.first().expect(usage));
    let n: usize = positional
        .get(1)
        .map(|a| a.parse().expect(usage))
        .unwrap_or(1000);
    let defaults = synthetic::Names::default();
    let names = synthetic::Names {
        account_id: account_id.as_deref().unwrap_or(defaults.account_id),
        cluster: cluster.as_deref().unwrap_or(defaults.cluster),
        tenant_prefix: &prefix,
    };
    for (path, text) in synthetic::repository_at(n, &names).0 {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("files are in folders"))?;
        std::fs::write(file, text)?;
    }
    println!("wrote {n} tenants to {}", dir.display());
    Ok(())
}
