//! A keep-alive HTTP/1.1 connection that sends prepared request bytes and reads one answer
//! at a time: what a wrk script does, and no more. The load generator shares the two cores
//! with ots (and Postgres); every microsecond it spends on a request is one ots cannot, so it
//! should cost what pgbench's client costs, not what a general HTTP client does (reqwest's
//! pool, header maps and URL parsing cost it 30 µs a request here).
//!
//! It reads answers framed by `Content-Length` (what ots and poem send for every JSON
//! answer) or chunked; anything else is an error, as is a closed connection.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    /// Where the unread bytes in `buf` start (an answer read past is kept for the next).
    at: usize,
}

/// One answer: its status and where its body lies in the connection's buffer.
pub struct Answer {
    pub status: u16,
    body: std::ops::Range<usize>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Conn {
    /// Connects to `addr` (`127.0.0.1:PORT`).
    pub async fn open(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            addr: addr.to_owned(),
            buf: Vec::with_capacity(8192),
            at: 0,
        })
    }

    /// A fresh connection to the same address (after an error left this one unusable).
    pub async fn reopen(&mut self) -> io::Result<()> {
        *self = Self::open(&self.addr.clone()).await?;
        Ok(())
    }

    /// The body of an answer this connection read last.
    pub fn body(&self, answer: &Answer) -> &[u8] {
        &self.buf[answer.body.clone()]
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads its answer.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        // What was read past the last answer starts this one.
        self.buf.drain(..self.at);
        self.at = 0;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("head"))?;
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let body = match (length, chunked) {
            (Some(n), false) => {
                while self.buf.len() < head_end + n {
                    self.fill().await?;
                }
                self.at = head_end + n;
                head_end..head_end + n
            }
            (_, true) => self.dechunk(head_end).await?,
            (None, false) => return Err(bad("an answer with neither length nor chunks")),
        };
        Ok(Answer { status, body })
    }

    /// Reads a chunked body that starts at `from`, joining its chunks in place.
    async fn dechunk(&mut self, from: usize) -> io::Result<std::ops::Range<usize>> {
        let (mut read, mut write) = (from, from);
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[read..], b"\r\n") {
                    break read + i;
                }
                self.fill().await?;
            };
            let size = std::str::from_utf8(&self.buf[read..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| bad("chunk size"))?;
            let data = line_end + 2;
            // The chunk, then its CRLF (after the last, empty chunk: the final CRLF).
            while self.buf.len() < data + size + 2 {
                self.fill().await?;
            }
            self.buf.copy_within(data..data + size, write);
            write += size;
            read = data + size + 2;
            if size == 0 {
                self.at = read;
                return Ok(from..write);
            }
        }
    }

    /// Appends what the socket has to the buffer (into its spare room: nothing is zeroed).
    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(8192);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request's bytes: `method path`, a form body if any.
pub fn request(method: &str, path: &str, form: Option<&str>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(body) = form {
        out.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request with the next of `answers`, whatever it asked.
    async fn serve(answers: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                let mut chunk = [0u8; 1024];
                while find(&seen, b"\r\n\r\n").is_none() {
                    let n = socket.read(&mut chunk).await.unwrap();
                    seen.extend_from_slice(&chunk[..n]);
                }
                let end = find(&seen, b"\r\n\r\n").unwrap() + 4;
                seen.drain(..end);
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_and_chunked_answers_on_one_connection() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut conn = Conn::open(&addr).await.unwrap();
        let get = request("GET", "/", None);
        let a = conn.send(&get).await.unwrap();
        assert_eq!((a.status, conn.body(&a)), (200, &b"hello"[..]));
        let b = conn
            .send(&request("POST", "/x", Some("a=1")))
            .await
            .unwrap();
        assert_eq!((b.status, conn.body(&b)), (404, &b"abcde"[..]));
        let c = conn.send(&get).await.unwrap();
        assert_eq!((c.status, conn.body(&c)), (201, &b""[..]));
    }

    #[tokio::test]
    async fn an_answer_without_framing_is_an_error() {
        let addr = serve(vec!["HTTP/1.1 200 OK\r\n\r\nhello"]).await;
        let mut conn = Conn::open(&addr).await.unwrap();
        assert!(conn.send(&request("GET", "/", None)).await.is_err());
    }

    #[test]
    fn a_form_request_has_its_length() {
        let r = String::from_utf8(request("POST", "/api/v1/share", Some("secret=x"))).unwrap();
        assert!(r.starts_with("POST /api/v1/share HTTP/1.1\r\n"));
        assert!(r.ends_with("Content-Length: 8\r\n\r\nsecret=x"));
    }
}
