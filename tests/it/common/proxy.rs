//! Pieces of the fault-injecting HTTP proxies that the publish, push-retry
//! and signal tests put in front of the real registry: each test decides
//! which requests to answer itself (the fault) and forwards the rest with
//! [`forward`]. One request per connection (`Connection: close` both ways).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head read from a client: the bytes read so far (the head and
/// the start of the body) and where the body starts.
pub struct Head {
    pub buf: Vec<u8>,
    pub end: usize,
}

impl Head {
    /// The head as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.end]).into_owned()
    }

    /// The request line's method and path.
    pub fn method_and_path(&self) -> (String, String) {
        let text = self.text();
        let mut line = text.lines().next().unwrap_or_default().split(' ');
        (
            line.next().unwrap_or_default().to_string(),
            line.next().unwrap_or_default().to_string(),
        )
    }

    /// `Content-Length` (0 when absent).
    pub fn content_length(&self) -> usize {
        self.text()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What [`read_head`] does with a first byte that cannot start an HTTP
/// request (a TLS hello: Docker's BuildKit tries TLS first on
/// `127.0.0.1:PORT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NotHttp {
    /// Close the connection.
    Close,
    /// Answer `400` as Go's plain-HTTP server does, so the client falls
    /// back to plain HTTP.
    Answer400,
}

/// Reads a request head (each read bounded by `step`; `None`: closed, too
/// long or not HTTP).
pub async fn read_head(client: &mut TcpStream, step: Duration, not_http: NotHttp) -> Option<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            return Some(Head { buf, end: i + 4 });
        }
        let garbage = buf.first().is_some_and(|b| !b.is_ascii_alphabetic());
        if buf.len() > 64 * 1024 || (garbage && not_http == NotHttp::Answer400) {
            if not_http == NotHttp::Answer400 {
                let _ = client
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
                    .await;
                let _ = client.shutdown().await;
            }
            return None;
        }
        match tokio::time::timeout(step, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Reads the rest of the body (`Content-Length`) into `head.buf`; false
/// when the client stopped sending first.
pub async fn read_body(client: &mut TcpStream, head: &mut Head, step: Duration) -> bool {
    let length = head.content_length();
    let mut chunk = [0u8; 16 * 1024];
    while head.buf.len() - head.end < length {
        match tokio::time::timeout(step, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => head.buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    true
}

/// Answers the request with `status` (`"503 Service Unavailable"`), extra
/// header lines (each ending in `\r\n`) and `body`, and closes.
pub async fn respond(client: &mut TcpStream, status: &str, headers: &str, body: &str) {
    let _ = client
        .write_all(
            format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    let _ = client.shutdown().await;
}

/// The head with `Connection: close` (one request per connection).
pub fn close_head(head: &str) -> String {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// Sends the request to `upstream` and streams both ways until the answer
/// ends (bounded by `connect` to connect and `answer` for the answer).
pub async fn forward(
    client: TcpStream,
    head: &Head,
    upstream: &str,
    connect: Duration,
    answer: Duration,
) {
    let Ok(Ok(mut up)) = tokio::time::timeout(connect, TcpStream::connect(upstream)).await else {
        return; // upstream down: the client sees its connection closed
    };
    if up
        .write_all(close_head(&head.text()).as_bytes())
        .await
        .is_err()
        || up.write_all(&head.buf[head.end..]).await.is_err()
    {
        return;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
    });
    let _ = tokio::time::timeout(answer, tokio::io::copy(&mut ur, &mut cw)).await;
    let _ = cw.shutdown().await;
    upload.abort();
}
