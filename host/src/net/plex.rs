//! The Plex transport: one request to the configured Plex server. The
//! request carries a relative path; this adds the base URL, the token and
//! the client identity headers, so the token never enters the sandbox. What
//! a policy may send at all is decided before, in `capabilities::plex_routes`.

use crate::net::http::{self, ClientOptions, HttpClient, HttpResponse, Method, TransportError, build_query};
use crate::text::clip;
use std::time::Duration;

/// Headers the host owns; a policy may not set them.
const RESERVED_HEADERS: &[&str] =
    &["x-plex-token", "host", "x-plex-client-identifier", "content-length", "transfer-encoding"];

/// Plex answers are JSON pages of at most a few MiB even for large
/// libraries when paged; 64 MiB is a hard stop against a runaway body.
pub const MAX_PLEX_BODY: u64 = 64 << 20;

pub struct PlexClient {
    http: HttpClient,
    base_url: String,
    token: String,
    client_id: String,
    default_timeout: Duration,
}

pub struct PlexRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for PlexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexClient").field("server", &self.label()).field("token", &"****").finish()
    }
}

impl PlexClient {
    /// `proxy` is used only when the user set one and Plex is not on this
    /// machine.
    pub fn new(
        base_url: &str,
        token: &str,
        client_id: &str,
        connect: Duration,
        read: Duration,
        proxy: Option<ureq::Proxy>,
    ) -> PlexClient {
        let proxy = proxy.filter(|_| !http::is_loopback(base_url));
        let http = HttpClient::new(ClientOptions {
            connect_timeout: connect,
            read_timeout: read,
            max_body: MAX_PLEX_BODY,
            accept_invalid_certs: false,
            user_agent: format!("stash2plex/{}", env!("CARGO_PKG_VERSION")),
            proxy,
        });
        PlexClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client_id: client_id.to_string(),
            default_timeout: connect + read,
        }
    }

    /// The server as logs and the policy may see it: scheme, host and port,
    /// never a user name, password, path or query.
    pub fn label(&self) -> String {
        match http::origin(&self.base_url) {
            Some((scheme, host, port)) => format!("{scheme}://{host}:{port}"),
            None => "(the configured Plex server)".into(),
        }
    }

    /// Check a policy's request before anything is sent.
    pub fn validate(req: &PlexRequest) -> Result<(), TransportError> {
        let p = &req.path;
        if !p.starts_with('/') || p.starts_with("//") || p.contains("://") {
            return Err(TransportError::InvalidRequest(format!(
                "the path must be relative to the Plex server and start with '/', got {:?}",
                clip(p, 120)
            )));
        }
        if p.chars().any(|c| c.is_control() || c == ' ' || c == '?' || c == '#') {
            return Err(TransportError::InvalidRequest(
                "the path contains a space, control character, '?' or '#'; put parameters in `query`".into(),
            ));
        }
        if p.split('/').any(|seg| seg == "..") {
            return Err(TransportError::InvalidRequest("the path may not contain '..'".into()));
        }
        for (k, v) in &req.headers {
            let lower = k.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(TransportError::InvalidRequest(format!("the header {k} is set by the host")));
            }
            if k.is_empty()
                || k.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'-'))
                || v.chars().any(char::is_control)
            {
                return Err(TransportError::InvalidRequest(format!("invalid header {:?}", clip(k, 60))));
            }
        }
        if req.query.iter().any(|(k, _)| k.eq_ignore_ascii_case("X-Plex-Token")) {
            return Err(TransportError::InvalidRequest("X-Plex-Token is set by the host".into()));
        }
        Ok(())
    }

    pub fn send(&self, req: PlexRequest) -> Result<HttpResponse, TransportError> {
        Self::validate(&req)?;
        let url = self.url(&req);
        let mut headers: Vec<(String, String)> = vec![
            ("Accept".into(), "application/json".into()),
            ("X-Plex-Token".into(), self.token.clone()),
            ("X-Plex-Client-Identifier".into(), self.client_id.clone()),
            ("X-Plex-Product".into(), "stash2plex".into()),
            ("X-Plex-Version".into(), env!("CARGO_PKG_VERSION").into()),
            ("X-Plex-Device-Name".into(), "stash2plex".into()),
            ("X-Plex-Platform".into(), std::env::consts::OS.into()),
            ("X-Plex-Provides".into(), "controller".into()),
        ];
        headers.extend(req.headers);
        let timeout = self.timeout(req.timeout);
        self.http.send(req.method, &url, &headers, req.body, Some(timeout), None)
    }

    /// The URL a validated request goes to: the server's base URL, the
    /// path as given, the query percent-encoded.
    pub(crate) fn url(&self, req: &PlexRequest) -> String {
        let mut url = format!("{}{}", self.base_url, req.path);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(&build_query(&req.query));
        }
        url
    }

    /// A policy may ask for a shorter deadline than the user's, never a
    /// longer one.
    fn timeout(&self, asked: Option<Duration>) -> Duration {
        asked.map_or(self.default_timeout, |t| t.min(self.default_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> PlexRequest {
        PlexRequest {
            method: Method::Get,
            path: path.into(),
            query: vec![],
            headers: vec![],
            body: None,
            timeout: None,
        }
    }

    #[test]
    fn refuses_anything_but_relative_paths() {
        assert!(PlexClient::validate(&req("/library/sections")).is_ok());
        for bad in ["library", "http://evil/x", "//evil/x", "/a/../b", "/a b", "/a?x=1"] {
            assert!(matches!(PlexClient::validate(&req(bad)), Err(TransportError::InvalidRequest(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_host_owned_headers_and_token_params() {
        let mut r = req("/x");
        r.headers = vec![("X-Plex-Token".into(), "steal".into())];
        assert!(PlexClient::validate(&r).is_err());
        let mut r = req("/x");
        r.query = vec![("x-plex-token".into(), "t".into())];
        assert!(PlexClient::validate(&r).is_err());
        let mut r = req("/x");
        r.headers = vec![("X-Plex-Container-Start".into(), "0".into())];
        assert!(PlexClient::validate(&r).is_ok());
    }

    /// A one-shot HTTP listener on loopback: the request line it got, sent
    /// back through the channel, answered with `{}`.
    fn listener() -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok((stream, _)) = l.accept() {
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                        break;
                    }
                }
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
                let _ = tx.send(line.trim_end().to_string());
            }
        });
        (url, rx)
    }

    /// `plex_proxy` carries requests to a Plex elsewhere, and is skipped
    /// for a Plex on this machine.
    #[test]
    fn the_proxy_is_used_for_a_remote_plex_and_never_for_a_local_one() {
        let (proxy_url, proxied) = listener();
        let proxy = || Some(ureq::Proxy::new(&proxy_url).unwrap());
        let t = Duration::from_secs(5);
        let remote = PlexClient::new("http://plex.example.invalid:32400", "t", "id", t, t, proxy());
        // (The answer depends on the proxy's form: a plain forward, or a
        // CONNECT tunnel that this listener does not carry on.)
        let _ = remote.send(req("/identity"));
        let line = proxied.recv_timeout(Duration::from_secs(5)).expect("the proxy was asked");
        assert!(
            line.starts_with("GET http://plex.example.invalid:32400/identity")
                || line.starts_with("CONNECT plex.example.invalid:32400"),
            "{line}"
        );

        let (plex_url, direct) = listener();
        let local = PlexClient::new(&plex_url, "t", "id", t, t, proxy());
        assert_eq!(local.send(req("/identity")).expect("directly").status, 200);
        assert!(direct.recv_timeout(Duration::from_secs(5)).unwrap().starts_with("GET /identity"));
        assert!(proxied.try_recv().is_err(), "the proxy saw nothing of the local Plex");
    }

    #[test]
    fn a_policy_cannot_lengthen_the_users_timeout() {
        let c = PlexClient::new("http://p:1", "t", "id", Duration::from_secs(2), Duration::from_secs(5), None);
        assert_eq!(c.timeout(None), Duration::from_secs(7));
        assert_eq!(c.timeout(Some(Duration::from_millis(u64::from(u32::MAX)))), Duration::from_secs(7));
        assert_eq!(c.timeout(Some(Duration::from_secs(1))), Duration::from_secs(1));
    }

    #[test]
    fn label_hides_credentials() {
        let c = PlexClient::new(
            "http://user:pw@plex:32400/x?X-Plex-Token=secret",
            "secret",
            "id",
            Duration::from_secs(1),
            Duration::from_secs(1),
            None,
        );
        assert_eq!(c.label(), "http://plex:32400");
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        let c =
            PlexClient::new("https://plex.example", "t", "id", Duration::from_secs(1), Duration::from_secs(1), None);
        assert_eq!(c.label(), "https://plex.example:443");
    }
}
