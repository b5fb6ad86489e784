//! A recorded Plex: what a Plex server answered to a policy's requests,
//! played back in place of the server. Admission runs its conformance
//! vectors against one, and `stash2plex policy run` shows what a policy
//! would send, without writing to any Plex.
//!
//! A fixture is JSON: `{"description": "...", "exchanges": [{"method",
//! "path", "query": [[k, v], ...], "headers": [[k, v], ...], "status",
//! "body"}]}`, where `body` is the answer's JSON (or a string). A request
//! is matched by method, path, query (in any order) and its paging headers
//! (`X-Plex-Container-*`); when several exchanges match, they are served in
//! the recorded order and the last one repeats (so a read-back after an
//! edit sees what Plex showed after it). A write that is not in the
//! fixture is answered `200` and only listed; a read that is not in it is
//! answered `404`. Every request is kept in [`Replay::log`].
//!
//! [`Fault`] turns the recording into an outage (every request times out,
//! or Plex answers one status) for the vectors that check backoff and the
//! breaker.

use crate::capabilities::plex::{HttpResponse, Method, PlexBackend, PlexRequest, TransportError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fixture the conformance vectors use: one movie library with the
/// demo scene's item, recorded from the test kit's Plex (see the e2e test
/// `policies::the_conformance_fixture_is_what_plex_answers`).
pub const BUILTIN_FIXTURE: &str = include_str!("../../conformance/plex-fixture.json");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Vec<(String, String)>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub status: u16,
    #[serde(default)]
    pub body: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Fixture {
    #[serde(default)]
    pub description: String,
    pub exchanges: Vec<Exchange>,
    /// Stash scenes (as GraphQL returns them) that look-ups answer with.
    #[serde(default)]
    pub scenes: Vec<Value>,
    /// Scenes whose file the recorded Plex has: (scene id, ratingKey).
    #[serde(default)]
    pub matched: Vec<(String, String)>,
    /// Scenes whose file it does not have.
    #[serde(default)]
    pub unmatched: Vec<String>,
}

impl Fixture {
    pub fn parse(text: &str) -> Result<Fixture, String> {
        serde_json::from_str(text).map_err(|e| format!("the Plex fixture is not valid: {e}"))
    }

    /// The recorded scenes as the contract's scenes.
    pub fn scenes(&self) -> Result<Vec<crate::runtime::wit::stash::Scene>, String> {
        self.scenes.iter().map(scene_from_value).collect()
    }

    pub fn builtin() -> Fixture {
        // The embedded fixture is checked by the tests; an invalid one is a
        // bug of this build, reported as an empty recording.
        Self::parse(BUILTIN_FIXTURE).unwrap_or_default()
    }
}

/// A scene as Stash's GraphQL returns it, or as the contract's record
/// (JSON of the generated type, as fixtures store it).
pub fn scene_from_value(v: &Value) -> Result<crate::runtime::wit::stash::Scene, String> {
    if let Ok(scene) = serde_json::from_value::<crate::runtime::wit::stash::Scene>(v.clone()) {
        return Ok(scene);
    }
    crate::net::stash::scene_from_json(v).map_err(|e| e.to_string())
}

/// An outage laid over the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every request times out.
    Timeout,
    /// Every request is answered with this status and an empty body.
    Status(u16),
}

/// One request the policy made, and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: &'static str,
    /// Path and query as they would go on the wire.
    pub target: String,
    /// `None`: a transport error (a fault).
    pub status: Option<u16>,
    /// A write: it was not sent anywhere.
    pub write: bool,
    /// Not in the recording.
    pub unrecorded: bool,
}

/// A fixture being played back, or being recorded from a live Plex.
pub struct Replay {
    exchanges: Vec<(Exchange, usize)>,
    /// Recording: requests go to this Plex and what it answers is kept.
    live: Option<Box<dyn PlexBackend>>,
    recorded: Arc<Mutex<Vec<Exchange>>>,
    fault: Arc<Mutex<Fault>>,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// The shared handles of a [`Replay`] once it is inside a policy's
/// capabilities: its request log and its fault switch.
#[derive(Clone)]
pub struct ReplayHandle {
    fault: Arc<Mutex<Fault>>,
    log: Arc<Mutex<Vec<Seen>>>,
    recorded: Arc<Mutex<Vec<Exchange>>>,
}

impl ReplayHandle {
    /// What a recording Replay was answered, in order.
    pub fn recorded(&self) -> Vec<Exchange> {
        self.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }
    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    pub fn clear(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }
}

fn same_pairs(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let mut a: Vec<&(String, String)> = a.iter().collect();
    let mut b: Vec<&(String, String)> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

fn paging(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-plex-container-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

impl Replay {
    pub fn new(fixture: Fixture) -> (Replay, ReplayHandle) {
        Self::make(fixture.exchanges, None)
    }

    /// Record what `live` answers (with the same faults laid over it).
    pub fn recording(live: Box<dyn PlexBackend>) -> (Replay, ReplayHandle) {
        Self::make(Vec::new(), Some(live))
    }

    fn make(exchanges: Vec<Exchange>, live: Option<Box<dyn PlexBackend>>) -> (Replay, ReplayHandle) {
        let handle = ReplayHandle {
            fault: Arc::new(Mutex::new(Fault::None)),
            log: Arc::new(Mutex::new(Vec::new())),
            recorded: Arc::new(Mutex::new(Vec::new())),
        };
        let replay = Replay {
            exchanges: exchanges.into_iter().map(|e| (e, 0)).collect(),
            live,
            recorded: handle.recorded.clone(),
            fault: handle.fault.clone(),
            log: handle.log.clone(),
        };
        (replay, handle)
    }

    /// Send to the live Plex and keep the exchange.
    fn record(&mut self, req: PlexRequest) -> Option<Result<(u16, Vec<u8>), TransportError>> {
        let live = self.live.as_mut()?;
        let (method, path, query) = (req.method.as_str().to_string(), req.path.clone(), req.query.clone());
        let headers = paging(&req.headers);
        let answer = live.send(req).map(|r| (r.status, r.body));
        if let Ok((status, body)) = &answer {
            let body = serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            if let Ok(mut rec) = self.recorded.lock() {
                rec.push(Exchange { method, path, query, headers, status: *status, body });
            }
        }
        Some(answer)
    }

    fn answer(&mut self, req: &PlexRequest) -> Option<(u16, Vec<u8>)> {
        let method = req.method.as_str();
        let wanted = paging(&req.headers);
        let matching: Vec<usize> = (0..self.exchanges.len())
            .filter(|&i| {
                let e = &self.exchanges[i].0;
                e.method.eq_ignore_ascii_case(method)
                    && e.path == req.path
                    && same_pairs(&e.query, &req.query)
                    && same_pairs(&paging(&e.headers), &wanted)
            })
            .collect();
        // The first exchange not served yet, else the last one again.
        let Some(pick) = matching.iter().copied().find(|&i| self.exchanges[i].1 == 0).or(matching.last().copied())
        else {
            return self.batched_items(req);
        };
        let (exchange, served) = &mut self.exchanges[pick];
        *served += 1;
        let body = match &exchange.body {
            Value::Null => Vec::new(),
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        Some((exchange.status, body))
    }
}

impl Replay {
    /// `GET /library/metadata/1,2,3` that was not recorded as such: the
    /// recorded reads of each item, in one container (as Plex answers a
    /// batched read).
    fn batched_items(&mut self, req: &PlexRequest) -> Option<(u16, Vec<u8>)> {
        let ids = req.path.strip_prefix("/library/metadata/")?;
        if req.method != Method::Get || !ids.contains(',') || !req.query.is_empty() {
            return None;
        }
        let mut items = Vec::new();
        for id in ids.split(',') {
            let single = PlexRequest {
                method: Method::Get,
                path: format!("/library/metadata/{id}"),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                timeout: None,
            };
            if let Some((200, body)) = self.answer(&single) {
                let v: Value = serde_json::from_slice(&body).ok()?;
                items.extend(
                    v.pointer("/MediaContainer/Metadata").and_then(Value::as_array).cloned().unwrap_or_default(),
                );
            }
        }
        let body = serde_json::json!({ "MediaContainer": { "size": items.len(), "Metadata": items } });
        Some((200, body.to_string().into_bytes()))
    }
}

impl PlexBackend for Replay {
    fn label(&self) -> String {
        "http://recorded-plex.invalid:32400".into()
    }

    fn send(&mut self, req: PlexRequest) -> Result<HttpResponse, TransportError> {
        let method = req.method.as_str();
        let mut target = req.path.clone();
        if !req.query.is_empty() {
            target.push('?');
            target.push_str(&crate::net::http::build_query(&req.query));
        }
        let write = req.method != Method::Get;
        let fault = self.fault.lock().map(|f| *f).unwrap_or(Fault::None);
        let mut seen = Seen { method, target, status: None, write, unrecorded: false };
        let result = match fault {
            Fault::Timeout => Err(TransportError::Timeout("the recorded Plex is in a timeout outage".into())),
            Fault::Status(code) => Ok((code, Vec::new())),
            Fault::None if self.live.is_some() => match self.record(req) {
                Some(answer) => answer,
                None => Err(TransportError::Other("no live Plex".into())),
            },
            Fault::None => Ok(match self.answer(&req) {
                Some(found) => found,
                None => {
                    seen.unrecorded = true;
                    if write { (200, Vec::new()) } else { (404, b"<html>404 Not Found</html>".to_vec()) }
                }
            }),
        };
        seen.status = result.as_ref().ok().map(|(s, _)| *s);
        if let Ok(mut log) = self.log.lock() {
            log.push(seen);
        }
        let (status, body) = result?;
        let content_type = if body.first() == Some(&b'{') { "application/json" } else { "text/html" };
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            elapsed: Duration::from_millis(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &[(&str, &str)]) -> PlexRequest {
        PlexRequest {
            method: Method::Get,
            path: path.into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    #[test]
    fn exchanges_are_matched_in_order_the_last_repeats_and_writes_are_only_listed() {
        let fixture = Fixture::parse(
            r#"{"exchanges":[
                {"method":"GET","path":"/library/metadata/7","status":200,"body":{"v":1}},
                {"method":"GET","path":"/library/metadata/7","status":200,"body":{"v":2}},
                {"method":"GET","path":"/library/sections/1/all","query":[["type","1"],["file","/a b"]],"status":200,"body":"x"}
            ]}"#,
        )
        .unwrap();
        let (mut plex, handle) = Replay::new(fixture);
        let body = |r: Result<HttpResponse, TransportError>| String::from_utf8(r.unwrap().body).unwrap();
        assert_eq!(body(plex.send(get("/library/metadata/7", &[]))), r#"{"v":1}"#);
        assert_eq!(body(plex.send(get("/library/metadata/7", &[]))), r#"{"v":2}"#);
        assert_eq!(body(plex.send(get("/library/metadata/7", &[]))), r#"{"v":2}"#, "the last repeats");
        assert_eq!(body(plex.send(get("/library/sections/1/all", &[("file", "/a b"), ("type", "1")]))), "x");
        assert_eq!(plex.send(get("/library/metadata/8", &[])).unwrap().status, 404);
        let mut put = get("/library/sections/1/all", &[("type", "1"), ("id", "7"), ("title.value", "T")]);
        put.method = Method::Put;
        assert_eq!(plex.send(put).unwrap().status, 200);
        let log = handle.log();
        assert_eq!(log.len(), 6);
        assert!(log[4].unrecorded && !log[4].write && log[4].status == Some(404));
        assert!(log[5].unrecorded && log[5].write, "{:?}", log[5]);
        assert_eq!(log[5].target, "/library/sections/1/all?type=1&id=7&title.value=T");
        handle.set_fault(Fault::Timeout);
        assert!(matches!(plex.send(get("/library/metadata/7", &[])), Err(TransportError::Timeout(_))));
        handle.set_fault(Fault::Status(503));
        assert_eq!(plex.send(get("/library/metadata/7", &[])).unwrap().status, 503);
    }

    #[test]
    fn the_builtin_fixture_parses() {
        let f = Fixture::parse(BUILTIN_FIXTURE).expect("the embedded fixture is valid");
        assert!(f.exchanges.iter().any(|e| e.path == "/library/sections"), "{f:?}");
    }
}
