//! `plex`: one request to the configured Plex server, if it is one of the
//! requests syncing needs (`plex_routes`). The transport (`net::plex`) adds
//! the base URL, the token and the client identity, so the token never
//! enters the sandbox. A `stash-image` body is fetched from Stash here, and
//! only for an image URL a scene look-up gave the policy.

use super::plex_routes;
use super::stash::ImageGrants;
pub use crate::net::http::{HttpResponse, Method, TransportError};
pub use crate::net::plex::PlexClient;
pub use crate::net::plex::PlexRequest;
use crate::net::stash::StashClient;
use crate::runtime::wit::plex;
use std::sync::Arc;
use std::time::Duration;

/// Counters for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlexStats {
    pub requests: u64,
    pub puts: u64,
    pub transport_errors: u64,
    /// Images fetched from Stash for uploads.
    pub images: u64,
    /// Requests refused before sending.
    pub refused: u64,
}

/// Refusals logged one by one per process; past this, they are counted.
const REFUSALS_LOGGED: u64 = 20;

/// Where the policy's Plex requests go once the host has allowed them: the
/// configured server (`net::plex::PlexClient`), or a recorded fixture
/// (`runtime::fixture`: admission, `stash2plex policy run`).
pub trait PlexBackend: Send {
    /// The server as logs and the policy may see it.
    fn label(&self) -> String;
    fn send(&mut self, request: PlexRequest) -> Result<HttpResponse, TransportError>;
}

impl PlexBackend for PlexClient {
    fn label(&self) -> String {
        PlexClient::label(self)
    }
    fn send(&mut self, request: PlexRequest) -> Result<HttpResponse, TransportError> {
        PlexClient::send(self, request)
    }
}

#[derive(Default)]
pub struct PlexCap {
    pub client: Option<Box<dyn PlexBackend>>,
    /// Where `stash-image` bodies come from.
    pub images: Option<Arc<StashClient>>,
    /// The image URLs the policy was given (shared with `stash`).
    pub grants: Arc<ImageGrants>,
    /// Set while Plex is off limits (hooks, offline reports): the reason.
    pub forbidden: Option<String>,
    pub stats: PlexStats,
}

impl From<TransportError> for plex::TransportError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Refused(m) => plex::TransportError::Refused(m),
            TransportError::Timeout(m) => plex::TransportError::Timeout(m),
            TransportError::Reset(m) => plex::TransportError::Reset(m),
            TransportError::Dns(m) => plex::TransportError::Dns(m),
            TransportError::Tls(m) => plex::TransportError::Tls(m),
            TransportError::TooLarge(n) => plex::TransportError::TooLarge(n),
            TransportError::InvalidRequest(m) => plex::TransportError::InvalidRequest(m),
            TransportError::Other(m) => plex::TransportError::Other(m),
        }
    }
}

impl PlexCap {
    /// Refuse, saying so in the log (the first few times).
    fn refuse(&mut self, why: String) -> TransportError {
        self.stats.refused += 1;
        if self.stats.refused <= REFUSALS_LOGGED {
            crate::warn!("Refused a request of the policy: {why}");
        } else if self.stats.refused == REFUSALS_LOGGED + 1 {
            crate::warn!("The policy keeps sending requests the host refuses; further refusals are not logged");
        }
        TransportError::InvalidRequest(format!("refused by the host: {why}"))
    }

    fn body(&mut self, body: plex::Body) -> Result<Option<Vec<u8>>, TransportError> {
        match body {
            plex::Body::Empty => Ok(None),
            plex::Body::StashImage(url) => {
                if !self.grants.allows(&url) {
                    let shown: String = url.chars().take(120).collect();
                    return Err(self.refuse(format!(
                        "{shown} is not an image URL of a scene the policy was given by a Stash look-up"
                    )));
                }
                let Some(stash) = &self.images else {
                    return Err(TransportError::InvalidRequest("no Stash connection to fetch the image from".into()));
                };
                self.stats.images += 1;
                stash.fetch_image(&url).map(Some)
            }
        }
    }

    fn send(&mut self, request: plex::Request) -> Result<plex::Response, TransportError> {
        if let Some(why) = &self.forbidden {
            return Err(TransportError::InvalidRequest(why.clone()));
        }
        if self.client.is_none() {
            return Err(TransportError::InvalidRequest("Plex is not configured (plex_url/plex_token)".into()));
        }
        if let Err(why) = plex_routes::check(&request) {
            return Err(self.refuse(why));
        }
        let method = match request.method {
            plex::Method::Get => Method::Get,
            plex::Method::Put => Method::Put,
            plex::Method::Post => Method::Post,
        };
        let body = self.body(request.body)?;
        let req = PlexRequest {
            method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body,
            timeout: request.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let Some(client) = self.client.as_mut() else {
            return Err(TransportError::InvalidRequest("Plex is not configured (plex_url/plex_token)".into()));
        };
        self.stats.requests += 1;
        if method == Method::Put {
            self.stats.puts += 1;
        }
        let resp = client.send(req).inspect_err(|_| self.stats.transport_errors += 1)?;
        Ok(plex::Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
            elapsed_ms: u32::try_from(resp.elapsed.as_millis()).unwrap_or(u32::MAX),
        })
    }
}

impl plex::Host for PlexCap {
    fn server_label(&mut self) -> wasmtime::Result<String> {
        Ok(self.client.as_ref().map(|c| c.label()).unwrap_or_else(|| "(Plex not configured)".into()))
    }

    fn send(&mut self, request: plex::Request) -> wasmtime::Result<Result<plex::Response, plex::TransportError>> {
        Ok(PlexCap::send(self, request).map_err(Into::into))
    }
}
