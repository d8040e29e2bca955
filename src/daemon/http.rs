//! The daemon's HTTP endpoints: the status page (`/`), health, readiness,
//! metrics, status, the latest report, and the push webhook.

use super::Shared;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use sha2::Sha256;
use std::sync::Arc;

/// Webhook bodies larger than this are refused (GitHub's push payloads are
/// capped at 25 MB; tenant repositories push far smaller ones).
pub const MAX_HOOK_BODY: usize = 1 << 20;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// True when `signature` (`sha256=<hex>`, GitHub's `X-Hub-Signature-256`) is
/// the HMAC-SHA256 of `body` under `secret`. Compared in constant time.
pub fn signature_ok(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/") => page(shared.status_page()),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            let (ready, why) = shared.readiness();
            reply(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "text/plain",
                format!("{why}\n"),
            )
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics_text(),
        ),
        (&Method::GET, "/status") => {
            reply(StatusCode::OK, "application/json", shared.status_json())
        }
        (&Method::GET, "/report") => {
            if query.split('&').any(|kv| kv == "format=markdown") {
                reply(StatusCode::OK, "text/markdown", shared.report_markdown())
            } else {
                reply(StatusCode::OK, "application/json", shared.report_json())
            }
        }
        (&Method::POST, "/hook") => hook(&shared, req).await,
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    Ok(resp)
}

/// The status page, with headers that keep the browser from loading,
/// framing, sniffing or caching anything.
fn page(html: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header(
            "content-security-policy",
            crate::status_page::content_security_policy(),
        )
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(html)))
        .expect("valid response")
}

async fn hook(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(secret) = shared.options.webhook_secret.clone() else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "webhook disabled: no --webhook-secret-file\n",
        );
    };
    let signature = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match Limited::new(req.into_body(), MAX_HOOK_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if !e.is::<http_body_util::LengthLimitError>() => {
            return reply(StatusCode::BAD_REQUEST, "text/plain", "unreadable body\n");
        }
        Err(_) => {
            // Refused before the signature is even checked: an unsigned
            // sender cannot make the daemon hold more than the cap.
            shared.metrics.webhook("too_large");
            tracing::warn!(
                limit = MAX_HOOK_BODY,
                "webhook refused: body over the limit"
            );
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "body too large\n",
            );
        }
    };
    if !signature_ok(&secret, &body, signature.as_deref()) {
        shared.metrics.webhook("rejected");
        tracing::warn!("webhook refused: missing or bad X-Hub-Signature-256");
        return reply(StatusCode::UNAUTHORIZED, "text/plain", "bad signature\n");
    }
    shared.metrics.webhook("accepted");
    shared.trigger.notify_one();
    reply(StatusCode::ACCEPTED, "text/plain", "reconcile triggered\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_vector() {
        // The example from GitHub's webhook documentation.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(sig)
        ));
        assert!(!signature_ok(b"wrong", b"Hello, World!", Some(sig)));
        assert!(!signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            Some(sig)
        ));
        assert!(!signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            None
        ));
        assert!(!signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some("sha1=abc")
        ));
    }
}
