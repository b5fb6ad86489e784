//! Loopback HTTP/1.1 plumbing shared by the fakes: query-string parsing with
//! percent-decoding, header helpers and the accept/connection threads.
//!
//! The server is hand-written on `std::net` rather than built on tiny_http:
//! the fault model needs two things tiny_http 0.12 cannot do — drop a
//! connection without writing any response (its `Request` answers 500 when
//! dropped, and `into_writer` leaves a keep-alive socket open, so the client
//! hangs instead of seeing a reset), and stop listening *including* the
//! already-open keep-alive connections (a stopped tiny_http server keeps
//! reading pooled connections and queues their requests forever). Both are
//! what a client sees when a real Plex/Stash process dies, and both are needed
//! for the `Reset` and `Refuse` fault modes.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest accepted request line or single header line.
const MAX_LINE: usize = 16 * 1024;
/// Longest accepted header block.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest accepted request body (poster uploads are the big ones).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// A connection idle this long between requests is closed (like any server's
/// keep-alive timeout); it also bounds how long a leaked client can pin a thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Locks a mutex, ignoring poisoning (a panicking test thread must not wedge
/// the fake for every other test sharing it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Percent-decoding and query strings
// ---------------------------------------------------------------------------

/// `%XX` escapes decoded (malformed ones are kept literally, as most
/// servers do), and `+` as a space in form encoding.
fn decode_bytes(s: &str, plus_is_space: bool) -> String {
    let spaced;
    let s = if plus_is_space {
        spaced = s.replace('+', " ");
        spaced.as_str()
    } else {
        s
    };
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Decodes `%XX` escapes only (`+` stays a plus). Used for paths and for the
/// inner layer of Plex's double-encoded tag-removal lists.
pub fn percent_decode(s: &str) -> String {
    decode_bytes(s, false)
}

/// Decodes a query-string component: `%XX` escapes and `+` as a space
/// (form encoding; PMS decodes plexapi's `quote_plus` values this way).
pub fn form_decode(s: &str) -> String {
    decode_bytes(s, true)
}

/// Splits a raw query string into decoded `(key, value)` pairs, in order.
/// A pair without `=` has an empty value; empty segments are skipped.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(seg), String::new()),
        })
        .collect()
}

/// Everything but the RFC 3986 unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// First value of `name` among `pairs` (exact key match).
pub fn find_pair<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// First value of header `name` (case-insensitive) among lower-cased `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------

/// A parsed request as handed to a fake's handler.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// Percent-decoded path without the query string.
    pub path: String,
    /// The query string exactly as sent (without `?`).
    pub raw_query: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Headers with lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        find_pair(&self.query, name)
    }

    /// Whether the client asked for JSON (`Accept: application/json`).
    pub fn accepts_json(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == "accept")
            .any(|(_, v)| v.to_ascii_lowercase().contains("application/json"))
    }
}

/// A response to write back.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status).header("Content-Type", content_type).body(body)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::with_body(status, "application/json", value.to_string())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// What the handler wants done with a request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Send(Response),
    /// Close the connection without writing anything.
    Reset,
}

impl Reply {
    /// Status for request logs; 0 for a reset.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Send(r) => r.status,
            Reply::Reset => 0,
        }
    }
}

pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Reply;
    /// The answer to `method path` has been written to the socket.
    fn answered(&self, _method: &str, _path: &str) {}
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_response(w: &mut impl Write, resp: &Response, head_only: bool, close: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status)).as_bytes());
    for (k, v) in &resp.headers {
        // Header values come from our own code; strip CR/LF defensively anyway.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    let bodyless = resp.status == 204 || resp.status == 304 || resp.status < 200;
    if !bodyless {
        out.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodyless {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

enum ReadError {
    /// Clean end of stream before a request started, or a socket error.
    Closed,
    /// Malformed request: answer with this status and close.
    Bad(u16),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// Reads one line (without the trailing CRLF/LF). `Ok(None)` on EOF before
/// any byte; `Bad(status)` when the line exceeds `max`.
fn read_line(r: &mut impl BufRead, max: usize, too_long: u16) -> Result<Option<String>, ReadError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(ReadError::Closed);
        }
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..pos]);
            r.consume(pos + 1);
            break;
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        r.consume(n);
        if line.len() > max {
            return Err(ReadError::Bad(too_long));
        }
    }
    if line.len() > max {
        return Err(ReadError::Bad(too_long));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, MAX_LINE, 400)?.ok_or(ReadError::Closed)?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| ReadError::Bad(400))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let t = read_line(r, MAX_LINE, 400)?.ok_or(ReadError::Closed)?;
                if t.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad(413));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let crlf = read_line(r, 2, 400)?.ok_or(ReadError::Closed)?;
        if !crlf.is_empty() {
            return Err(ReadError::Bad(400));
        }
    }
}

/// Reads one request. `Ok(None)` when the client closed the connection
/// between requests.
fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> Result<Option<(Request, bool)>, ReadError> {
    // Tolerate stray empty lines between pipelined requests (RFC 9112 §2.2).
    let request_line = loop {
        match read_line(r, MAX_LINE, 414)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad(400));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => return Err(ReadError::Bad(505)),
        _ => return Err(ReadError::Bad(400)),
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    let mut header_bytes = 0usize;
    loop {
        let line = read_line(r, MAX_LINE, 431)?.ok_or(ReadError::Closed)?;
        if line.is_empty() {
            break;
        }
        header_bytes += line.len();
        if header_bytes > MAX_HEADER_BYTES || headers.len() >= 256 {
            return Err(ReadError::Bad(431));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(400));
        };
        if name.is_empty() || name.contains(' ') {
            return Err(ReadError::Bad(400));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    let connection = find_header(&headers, "connection").map(|v| v.to_ascii_lowercase()).unwrap_or_default();
    let keep_alive = if http10 { connection.contains("keep-alive") } else { !connection.contains("close") };

    let chunked =
        find_header(&headers, "transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
    let content_length = match find_header(&headers, "content-length") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| ReadError::Bad(400))?),
        None => None,
    };
    if content_length.is_some_and(|n| n > MAX_BODY) {
        return Err(ReadError::Bad(413));
    }
    let expects_continue = find_header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue && (chunked || content_length.unwrap_or(0) > 0) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(n) = content_length {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };

    // Absolute-form targets (proxies) are reduced to their path.
    let target = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => target,
    };
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let raw_query = raw_query.split('#').next().unwrap_or("");
    let req = Request {
        method: method.to_string(),
        path: percent_decode(raw_path),
        raw_query: raw_query.to_string(),
        query: parse_query(raw_query),
        headers,
        body,
    };
    Ok(Some((req, keep_alive)))
}

// ---------------------------------------------------------------------------
// Server: accept thread + one thread per connection
// ---------------------------------------------------------------------------

/// Turns a fake's listening socket on and off (used by fault injection).
pub(crate) trait ListenerSwitch: Send + Sync {
    fn set_listening(&self, on: bool) -> io::Result<()>;
}

struct Conns {
    handler: Arc<dyn Handler>,
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

struct AcceptThread {
    stop: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

struct Ctl {
    port: u16,
    conns: Arc<Conns>,
    accept: Mutex<Option<AcceptThread>>,
    closed: AtomicBool,
}

/// A loopback HTTP server; dropping it closes the listener and every open
/// connection.
pub(crate) struct HttpServer {
    ctl: Arc<Ctl>,
}

impl HttpServer {
    /// Binds `127.0.0.1:0` and starts serving `handler`.
    pub fn start(handler: Arc<dyn Handler>) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let conns = Arc::new(Conns { handler, open: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) });
        let accept = spawn_accept(conns.clone(), listener)?;
        Ok(HttpServer {
            ctl: Arc::new(Ctl { port, conns, accept: Mutex::new(Some(accept)), closed: AtomicBool::new(false) }),
        })
    }

    pub fn port(&self) -> u16 {
        self.ctl.port
    }

    pub fn set_listening(&self, on: bool) -> io::Result<()> {
        self.ctl.set_listening(on)
    }

    /// A handle for fault injection that does not keep the server alive.
    pub fn switch(&self) -> Weak<dyn ListenerSwitch> {
        let weak: Weak<Ctl> = Arc::downgrade(&self.ctl);
        weak
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.ctl.closed.store(true, Ordering::SeqCst);
        self.ctl.stop();
    }
}

impl Ctl {
    fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// Closes the listener (joining the accept thread, so connects are refused
    /// once this returns) and every open connection.
    fn stop(&self) {
        let running = lock(&self.accept).take();
        if let Some(t) = running {
            t.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept(); it sees the flag and exits, dropping
            // the listener.
            for _ in 0..5 {
                if TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).is_ok() {
                    break;
                }
            }
            let _ = t.join.join();
        }
        let open: Vec<TcpStream> = lock(&self.conns.open).drain().map(|(_, s)| s).collect();
        for s in open {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn start_again(&self) -> io::Result<()> {
        let mut guard = lock(&self.accept);
        if guard.is_some() {
            return Ok(());
        }
        // std sets SO_REUSEADDR on Unix, so TIME_WAIT leftovers do not block
        // the re-bind; retry briefly in case the old socket is still closing.
        let deadline = Instant::now() + Duration::from_secs(3);
        let listener = loop {
            match TcpListener::bind(self.addr()) {
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        *guard = Some(spawn_accept(self.conns.clone(), listener)?);
        Ok(())
    }
}

impl ListenerSwitch for Ctl {
    fn set_listening(&self, on: bool) -> io::Result<()> {
        if on {
            if self.closed.load(Ordering::SeqCst) {
                return Err(io::Error::other("server has been shut down"));
            }
            self.start_again()
        } else {
            self.stop();
            Ok(())
        }
    }
}

fn spawn_accept(conns: Arc<Conns>, listener: TcpListener) -> io::Result<AcceptThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let join =
        thread::Builder::new().name("testkit-accept".into()).spawn(move || accept_loop(conns, listener, stop2))?;
    Ok(AcceptThread { stop, join })
}

fn accept_loop(conns: Arc<Conns>, listener: TcpListener, stop: Arc<AtomicBool>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = conns.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            lock(&conns.open).insert(id, clone);
        }
        let c = conns.clone();
        let spawned = thread::Builder::new().name("testkit-conn".into()).spawn(move || serve_connection(c, stream, id));
        if spawned.is_err()
            && let Some(s) = lock(&conns.open).remove(&id)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn serve_connection(conns: Arc<Conns>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    if let Ok(read_half) = stream.try_clone() {
        let mut reader = BufReader::new(read_half);
        let mut writer = &stream;
        loop {
            let (req, keep_alive) = match read_request(&mut reader, &mut writer) {
                Ok(Some(x)) => x,
                Ok(None) | Err(ReadError::Closed) => break,
                Err(ReadError::Bad(status)) => {
                    let resp = Response::with_body(status, "text/html", error_html(status));
                    let _ = write_response(&mut writer, &resp, false, true);
                    lingering_close(&stream, &mut reader);
                    break;
                }
            };
            let head_only = req.method == "HEAD";
            let (method, path) = (req.method.clone(), req.path.clone());
            match conns.handler.handle(req) {
                Reply::Reset => break,
                Reply::Send(resp) => {
                    let written = write_response(&mut writer, &resp, head_only, !keep_alive).is_ok();
                    if written {
                        conns.handler.answered(&method, &path);
                    }
                    if !written || !keep_alive {
                        break;
                    }
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    lock(&conns.open).remove(&id);
}

/// Half-closes and drains what the client is still sending (bounded), so
/// the kernel does not answer unread input with an RST that would destroy
/// the error response before the client reads it.
fn lingering_close(stream: &TcpStream, reader: &mut impl Read) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 8192];
    let mut drained = 0usize;
    while Instant::now() < deadline && drained < 4 * 1024 * 1024 {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// The small HTML error page PMS (and many servers) answer with.
pub(crate) fn error_html(status: u16) -> String {
    let r = reason(status);
    format!("<html><head><title>{r}</title></head><body><h1>{status} {r}</h1></body></html>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_handles_brackets_plus_and_double_encoding() {
        let q = parse_query(
            "genre%5B0%5D.tag.tag=Sci-Fi%20%26%20Fantasy&genre[].tag.tag-=A%252C%2520B%2CC&path=%2Fdata%2FMy+Movies&flag",
        );
        assert_eq!(q[0], ("genre[0].tag.tag".into(), "Sci-Fi & Fantasy".into()));
        assert_eq!(q[1].0, "genre[].tag.tag-");
        assert_eq!(q[1].1, "A%2C%20B,C");
        let names: Vec<String> = q[1].1.split(',').map(percent_decode).collect();
        assert_eq!(names, vec!["A, B".to_string(), "C".to_string()]);
        assert_eq!(q[2].1, "/data/My Movies");
        assert_eq!(q[3], ("flag".into(), String::new()));
    }

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, req: Request) -> Reply {
            if req.path == "/reset" {
                return Reply::Reset;
            }
            let body =
                format!("{} {} q={:?} body={}", req.method, req.path, req.query, String::from_utf8_lossy(&req.body));
            Reply::Send(Response::with_body(200, "text/plain", body))
        }
    }

    fn raw(port: u16, bytes: &[u8]) -> String {
        use std::io::Read;
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(bytes).expect("write");
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn keep_alive_pipelining_chunked_and_continue() {
        let server = HttpServer::start(Arc::new(Echo)).expect("start");
        let out = raw(
            server.port(),
            b"GET /a%20b?x=1+2 HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n\
              PUT /d HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhi",
        );
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
        assert!(out.contains("GET /a b q=[(\"x\", \"1 2\")]"));
        assert!(out.contains("POST /c q=[] body=abcde"));
        assert!(out.contains("HTTP/1.1 100 Continue"));
        assert!(out.contains("PUT /d q=[] body=hi"));
        assert!(out.contains("Connection: close"));
    }

    #[test]
    fn malformed_requests_get_4xx_and_resets_answer_nothing() {
        let server = HttpServer::start(Arc::new(Echo)).expect("start");
        let p = server.port();
        assert!(raw(p, b"NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw(p, b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 505"));
        assert!(raw(p, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw(p, b"GET / HTTP/1.1\r\nbad header\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(raw(p, b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n").starts_with("HTTP/1.1 413"));
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert!(raw(p, &long).starts_with("HTTP/1.1 414"));
        assert!(raw(p, b"GET /\xff\xfe?\xc3=\x80 HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert_eq!(raw(p, b"GET /reset HTTP/1.1\r\n\r\n"), "");
        // The server still works after all that.
        assert!(raw(p, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn stopping_drops_open_keep_alive_connections() {
        use std::io::Read;
        let server = HttpServer::start(Arc::new(Echo)).expect("start");
        let mut s = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        server.set_listening(false).expect("stop");
        // The pooled connection is closed, not left hanging.
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        server.set_listening(true).expect("restart");
        assert!(raw(server.port(), b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn malformed_escapes_stay_literal_and_percent_decode_keeps_plus() {
        assert_eq!(form_decode("100%zz%4"), "100%zz%4");
        assert_eq!(percent_decode("a+b%2B"), "a+b+");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
