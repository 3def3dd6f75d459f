//! One guarded HTTP POST: check the destination, dial only the addresses the guard admitted
//! (or reuse a kept-alive connection to one of them, [`crate::pool`]), send, read the status.
//! No redirects, no cookies, no proxies, bounded in time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use taskwire_engine::Owner;
use tokio::net::TcpStream;

use crate::guard::{BoxFuture, Destination, Guard, Refusal};
use crate::pool::{Connection, Pool, PoolConfig};

/// Opens TCP connections. The sender dials only addresses the guard admitted; tests put a
/// dialer here that fails the test if it is ever asked for a non-loopback address.
pub trait Dial: Send + Sync + 'static {
    /// Connects to `addr`.
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>>;
}

/// Plain TCP (with `TCP_NODELAY`: a webhook is one small request).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpDial;

impl Dial for TcpDial {
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }
}

/// Sender settings.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// The whole attempt: connect, send, and the receiver's answer (default 10 s).
    pub timeout: Duration,
    /// Connecting to one address (default 3 s); the next address is tried after it.
    pub connect_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: HeaderValue,
    /// Keep-alive connections kept for reuse.
    pub pool: PoolConfig,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            user_agent: HeaderValue::from_static(concat!("taskwire-webhook/", env!("CARGO_PKG_VERSION"))),
            pool: PoolConfig::default(),
        }
    }
}

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The guard refused the destination (permanent: retrying cannot help).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The URL's scheme cannot be sent by this build (permanent).
    #[error(
        "https:// callbacks are not supported by this taskwire build yet; use http:// to a receiver on an allowlisted network, or terminate TLS in front of it"
    )]
    TlsUnsupported,
    /// No admitted address accepted a connection.
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The last error.
        reason: String,
    },
    /// The attempt took longer than the timeout.
    #[error("no answer from {authority} within {after:?}")]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The timeout.
        after: Duration,
    },
    /// The receiver answered a redirect, which is never followed (it could point anywhere).
    #[error("{authority} answered HTTP {status} (a redirect); webhooks do not follow redirects")]
    Redirect {
        /// `host:port`.
        authority: String,
        /// The status.
        status: u16,
    },
    /// The receiver answered another non-2xx status.
    #[error("{authority} answered HTTP {status}")]
    Status {
        /// `host:port`.
        authority: String,
        /// The status.
        status: u16,
    },
    /// The HTTP exchange broke.
    #[error("HTTP exchange with {authority} failed: {reason}")]
    Http {
        /// `host:port`.
        authority: String,
        /// What broke.
        reason: String,
    },
}

impl SendError {
    /// Whether no retry can succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::TlsUnsupported)
    }
}

/// What a receiver answered with a 2xx.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The body (bounded; see [`Sender::post`]).
    pub body: Bytes,
}

/// Sends guarded POSTs. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    guard: Guard,
    dial: Arc<dyn Dial>,
    config: Arc<SenderConfig>,
    pool: Arc<Pool>,
}

/// The most of a receiver's answer that is read; the rest is dropped.
const MAX_ANSWER: usize = 64 * 1024;

impl Sender {
    /// A sender that dials with `TcpDial`.
    pub fn new(guard: Guard, config: SenderConfig) -> Self {
        Self::with_dialer(guard, config, Arc::new(TcpDial))
    }

    /// A sender with another dialer.
    pub fn with_dialer(guard: Guard, config: SenderConfig, dial: Arc<dyn Dial>) -> Self {
        let pool = Arc::new(Pool::new(config.pool.clone()));
        Self { guard, dial, config: Arc::new(config), pool }
    }

    /// The guard it checks destinations with.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Whether `url` could be sent to for `owner` (`None`: a destination the operator
    /// configured): the guard admits it and this build speaks its scheme. Dials nothing.
    pub async fn check(&self, url: &str, owner: Option<&Owner>) -> Result<(), SendError> {
        let destination = self.guard.admit(url, owner).await?;
        if destination.url.scheme() != "http" {
            return Err(SendError::TlsUnsupported);
        }
        Ok(())
    }

    /// POSTs `body` (JSON) with `headers` to `url`, after the guard admitted it for `owner`
    /// (`None`: a destination the operator configured). A 2xx is an [`Answer`]; anything else
    /// an error.
    pub async fn post(
        &self,
        url: &str,
        owner: Option<&Owner>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let destination = self.guard.admit(url, owner).await?;
        if destination.url.scheme() != "http" {
            return Err(SendError::TlsUnsupported);
        }
        let authority = destination.authority();
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.exchange(&destination, &authority, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout { authority, after: timeout }),
        }
    }

    async fn exchange(
        &self,
        destination: &Destination,
        authority: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let url = &destination.url;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let request = || -> Result<Request<Full<Bytes>>, SendError> {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(&target)
                .body(Full::new(body.clone()))
                .map_err(|e| SendError::Http { authority: authority.to_owned(), reason: e.to_string() })?;
            let h = request.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(header::USER_AGENT, self.config.user_agent.clone());
            if let Ok(host) = HeaderValue::from_str(&host) {
                h.insert(header::HOST, host);
            }
            h.extend(headers.clone());
            Ok(request)
        };
        // A kept-alive connection to an address the guard admitted just now, first. If it breaks
        // before an answer (the receiver closed it as we wrote), a fresh connection sends again:
        // deliveries are at-least-once and carry their `webhook-id`, so a rare repeat is the contract.
        let pooled = destination.addrs.iter().find_map(|addr| self.pool.take(*addr, &host).map(|c| (*addr, c)));
        if let Some((addr, mut conn)) = pooled
            && conn.ready().await.is_ok()
            && let Ok(answer) = self.round_trip(conn, request()?, addr, &host, authority).await
        {
            return answer;
        }
        let (addr, stream) = self.connect(destination, authority).await?;
        let http_error = |e: hyper::Error| SendError::Http { authority: authority.to_owned(), reason: e.to_string() };
        let (conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_error)?;
        // The driver ends by itself once the last handle to the connection is dropped.
        tokio::spawn(driver);
        self.round_trip(conn, request()?, addr, &host, authority).await.map_err(http_error)?
    }

    /// One request on `conn`; the connection goes back to the pool if the answer was read whole.
    /// `Err` only when the exchange itself broke (nothing usable came back).
    async fn round_trip(
        &self,
        mut conn: Connection,
        request: Request<Full<Bytes>>,
        addr: SocketAddr,
        host: &str,
        authority: &str,
    ) -> Result<Result<Answer, SendError>, hyper::Error> {
        let response = conn.send_request(request).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER).collect().await;
        if body.is_ok() {
            self.pool.put(addr, host, conn);
        }
        let authority = authority.to_owned();
        Ok(if status.is_redirection() {
            Err(SendError::Redirect { authority, status: status.as_u16() })
        } else if !status.is_success() {
            Err(SendError::Status { authority, status: status.as_u16() })
        } else {
            Ok(Answer { status: status.as_u16(), body: body.map(|b| b.to_bytes()).unwrap_or_default() })
        })
    }

    async fn connect(&self, destination: &Destination, authority: &str) -> Result<(SocketAddr, TcpStream), SendError> {
        let mut last = String::from("no address");
        for addr in &destination.addrs {
            match tokio::time::timeout(self.config.connect_timeout, self.dial.dial(*addr)).await {
                Ok(Ok(stream)) => return Ok((*addr, stream)),
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: no connection within {:?}", self.config.connect_timeout),
            }
        }
        Err(SendError::Connect { authority: authority.to_owned(), reason: last })
    }
}

/// Callers' callbacks are checked at task creation by the same rules as every delivery: the
/// guard (with the caller's host list), and a scheme this build can send.
impl taskwire_server::CallbackGuard for Sender {
    fn check<'a>(
        &'a self,
        owner: &'a Owner,
        url: &'a str,
    ) -> taskwire_server::webhooks::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.check(url, Some(owner)).await.map_err(|e| e.to_string()) })
    }
}
