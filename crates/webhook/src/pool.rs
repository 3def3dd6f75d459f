//! Idle keep-alive connections, so that a busy destination is not dialed once per webhook.
//!
//! A connection is filed under the address it was dialed to *and* the `Host` it was opened
//! for, and taken again only for a destination the guard has just admitted to that same
//! address: reuse never skips the guard, and a name that now resolves elsewhere gets a new
//! connection. Idle connections older than [`PoolConfig::idle`] are dropped rather than reused,
//! since receivers close idle keep-alive connections on their own schedule (uvicorn after 5 s,
//! many proxies after 60 s) and a POST written into a connection the peer is closing is lost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

/// A ready HTTP/1 connection (its driver task runs until the last handle is dropped).
pub(crate) type Connection = SendRequest<Full<Bytes>>;

/// Pool limits.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Idle connections kept per address and host (default 32; 0 turns reuse off).
    pub per_destination: usize,
    /// How long an idle connection may be reused (default 4 s: under the 5 s keep-alive of
    /// common receivers, so the receiver is not closing it while we write).
    pub idle: Duration,
    /// Destinations with idle connections at most (default 1,024); beyond it, the stalest go.
    pub destinations: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { per_destination: 32, idle: Duration::from_secs(4), destinations: 1024 }
    }
}

type Key = (SocketAddr, String);

pub(crate) struct Pool {
    config: PoolConfig,
    idle: Mutex<HashMap<Key, Vec<(Connection, Instant)>>>,
}

impl Pool {
    pub(crate) fn new(config: PoolConfig) -> Self {
        Self { config, idle: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<(Connection, Instant)>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection to `addr` for `host` that is neither closed nor stale.
    pub(crate) fn take(&self, addr: SocketAddr, host: &str) -> Option<Connection> {
        let mut idle = self.lock();
        let key = (addr, host.to_owned());
        let stack = idle.get_mut(&key)?;
        let found = std::iter::from_fn(|| stack.pop())
            .find(|(conn, since)| since.elapsed() < self.config.idle && !conn.is_closed());
        if stack.is_empty() {
            idle.remove(&key);
        }
        found.map(|(conn, _)| conn)
    }

    /// Files a connection whose last answer was read whole. It may not be ready yet (its driver
    /// has not seen the end of that answer); the taker awaits `ready()`.
    pub(crate) fn put(&self, addr: SocketAddr, host: &str, conn: Connection) {
        if self.config.per_destination == 0 || conn.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.config.destinations && !idle.contains_key(&(addr, host.to_owned())) {
            let limit = self.config.idle;
            idle.retain(|_, stack| stack.last().is_some_and(|(_, since)| since.elapsed() < limit));
            if idle.len() >= self.config.destinations {
                return;
            }
        }
        let stack = idle.entry((addr, host.to_owned())).or_default();
        if stack.len() < self.config.per_destination {
            stack.push((conn, Instant::now()));
        }
    }
}
