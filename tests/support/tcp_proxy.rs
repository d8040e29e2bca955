//! A TCP proxy a test can cut: put in front of the API server (TLS passes
//! through untouched; the certificate names 127.0.0.1, whatever the port),
//! it forwards bytes both ways until [`TcpProxy::cut`], after which nothing
//! passes in either direction and nothing is closed: open connections and
//! new ones hang, as behind a network partition. The client finds out only
//! by its own timeouts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running proxy; dropping it stops it.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Forwards connections to `target`, on a thread of its own.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the TCP proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let flag = cut.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let flag = flag.clone();
                        tokio::spawn(async move {
                            if flag.load(Ordering::SeqCst) {
                                // A black hole: accepted, never answered.
                                let _keep = &client;
                                std::future::pending::<()>().await;
                            }
                            let Ok(upstream) = tokio::net::TcpStream::connect(target).await else {
                                return;
                            };
                            let (cr, cw) = client.into_split();
                            let (ur, uw) = upstream.into_split();
                            tokio::join!(pipe(cr, uw, flag.clone()), pipe(ur, cw, flag));
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
        });
        TcpProxy {
            addr,
            cut,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing passes, and nothing is closed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, or forever once cut (the
/// bytes read then are dropped, and both ends stay open).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A copy of `kubeconfig` (in `dir`) whose cluster is reached through `proxy`.
pub fn kubeconfig_via(kubeconfig: &Path, proxy: SocketAddr, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let rewritten: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server: https://") {
            Some(_) => format!(
                "{}server: https://{proxy}\n",
                &l[..l.len() - l.trim_start().len()]
            ),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(rewritten, text, "no `server: https://` in {kubeconfig:?}");
    let path = dir.join("kubeconfig-via-proxy");
    std::fs::write(&path, rewritten).unwrap();
    path
}

/// The API server's address in `kubeconfig`.
pub fn api_server(kubeconfig: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("server: https://"))
        .and_then(|hostport| hostport.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `server: https://IP:PORT` in {kubeconfig:?}"))
}
