//! Streamable HTTP behind a bearer token: hyper (HTTP/1.1) in front of
//! rmcp's `StreamableHttpService`, at the path `/mcp`. Request bodies are
//! read here, capped at [`MAX_MESSAGE_BYTES`] (413 past it, with a JSON-RPC
//! error body, recorded) and put through the strict front door (`guard`)
//! before rmcp parses them: a refused `tools/call` reaches rmcp rewritten
//! and ends in an `isError` tool result; any other refused request gets
//! 400 with a JSON-RPC error; a refused notification or response gets 202
//! and is dropped. Every refusal is recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower_service::Service as _;

use crate::guard::Verdict;
use crate::{Inner, MAX_MESSAGE_BYTES, McpServerError, MexServer};

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";
/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// How HTTP clients authenticate.
#[derive(Clone)]
pub enum HttpAuth {
    /// Every request must carry `Authorization: Bearer <token>`.
    Bearer(String),
    /// No authentication: refused unless the address is loopback.
    InsecureNoAuth,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::InsecureNoAuth => f.write_str("InsecureNoAuth"),
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"mex\""),
        );
    }
    response
}

/// Put a body through the strict front door on a blocking thread.
async fn guarded(inner: &Arc<Inner>, bytes: Bytes, oversized: bool) -> Verdict {
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || {
        if oversized {
            inner.refuse_oversized(&bytes)
        } else {
            inner.guard(&bytes)
        }
    })
    .await
    .unwrap_or(Verdict::Drop)
}

/// A JSON-RPC error from the front door as an HTTP response.
fn json_error(status: StatusCode, verdict: Verdict) -> Response<Body> {
    let body = match verdict {
        Verdict::Reply(bytes) => Bytes::from(bytes),
        _ => Bytes::from_static(
            b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"refused\"}}",
        ),
    };
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Compare without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<Incoming>, expected: Option<&[u8]>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| same(given, expected))
}

/// Serve streamable HTTP at `http://<addr>/mcp` until the process ends.
/// `ready` is called with the bound address (useful with port 0). Refuses
/// to start without a bearer token unless `InsecureNoAuth` on a loopback
/// address. Request bodies are capped at [`MAX_MESSAGE_BYTES`] (413 past
/// it); a request without the token gets 401.
pub fn serve_http(
    server: MexServer,
    addr: SocketAddr,
    auth: HttpAuth,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), McpServerError> {
    let expected: Option<Arc<[u8]>> = match &auth {
        HttpAuth::Bearer(token) => {
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(McpServerError::Auth(format!(
                    "the bearer token must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces; write a longer one to the token file"
                )));
            }
            Some(Arc::from(token.as_bytes()))
        }
        HttpAuth::InsecureNoAuth if addr.ip().is_loopback() => None,
        HttpAuth::InsecureNoAuth => {
            return Err(McpServerError::Auth(format!(
                "refusing to serve {addr} without authentication: --insecure-no-auth is only allowed on a loopback address; give a bearer token instead"
            )));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(McpServerError::Runtime)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| McpServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| McpServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        ready(local);
        // The body is read (and capped) here, before rmcp sees it.
        let mut config =
            StreamableHttpServerConfig::default().with_max_request_body_bytes(MAX_MESSAGE_BYTES + 1);
        if !addr.ip().is_loopback() {
            // Not reachable by DNS rebinding only: the bearer token guards it.
            config = config.disable_allowed_hosts();
        }
        let inner = server.inner.clone();
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = service.clone();
            let expected = expected.clone();
            let inner = inner.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let mut service = service.clone();
                    let inner = inner.clone();
                    let ok = authorized(&req, expected.as_deref());
                    async move {
                        if !ok {
                            return Ok::<_, Infallible>(plain(
                                StatusCode::UNAUTHORIZED,
                                "a bearer token is required: send Authorization: Bearer <token> (the token is in the server's token file)\n",
                            ));
                        }
                        if req.uri().path() != PATH {
                            return Ok(plain(
                                StatusCode::NOT_FOUND,
                                "the MCP endpoint is /mcp\n",
                            ));
                        }
                        let (parts, body) = req.into_parts();
                        let bytes = match http_body_util::Limited::new(body, MAX_MESSAGE_BYTES)
                            .collect()
                            .await
                        {
                            Ok(collected) => collected.to_bytes(),
                            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                                let reply = guarded(&inner, Bytes::new(), true).await;
                                return Ok(json_error(StatusCode::PAYLOAD_TOO_LARGE, reply));
                            }
                            Err(_) => {
                                return Ok(plain(
                                    StatusCode::BAD_REQUEST,
                                    "the request body could not be read\n",
                                ));
                            }
                        };
                        let body = if bytes.is_empty() {
                            bytes
                        } else {
                            match guarded(&inner, bytes.clone(), false).await {
                                Verdict::Pass => bytes,
                                Verdict::Rewrite(new) => Bytes::from(new),
                                Verdict::Reply(reply) => {
                                    return Ok(json_error(StatusCode::BAD_REQUEST, Verdict::Reply(reply)));
                                }
                                Verdict::Drop => {
                                    return Ok(plain(
                                        StatusCode::ACCEPTED,
                                        "refused by the strict JSON reader and recorded\n",
                                    ));
                                }
                            }
                        };
                        let mut parts = parts;
                        parts.headers.remove(hyper::header::CONTENT_LENGTH);
                        service.call(Request::from_parts(parts, Full::new(body))).await
                    }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await
                {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
    })
}
