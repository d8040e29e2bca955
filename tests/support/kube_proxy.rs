//! A fault-injecting HTTPS proxy in front of the stack's kube-apiserver.
//!
//! The API server never throttles a client this small, never fails and never
//! loses an answer, so kftenant's handling of those (a failed observation
//! plans nothing; a Profile apply whose answer was lost converges on the next
//! run) needs something in between, as the IAM proxy does for moto.
//!
//! **TLS.** A TCP relay could close connections without terminating TLS, but
//! it could not tell a Profile apply from a LIST, and the faults here are per
//! request. So the proxy terminates TLS with the API server's own serving
//! certificate (the stack's CA signed it for `127.0.0.1`), and a client keeps
//! its kubeconfig unchanged but for the server address
//! ([`KubeProxy::kubeconfig`]). Each request goes on over a new TLS connection
//! with the stack's admin client certificate: whoever the client is, the API
//! server sees the admin (the proxy is for faults, not for RBAC).
//!
//! A rule matches a method (or any) and a text in the path (`/profiles`), and
//! answers a status with a Kubernetes `Status` body (429 with `Retry-After`,
//! 500), closes the connection before forwarding, forwards then closes without
//! passing the answer on (the write landed, the client never hears), or
//! delays. Every request is logged with its outcome.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Stack;

/// What a firing rule does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeFault {
    /// Answer this HTTP status with a `Status` body (429 adds `Retry-After: 1`).
    Status(u16),
    /// Close the connection without forwarding.
    Reset,
    /// Forward, then close the connection without passing the answer on.
    ResetAfter,
    /// Forward, then answer this status instead of the API server's answer.
    StatusAfter(u16),
    /// Wait, then go on.
    Latency(Duration),
}

/// One rule; the first firing rule decides the request.
#[derive(Clone, Debug)]
pub struct KubeRule {
    /// `GET`, `PATCH`, ...; `None` for any.
    pub method: Option<String>,
    /// Text the path (without the query) must contain.
    pub path_contains: String,
    pub fault: KubeFault,
    /// Fire on the next N matching requests only.
    pub next: Option<u64>,
}

impl KubeRule {
    pub fn new(method: Option<&str>, path_contains: &str, fault: KubeFault) -> Self {
        KubeRule {
            method: method.map(String::from),
            path_contains: path_contains.to_string(),
            fault,
            next: None,
        }
    }

    #[must_use]
    pub fn next(mut self, n: u64) -> Self {
        self.next = Some(n);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && path.contains(&self.path_contains)
    }
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The fault that fired, if any.
    pub fault: Option<KubeFault>,
    /// The API server's status, when the request reached it.
    pub upstream_status: Option<u16>,
}

impl Logged {
    /// Anything but a read.
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

#[derive(Default)]
struct Inner {
    rules: Vec<KubeRule>,
    log: Vec<Logged>,
}

struct Shared {
    inner: Mutex<Inner>,
    upstream: SocketAddr,
    connector: TlsConnector,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decide(&self, method: &str, path: &str) -> (Duration, Option<KubeFault>) {
        let mut inner = self.lock();
        let mut delay = Duration::ZERO;
        for rule in inner.rules.iter_mut() {
            if !rule.matches(method, path) {
                continue;
            }
            match rule.next.as_mut() {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            match rule.fault {
                KubeFault::Latency(d) => delay += d,
                other => return (delay, Some(other)),
            }
        }
        (delay, None)
    }
}

/// A running proxy; dropping it stops it.
pub struct KubeProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: tempfile::NamedTempFile,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn pem_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

impl KubeProxy {
    /// A proxy in front of `stack`'s API server, on its own thread.
    pub fn start(stack: &Stack) -> KubeProxy {
        let pki = PathBuf::from(
            stack
                .vars
                .get("KFTENANT_STACK_DIR")
                .expect("the stack env names KFTENANT_STACK_DIR"),
        )
        .join("pki");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                pem_certs(&pki.join("serving.crt")),
                pem_key(&pki.join("serving.key")),
            )
            .expect("the API server's serving certificate");
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        for ca in pem_certs(&pki.join("ca.crt")) {
            roots.add(ca).expect("the stack CA");
        }
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                pem_certs(&pki.join("admin.crt")),
                pem_key(&pki.join("admin.key")),
            )
            .expect("the admin client certificate");
        let kubeconfig_text =
            std::fs::read_to_string(stack.kubeconfig()).expect("read the stack kubeconfig");
        let server_line = kubeconfig_text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .expect("the kubeconfig names an https server")
            .to_string();
        let upstream: SocketAddr = server_line
            .parse()
            .expect("the stack's API server is an IP:port");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the kube proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut kubeconfig,
            kubeconfig_text
                .replace(
                    &format!("server: https://{server_line}"),
                    &format!("server: https://{addr}"),
                )
                .as_bytes(),
        )
        .unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::default(),
            upstream,
            connector: TlsConnector::from(Arc::new(client)),
        });
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kube-proxy-{}", addr.port()))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the kube proxy")
                    .block_on(serve(listener, server_shared, acceptor, rx));
            })
            .expect("spawn the kube proxy");
        KubeProxy {
            shared,
            addr,
            kubeconfig,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The stack's kubeconfig with this proxy as the server.
    pub fn kubeconfig(&self) -> &Path {
        self.kubeconfig.path()
    }

    pub fn add(&self, rule: KubeRule) {
        self.shared.lock().rules.push(rule);
    }

    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.lock().log.clone()
    }

    /// Forget the log (not the rules).
    pub fn reset_log(&self) {
        self.shared.lock().log.clear();
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Returned to make hyper close the connection unanswered.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault rule")
    }
}

impl std::error::Error for Reset {}

fn status(code: u16) -> Response<Full<Bytes>> {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "too many requests, please try again later",
        ),
        500 => (
            "InternalError",
            "an error on the server has prevented the request from succeeding",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        _ => ("", "injected by the kube proxy"),
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if code == 429 {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let (delay, fault) = shared.decide(&method, &path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let log = |upstream_status: Option<u16>| {
        shared.lock().log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            fault: fault.or((!delay.is_zero()).then_some(KubeFault::Latency(delay))),
            upstream_status,
        })
    };
    match fault {
        Some(KubeFault::Status(code)) => {
            log(None);
            return Ok(status(code));
        }
        Some(KubeFault::Reset) => {
            log(None);
            return Err(Reset);
        }
        _ => {}
    }
    let answer = forward(&shared, &parts, body).await;
    let (mut response, body) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            log(None);
            let mut r = Response::new(Full::new(Bytes::from(format!("kube proxy: {e}\n"))));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(r);
        }
    };
    log(Some(response.status.as_u16()));
    match fault {
        Some(KubeFault::ResetAfter) => return Err(Reset),
        Some(KubeFault::StatusAfter(code)) => return Ok(status(code)),
        _ => {}
    }
    response.headers.remove(CONTENT_LENGTH);
    response.headers.remove(TRANSFER_ENCODING);
    Ok(Response::from_parts(response, Full::new(body)))
}

/// One request to the API server over a new TLS connection as the admin.
async fn forward(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(shared.upstream)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::IpAddress(shared.upstream.ip().into());
    let tls = shared
        .connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let headers = request.headers_mut().expect("a valid request so far");
    for (name, value) in &parts.headers {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
            headers.append(name, value.clone());
        }
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("read: {e}"))?
        .to_bytes();
    Ok((parts, body))
}
