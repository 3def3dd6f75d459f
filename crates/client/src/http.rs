//! The Streamable HTTP link: every message is a POST; answers come back as JSON or as an SSE
//! stream that may carry the request's notifications and server requests first. After
//! `initialize`, a GET stream carries what the server sends outside any request.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use taskwire_protocol::Id;

use crate::sse::SseParser;
use crate::{Client, ClientError, lock};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Settings of an HTTP connection.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Sent as `Authorization: Bearer TOKEN`.
    pub bearer_token: Option<String>,
    /// How long to wait for a TCP connection (default 10 s).
    pub connect_timeout: Option<Duration>,
}

pub(crate) struct HttpLink {
    http: reqwest::Client,
    url: reqwest::Url,
    bearer: Option<HeaderValue>,
    session: Mutex<Option<HeaderValue>>,
}

impl HttpLink {
    pub(crate) fn new(url: &str, options: HttpOptions) -> Result<HttpLink, ClientError> {
        let url = reqwest::Url::parse(url).map_err(|e| ClientError::Connect(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Connect(format!("{url} is not an http:// or https:// URL")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Connect(format!("cannot set up HTTP: {e}")))?;
        let bearer =
            match &options.bearer_token {
                Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    ClientError::Connect("the bearer token has characters a header cannot carry".into())
                })?),
                None => None,
            };
        Ok(HttpLink { http, url, bearer, session: Mutex::new(None) })
    }

    fn headers(&self, client: &Client, accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(b) = &self.bearer {
            h.insert(AUTHORIZATION, b.clone());
        }
        if let Some(s) = lock(&self.session).clone() {
            h.insert(SESSION_HEADER, s);
        }
        if let Some(v) = client.negotiated_version().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(VERSION_HEADER, v);
        }
        h
    }

    /// POSTs one message. A request (`call` is its id) is answered in the background, so the
    /// caller holds it in flight at once; notifications and responses wait for the server's
    /// acceptance, which keeps them in order with what follows.
    pub(crate) async fn send(&self, client: &Client, message: Vec<u8>, call: Option<i64>) -> Result<(), ClientError> {
        let mut headers = self.headers(client, "application/json, text/event-stream");
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let post = self.http.post(self.url.clone()).headers(headers).body(message);
        let client = client.clone();
        let exchange = async move {
            let outcome = match post.send().await {
                Ok(response) => client.http_link().receive(&client, response, call).await,
                Err(e) => Err(ClientError::Connect(describe(&e))),
            };
            if let Err(e) = &outcome
                && let Some(id) = call
            {
                client.answer(&Id::Number(id), Err(e.clone()));
            }
            outcome
        };
        match call {
            Some(_) => {
                tokio::spawn(exchange);
                Ok(())
            }
            None => exchange.await,
        }
    }

    async fn receive(
        &self,
        client: &Client,
        response: reqwest::Response,
        call: Option<i64>,
    ) -> Result<(), ClientError> {
        if let Some(s) = response.headers().get(SESSION_HEADER) {
            lock(&self.session).get_or_insert_with(|| s.clone());
        }
        let status = response.status();
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        if is_sse && status.is_success() {
            read_events(client, response, call).await?;
            return match call {
                Some(id) if client.is_pending(id) => {
                    Err(ClientError::Closed("the server ended the response stream without answering".into()))
                }
                _ => Ok(()),
            };
        }
        let body = response.bytes().await.map_err(|e| ClientError::Closed(describe(&e)))?;
        // Errors of the protocol come as JSON-RPC bodies, whatever the status.
        if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.get("jsonrpc").is_some()) {
            client.route(&body, call).await;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        Err(ClientError::Http { status: status.as_u16(), body: text })
    }

    /// Opens the standalone GET stream; reconnects with `Last-Event-ID` while the client lives
    /// and the server keeps offering it.
    pub(crate) fn open_listen_stream(&self, client: Client) {
        let weak: Weak<crate::Shared> = Arc::downgrade(&client.shared);
        drop(client);
        tokio::spawn(async move {
            let mut last_event_id: Option<String> = None;
            for attempt in 0u32.. {
                let Some(shared) = weak.upgrade() else { return };
                let client = Client { shared };
                if client.closed_reason().is_some() {
                    return;
                }
                let link = client.http_link();
                let mut headers = link.headers(&client, "text/event-stream");
                if let Some(id) = last_event_id.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
                    headers.insert("last-event-id", id);
                }
                let response = match link.http.get(link.url.clone()).headers(headers).send().await {
                    Ok(r) if r.status().is_success() => r,
                    // 405: the server offers no standalone stream. Anything else: it is gone.
                    _ => return,
                };
                drop(client);
                let Some(shared) = weak.upgrade() else { return };
                let client = Client { shared };
                if let Ok(id) = read_events(&client, response, None).await {
                    last_event_id = id.or(last_event_id);
                }
                drop(client);
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)) + 100)).await;
            }
        });
    }
}

/// Routes every event of an SSE body; returns the last event id seen.
async fn read_events(
    client: &Client,
    response: reqwest::Response,
    call: Option<i64>,
) -> Result<Option<String>, ClientError> {
    let mut parser = SseParser::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ClientError::Closed(describe(&e)))?;
        let mut events = Vec::new();
        parser.feed(&chunk, |data| events.push(data.to_vec()));
        for data in events {
            if !data.is_empty() {
                client.route(&data, call).await;
            }
        }
    }
    Ok(parser.last_event_id)
}

/// reqwest's errors say little at the top level; the source chain says what happened.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Client {
    fn http_link(&self) -> &HttpLink {
        match &self.shared.link {
            crate::Link::Http(l) => l,
            crate::Link::Stdio(_) => unreachable!("only the HTTP link calls this"),
        }
    }
}
