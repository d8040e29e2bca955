//! Writes the synthetic tenant repository of the benchmarks to a folder:
//! `cargo run --example gen-repo -- DIR [TENANTS]` (default 1,000 tenants).

use std::path::PathBuf;

#[path = "../benches/synthetic.rs"]
mod synthetic;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: gen-repo DIR [TENANTS]"));
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    for (path, text) in synthetic::repository(n).0 {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("files are in folders"))?;
        std::fs::write(file, text)?;
    }
    println!("wrote {n} tenants to {}", dir.display());
    Ok(())
}
