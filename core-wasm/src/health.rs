//! The two cheap health requests, classified like every other request:
//!
//! - `GET /identity` (unauthenticated; PMS answers it only once its
//!   database is up, and it is the official container health check): the
//!   recovery probe while the breaker is open;
//! - `GET /library/sections` (authenticated): the credential check while
//!   syncing is paused because Plex rejected the token.

use crate::classify::{self, Classified, Endpoint, ErrorClass};
use crate::host::{Host, PlexRequest};
use crate::recovery::PROBE_TIMEOUT_MS;

/// `GET /identity`: `Ok("PMS 1.41.3, 12 ms")` when Plex answers with its
/// identity, the classified failure otherwise.
pub fn identity(host: &dyn Host) -> Result<String, Classified> {
    let mut request = PlexRequest::get("/identity");
    request.timeout_ms = Some(PROBE_TIMEOUT_MS);
    let what = "GET /identity";
    let response = host.plex_send(&request).map_err(|e| classify::transport(&e))?;
    if let Some(c) = classify::response(Endpoint::Identity, &response, what, host.now_ms()) {
        return Err(c);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| classify::malformed(what, &format!("not JSON: {e}")))?;
    let Some(container) = value.get("MediaContainer") else {
        return Err(classify::malformed(what, "no MediaContainer: is plex_url a Plex Media Server?"));
    };
    let version = container.get("version").and_then(|v| v.as_str()).unwrap_or("unknown version");
    Ok(format!("Plex Media Server {}, {} ms", crate::text::clip(version, 40), response.elapsed_ms))
}

/// `GET /library/sections` with the token: `Ok` when Plex accepts it.
pub fn token(host: &dyn Host) -> Result<(), Classified> {
    let mut request = PlexRequest::get("/library/sections");
    request.timeout_ms = Some(PROBE_TIMEOUT_MS);
    let response = host.plex_send(&request).map_err(|e| classify::transport(&e))?;
    match classify::response(Endpoint::Sections, &response, "GET /library/sections", host.now_ms()) {
        None => Ok(()),
        Some(c) => Err(c),
    }
}

/// Whether a failed check was a credential rejection (and its status).
pub fn unauthorized_status(c: &Classified) -> Option<u16> {
    match c.class {
        ErrorClass::PlexUnauthorized { status } => Some(status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::TransportError;
    use crate::test_support::{FakeHost, Reply, status_response};

    #[test]
    fn identity_probe() {
        let host = FakeHost::new();
        let ok = identity(&host).unwrap();
        assert!(ok.starts_with("Plex Media Server 1.41"), "{ok}");
        assert_eq!(host.requests()[0].timeout_ms, Some(5_000));
        host.script(None, "/identity", Reply::Transport(TransportError::Refused("x".into())), 1);
        assert_eq!(identity(&host).unwrap_err().class.name(), "plex-unavailable");
        host.script(None, "/identity", Reply::Response(status_response(503, "")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexStarting);
        host.script(None, "/identity", Reply::Response(status_response(200, "<html>router</html>")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexMalformed);
        host.script(None, "/identity", Reply::Response(status_response(200, "{\"ok\":1}")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexMalformed);
    }

    #[test]
    fn token_check() {
        let host = FakeHost::new();
        assert_eq!(token(&host), Ok(()));
        host.script(None, "/library/sections", Reply::Response(status_response(401, "")), 1);
        let e = token(&host).unwrap_err();
        assert_eq!(unauthorized_status(&e), Some(401));
        host.script(None, "/library/sections", Reply::Response(status_response(500, "")), 1);
        assert_eq!(unauthorized_status(&token(&host).unwrap_err()), None);
    }
}
