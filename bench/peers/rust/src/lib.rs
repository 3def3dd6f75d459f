//! What the measuring tools share: a blocking HTTP/1.1 keep-alive connection that speaks just
//! enough HTTP for loopback probes (requests with `Content-Length`, answers with it).
pub mod probe;
