//! A git smart-HTTP server for tests: `git http-backend` (the CGI program git
//! ships) behind HTTP Basic auth, on 127.0.0.1 with a free port.
//!
//! It stands in for the HTTPS endpoint of GitHub or GitLab: the same protocol,
//! the same `401` with `WWW-Authenticate: Basic realm="git"` for a missing or
//! wrong credential, the same `x-access-token` user with the token as password.
//! Only the credential check is ours; everything git is done by git itself.
//!
//! Each authorised request is one CGI run (RFC 3875): method, path, query and
//! headers become environment variables (`Authorization` excepted, as the RFC
//! says, so the token never reaches the CGI), the body goes to stdin, and the
//! `Status:` and header lines the CGI prints become the response.
//! - The body is read whole first, so a chunked upload (libgit2 sends one for
//!   a large fetch negotiation) still gets an exact `CONTENT_LENGTH`.
//! - A gzip `Content-Encoding` is handed on as `HTTP_CONTENT_ENCODING` and
//!   http-backend inflates it. git's own client compresses fetch requests over
//!   1 KiB; libgit2 1.9 never compresses (its HTTP transport has no gzip).
//! - `Git-Protocol` is handed on as `HTTP_GIT_PROTOCOL`, so git's client gets
//!   protocol v2 as from a real host.
//!
//! Every request is logged with what it presented (never the password), so a
//! test can count refusals.
//!
//! A missing `git` or `git-http-backend` panics with what to install.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The user name token auth uses, as on GitHub, GitLab and Bitbucket.
pub const TOKEN_USER: &str = "x-access-token";

/// What a request's `Authorization` header held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    /// No `Authorization` header (a client's first try, before the challenge).
    Nothing,
    /// A credential that is not `x-access-token` with the server's token.
    Refused {
        /// The user name sent, or a description of what was sent instead.
        user: String,
    },
    /// `x-access-token` with the server's token.
    Accepted,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Served {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub presented: Presented,
    /// The request's `Content-Encoding` (`gzip` from git's own client).
    pub content_encoding: Option<String>,
    pub status: u16,
    /// What http-backend wrote to stderr (empty when it was not run).
    pub backend_stderr: String,
}

struct State {
    backend: PathBuf,
    project_root: PathBuf,
    token: String,
    served: Mutex<Vec<Served>>,
}

impl State {
    fn served(&self) -> MutexGuard<'_, Vec<Served>> {
        // A test that panicked while holding the lock must not hide the log.
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server. Dropping it stops the server.
pub struct GitHttpServer {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves every repository under `project_root` (`<root>/NAME.git` at
    /// [`GitHttpServer::url`]`("NAME.git")`) to clients that present
    /// `x-access-token` with `token`. Runs on its own thread and runtime, so
    /// blocking callers (git2) and child processes (kftenant) can use it.
    pub fn start(project_root: &Path, token: &str) -> GitHttpServer {
        let backend = http_backend();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let state = Arc::new(State {
            backend,
            project_root: project_root.to_path_buf(),
            token: token.to_string(),
            served: Mutex::default(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the git HTTP server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the listener with tokio");
                    serve(listener, server_state, async {
                        let _ = rx.await;
                    })
                    .await;
                });
            })
            .expect("spawn the git HTTP server thread");
        GitHttpServer {
            state,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/<repo>`, e.g. `url("tenants.git")`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }

    /// Every request answered so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.state.served().clone()
    }

    /// Requests refused although they carried a credential (a wrong token).
    pub fn refused_credentials(&self) -> usize {
        self.state
            .served()
            .iter()
            .filter(|s| matches!(s.presented, Presented::Refused { .. }))
            .count()
    }

    /// The log in a few lines, for assertion messages.
    pub fn describe(&self) -> String {
        self.state
            .served()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} encoding={:?} -> {} {}\n",
                    s.method,
                    s.target,
                    s.presented,
                    s.content_encoding,
                    s.status,
                    s.backend_stderr.trim()
                )
            })
            .collect()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `git-http-backend` program of the installed git, or a panic that says
/// what to install.
pub fn http_backend() -> PathBuf {
    let output = Command::new("git")
        .arg("--exec-path")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `git --exec-path` ({e}): install git (Debian: apt-get install git)")
        });
    assert!(
        output.status.success(),
        "`git --exec-path` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let backend =
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("git-http-backend");
    assert!(
        backend.is_file(),
        "{} not found: the git smart-HTTP tests need git's http-backend \
         (Debian: apt-get install git; it ships git-http-backend)",
        backend.display()
    );
    backend
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            // An error here is a client that went away; not the server's concern.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let content_encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let presented = presented(req.headers().get(AUTHORIZATION), &state.token);
    let (response, backend_stderr) = if presented == Presented::Accepted {
        run_backend(state, req).await
    } else {
        (unauthorized(), String::new())
    };
    state.served().push(Served {
        method,
        target,
        presented,
        content_encoding,
        status: response.status().as_u16(),
        backend_stderr,
    });
    response
}

fn presented(header: Option<&HeaderValue>, token: &str) -> Presented {
    let Some(header) = header else {
        return Presented::Nothing;
    };
    let refused = |user: &str| Presented::Refused {
        user: user.to_string(),
    };
    let Some((scheme, encoded)) = header.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return refused("(malformed Authorization header)");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return refused(&format!("({scheme} scheme)"));
    }
    let Some(decoded) =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    else {
        return refused("(malformed Basic credentials)");
    };
    match decoded.split_once(':') {
        Some((TOKEN_USER, password)) if password == token => Presented::Accepted,
        Some((user, _)) => refused(user),
        None => refused("(Basic credentials without a colon)"),
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("WWW-Authenticate", "Basic realm=\"git\"")
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(b"authentication required\n")))
        .expect("static response")
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(text)))
        .expect("plain response")
}

/// Runs http-backend for one request; returns the response and its stderr.
async fn run_backend(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> (Response<Full<Bytes>>, String) {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let message = format!("reading the request body: {e}");
            return (plain(StatusCode::BAD_REQUEST, message.clone()), message);
        }
    };
    let mut command = Command::new(&state.backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &state.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", TOKEN_USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("AUTH_TYPE", "Basic");
    if let Some(content_type) = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        command.env("CONTENT_TYPE", content_type);
    }
    for (name, value) in &parts.headers {
        if name == AUTHORIZATION || name == CONTENT_TYPE || name == CONTENT_LENGTH {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let var = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            command.env(var, value);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // std::process in a blocking task: tokio's async pipes would need its
    // io-util feature, which the crate does not otherwise use.
    let run = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Written beside the reads of stdout/stderr, so a large body and a
        // large answer cannot block each other.
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let output = child.wait_with_output()?;
        // A backend that answers before reading its whole input (an error
        // status) closes stdin early; that is its answer, not our failure.
        let _ = writer.join();
        Ok(output)
    })
    .await;
    let output = match run {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            let message = format!("running {}: {e}", state.backend.display());
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, message.clone()),
                message,
            );
        }
        Err(e) => {
            let message = format!("http-backend task: {e}");
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, message.clone()),
                message,
            );
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match cgi_response(&output.stdout) {
        Ok(response) => (response, stderr),
        Err(problem) => {
            let message = format!(
                "http-backend ({}) gave no valid CGI answer: {problem}; stderr: {stderr}",
                output.status
            );
            (plain(StatusCode::BAD_GATEWAY, message.clone()), message)
        }
    }
}

/// A CGI answer: header lines (`Status: 404 Not Found` sets the status, 200
/// without one), an empty line, the body.
pub fn cgi_response(stdout: &[u8]) -> Result<Response<Full<Bytes>>, String> {
    let end = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .iter()
        .filter_map(|sep| find(stdout, sep).map(|at| (at, at + sep.len())))
        .min()
        .ok_or("no empty line after the headers")?;
    let head = std::str::from_utf8(&stdout[..end.0]).map_err(|e| format!("headers: {e}"))?;
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("bad Status line: {line:?}"))?;
        } else {
            builder = builder.header(name, value);
        }
    }
    builder
        .status(status)
        .body(Full::new(Bytes::copy_from_slice(&stdout[end.1..])))
        .map_err(|e| e.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
