//! The one HTTP client (ureq) shared by the Plex transport and the Stash
//! client: how a request is sent, how the body is capped, and how a failure
//! to get any answer is classified. HTTP statuses are answers, never errors
//! here; the caller decides what a 503 means.

use std::time::{Duration, Instant};

/// Why no HTTP answer was obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection reset: {0}")]
    Reset(String),
    #[error("host name not found: {0}")]
    Dns(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("request refused before sending: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    max_body: u64,
}

pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_body: u64,
    /// Accept self-signed certificates (Stash on loopback with its own cert).
    pub accept_invalid_certs: bool,
    pub user_agent: String,
    /// A proxy the user asked for. Environment variables (`HTTP_PROXY`,
    /// `ALL_PROXY`, ...) are never used: they could send the token and the
    /// Stash cookie through a host nobody chose.
    pub proxy: Option<ureq::Proxy>,
}

/// Is `url`'s host this machine (`localhost`, `127.0.0.0/8`, `::1`)?
/// Compared after parsing, so `https://localhost.example.net` is not.
pub fn is_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => {
            h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// `scheme://host:port` of `url` (the port made explicit), for comparing
/// origins after parsing.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri = url.parse::<ureq::http::Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

impl HttpClient {
    pub fn new(opts: ClientOptions) -> HttpClient {
        let tls = ureq::tls::TlsConfig::builder().disable_verification(opts.accept_invalid_certs).build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.connect_timeout + opts.read_timeout))
            .max_redirects(0)
            .proxy(opts.proxy)
            .user_agent(opts.user_agent)
            .tls_config(tls)
            .build();
        HttpClient { agent: config.into(), max_body: opts.max_body }
    }

    /// Send one request. `timeout` overrides the global deadline, `limit`
    /// the body cap. The body is moved into the request, not copied.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
        limit: Option<u64>,
    ) -> Result<HttpResponse, TransportError> {
        let start = Instant::now();
        let mut builder = ureq::http::Request::builder().method(method.as_str()).uri(url);
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let has_body = body.is_some();
        let request =
            builder.body(body.unwrap_or_default()).map_err(|e| TransportError::InvalidRequest(e.to_string()))?;
        let mut configured = self.agent.configure_request(request);
        if let Some(t) = timeout {
            configured = configured.timeout_global(Some(t));
        }
        let request = configured.build();
        let result = if has_body || matches!(method, Method::Put | Method::Post) {
            self.agent.run(request)
        } else {
            let (parts, _) = request.into_parts();
            self.agent.run(ureq::http::Request::from_parts(parts, ()))
        };
        let mut response = result.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit.unwrap_or(self.max_body).min(self.max_body))
            .read_to_vec()
            .map_err(classify)?;
        Ok(HttpResponse { status, headers, body, elapsed: start.elapsed() })
    }
}

/// Map ureq's error to a transport class the policy can act on.
pub fn classify(e: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(t) => TransportError::Timeout(t.to_string()),
        ureq::Error::HostNotFound => TransportError::Dns("host not found".into()),
        ureq::Error::ConnectionFailed => TransportError::Refused("could not connect".into()),
        ureq::Error::BodyExceedsLimit(n) => TransportError::TooLarge(n),
        ureq::Error::Tls(m) => TransportError::Tls(m.to_string()),
        ureq::Error::Rustls(e) => TransportError::Tls(e.to_string()),
        ureq::Error::BadUri(m) => TransportError::InvalidRequest(m),
        ureq::Error::Http(e) => TransportError::InvalidRequest(e.to_string()),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => TransportError::Refused(io.to_string()),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportError::Timeout(io.to_string()),
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => TransportError::Reset(io.to_string()),
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable | ErrorKind::AddrNotAvailable => {
                TransportError::Refused(io.to_string())
            }
            _ => TransportError::Other(io.to_string()),
        },
        ureq::Error::Protocol(p) => TransportError::Reset(format!("malformed HTTP response: {p}")),
        other => TransportError::Other(other.to_string()),
    }
}

/// Everything but the RFC 3986 unreserved characters is escaped (`[`, `]`
/// and space included), so Plex sees exactly the value the policy gave.
const COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode one query component.
pub fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

pub fn build_query(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_origins_are_judged_after_parsing() {
        for yes in ["http://localhost:9999", "https://127.0.0.1/x", "http://127.8.9.1:1", "http://[::1]:9999/"] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in ["https://localhost.example.net", "http://127.0.0.1.evil.net/", "http://10.0.0.1", "nonsense"] {
            assert!(!is_loopback(no), "{no}");
        }
        assert_eq!(origin("https://Plex.Lan/x?y"), Some(("https".into(), "plex.lan".into(), 443)));
        assert_eq!(origin("http://p:32400"), Some(("http".into(), "p".into(), 32400)));
    }

    #[test]
    fn encodes_like_rfc3986() {
        assert_eq!(encode_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode_component("genre[0].tag.tag"), "genre%5B0%5D.tag.tag");
        assert_eq!(
            build_query(&[("title.value".into(), "Hi there".into()), ("title.locked".into(), "1".into())]),
            "title.value=Hi%20there&title.locked=1"
        );
    }

    #[test]
    fn refused_connection_is_classified() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = HttpClient::new(ClientOptions {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            max_body: 1024,
            accept_invalid_certs: false,
            user_agent: "test".into(),
            proxy: None,
        });
        let err =
            client.send(Method::Get, &format!("http://127.0.0.1:{port}/identity"), &[], None, None, None).unwrap_err();
        assert!(matches!(err, TransportError::Refused(_)), "{err:?}");
    }
}
