//! The fault-injecting IAM proxy of the integration tests, standalone, for
//! benchmark and demo scripts.
//!
//! ```sh
//! source "$(scripts/stack env)"
//! cargo run --example iam-proxy -- --upstream "$AWS_ENDPOINT_URL" [--listen 127.0.0.1:4599] [--account-id 111122223333]
//! # prints the proxy URL on its first line, then serves until Ctrl-C
//! curl -s -XPOST localhost:4599/_proxy/faults -d '{"action":"*","fault":"throttle","rate":0.1,"seed":1}'
//! AWS_ENDPOINT_URL=http://127.0.0.1:4599 kftenant apply ...
//! curl -s localhost:4599/_proxy/counts
//! ```
//!
//! The rules and endpoints are documented in `tests/support/proxy.rs`.

#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::net::SocketAddr;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut upstream = None;
    let mut config_listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut account_id = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--upstream" => upstream = Some(value()?),
            "--listen" => config_listen = value()?.parse().context("--listen ADDR:PORT")?,
            "--account-id" => account_id = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: iam-proxy --upstream URL [--listen 127.0.0.1:PORT] [--account-id ID]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    let Some(upstream) = upstream else {
        bail!("--upstream URL is required (moto's URL, e.g. $AWS_ENDPOINT_URL of the stack)");
    };
    let mut config = proxy::ProxyConfig::new(upstream);
    config.listen = config_listen;
    if let Some(id) = account_id {
        config = config.account_id(id);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        println!("http://{}", listener.local_addr()?);
        let shared = proxy::Shared::new(config);
        proxy::serve(listener, shared, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(())
    })
}
