//! Admission: what a component must pass before the host runs it.
//!
//! 1. size: at most [`super::MAX_COMPONENT_BYTES`];
//! 2. a whole-binary parse and validation (`wasmparser`), so a truncated or
//!    corrupt file is a sentence naming the byte offset;
//! 3. the world and its version, read from the exports (`wit`); the linker
//!    then refuses any import outside the world and WASI 0.2, naming it,
//!    and a trial instance checks the export types;
//! 4. `info`: the declared settings (not the host's, once each, defaults of
//!    their kind) and `configure` with those defaults;
//! 5. conformance vectors, run in the sandbox against a recorded Plex
//!    ([`fixture`](super::fixture)) and recorded scenes, on a fake clock:
//!    - `fallback-payload`: the host's fallback payload is accepted and the
//!      job settled within ten minutes (a policy may decide to write
//!      nothing); every write goes to the scene's own Plex item, and none
//!      is refused by the allow-list;
//!    - `unknown-file`: a scene whose file Plex does not have gets no write;
//!    - `backoff`: ten minutes of Plex timing out: no job dead-lettered, no
//!      retry due sooner than a second or later than a day, and the policy
//!      backs off (at most [`OUTAGE_MAX_REQUESTS`] requests);
//!    - `breaker`: Plex answers again: every job is settled within 20
//!      minutes, none dead-lettered.
//!
//! The vectors check what a policy must never do (hammer Plex, write to
//! another item, lose or bury a job in a short outage, choke on the host's
//! payload), not what it chooses to write.
//!
//! The report lists the imports, the size, and per vector the fuel of the
//! costliest call and the memory high-water (`stash2plex policy check`).

use super::fixture::{Fault, Fixture, Replay, ReplayHandle};
use super::session::PolicySession;
use super::source::Why;
use super::{MAX_COMPONENT_BYTES, Runtime};
use crate::capabilities::HostState;
use crate::clock::{Clock, FakeClock};
use crate::drain::{self, DrainMode, Gate, Observer, Stopped};
use crate::runtime::wit::policy::StepOutcome;
use crate::store::{DeadFilter, Queue};
use serde_json::Map;
use std::sync::Arc;

/// Plex requests a policy may make during the `backoff` vector's ten
/// minutes of timeouts (a policy retrying without backing off makes
/// thousands).
pub const OUTAGE_MAX_REQUESTS: usize = 200;
/// The fallback payload the host records when a policy cannot (hook.rs).
pub fn fallback_payload(trigger: &str, fields: &[&str]) -> String {
    serde_json::json!({ "v": 1, "trigger": trigger, "fields": fields, "recorded_by": "host" }).to_string()
}

/// Size, header and a full validation of the bytes.
pub fn check_bytes(wasm: &[u8]) -> Result<(), String> {
    if wasm.len() > MAX_COMPONENT_BYTES {
        return Err(format!(
            "it is {} MiB, over the {} MiB limit for a policy component",
            wasm.len() >> 20,
            MAX_COMPONENT_BYTES >> 20
        ));
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err("the file is not WebAssembly (no \\0asm header)".into());
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(wasm)
        .map(|_| ())
        .map_err(|e| format!("the file is not a valid WebAssembly component (at byte {}: {})", e.offset(), e.message()))
}

/// What an import is to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// One of the world's interfaces.
    World,
    /// WASI 0.2: linked, granting nothing.
    Wasi,
}

#[derive(Debug, Clone)]
pub struct VectorResult {
    pub name: &'static str,
    pub passed: bool,
    /// What was checked and seen (the failure, if any).
    pub detail: String,
    /// Fuel of the costliest call, and of all the vector's calls.
    pub fuel_max: u64,
    pub fuel_total: u64,
    /// Linear memory high-water.
    pub memory_peak: usize,
    pub steps: u64,
    pub plex_requests: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub version: String,
    pub world: String,
    pub sha256: String,
    pub imports: Vec<(String, ImportKind)>,
    pub exports: Vec<String>,
    pub vectors: Vec<VectorResult>,
    /// A problem before the vectors (declaration, settings).
    pub problem: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.vectors.iter().all(|v| v.passed)
    }

    /// Why admission failed, in one sentence.
    pub fn failure_sentence(&self) -> String {
        if let Some(p) = &self.problem {
            return p.clone();
        }
        let failed: Vec<String> =
            self.vectors.iter().filter(|v| !v.passed).map(|v| format!("{}: {}", v.name, v.detail)).collect();
        format!("it failed the conformance vector(s) {}", failed.join("; "))
    }
}

/// Run every check after loading on `runtime`, against the recorded Plex.
pub fn admit(runtime: &Runtime) -> Result<Report, String> {
    let fixture = Fixture::builtin();
    run_vectors(runtime, Sandbox::new(runtime, &fixture), &fixture)
}

/// Run the vectors against a live Plex and Stash, recording what they
/// answer: the embedded fixture is made this way (by a test, from the test
/// kit's Plex and Stash). `matched` are (scene id, ratingKey) pairs Plex
/// has, `unmatched` scene ids whose file it does not have.
pub fn record_fixture(
    runtime: &Runtime,
    plex_url: &str,
    plex_token: &str,
    stash_url: &str,
    matched: Vec<(String, String)>,
    unmatched: Vec<String>,
) -> Result<(Report, Fixture), String> {
    use std::time::Duration;
    let stash = crate::net::stash::StashClient::new(stash_url, None, None);
    let mut scenes = Vec::new();
    for id in matched.iter().map(|(id, _)| id).chain(&unmatched) {
        let scene = stash.find_scene(id).map_err(|e| e.to_string())?.ok_or(format!("Stash has no scene {id}"))?;
        scenes.push(serde_json::to_value(&scene).map_err(|e| e.to_string())?);
    }
    let base = Fixture {
        description:
            "Recorded from the test kit's Plex by the e2e test policies::the_conformance_fixture_is_what_plex_answers"
                .into(),
        exchanges: Vec::new(),
        scenes,
        matched,
        unmatched,
    };
    let live = crate::net::plex::PlexClient::new(
        plex_url,
        plex_token,
        "stash2plex-fixture-recorder",
        Duration::from_secs(5),
        Duration::from_secs(30),
        None,
    );
    let (replay, handle) = Replay::recording(Box::new(live));
    let sandbox = Sandbox::with_backend(runtime.clone_loaded(), Box::new(replay), handle.clone(), &base, &Map::new());
    let report = run_vectors(runtime, sandbox, &base)?;
    Ok((report, Fixture { exchanges: handle.recorded(), ..base }))
}

fn run_vectors(runtime: &Runtime, sandbox: Result<Sandbox, String>, fixture: &Fixture) -> Result<Report, String> {
    let _quiet = crate::plugin::log::quieter(crate::plugin::log::Level::Warn);
    let ty = runtime.component_type_names();
    let imports =
        ty.0.iter()
            .map(|n| (n.clone(), if n.starts_with("wasi:") { ImportKind::Wasi } else { ImportKind::World }))
            .collect();
    let mut report = Report {
        name: String::new(),
        version: String::new(),
        world: runtime.world.to_string(),
        sha256: runtime.identity.sha256.clone(),
        imports,
        exports: ty.1,
        vectors: Vec::new(),
        problem: None,
    };
    let mut world = match sandbox {
        Ok(w) => w,
        Err(e) => {
            report.problem = Some(e);
            return Ok(report);
        }
    };
    report.name = world.session.info.name.clone();
    report.version = world.session.info.version.clone();
    report.vectors.push(world.fallback_payload(fixture));
    report.vectors.push(world.unknown_file(fixture));
    report.vectors.push(world.backoff(fixture));
    report.vectors.push(world.breaker(fixture));
    Ok(report)
}

/// A policy in a sandbox: recorded Plex and scenes, in-memory queue, fake
/// clock.
pub struct Sandbox {
    pub session: PolicySession,
    pub clock: FakeClock,
    pub plex: ReplayHandle,
}

/// 2026-01-01 (a fixed start keeps runs reproducible).
const START_MS: i64 = 1_767_225_600_000;

impl Sandbox {
    pub fn new(runtime: &Runtime, fixture: &Fixture) -> Result<Sandbox, String> {
        Self::with_settings(runtime.clone_loaded(), fixture, &Map::new())
    }

    pub fn with_settings(
        runtime: Runtime,
        fixture: &Fixture,
        settings: &Map<String, serde_json::Value>,
    ) -> Result<Sandbox, String> {
        let (replay, plex) = Replay::new(fixture.clone());
        Self::with_backend(runtime, Box::new(replay), plex, fixture, settings)
    }

    pub fn with_backend(
        runtime: Runtime,
        backend: Box<dyn crate::capabilities::plex::PlexBackend>,
        plex: ReplayHandle,
        fixture: &Fixture,
        settings: &Map<String, serde_json::Value>,
    ) -> Result<Sandbox, String> {
        let clock = FakeClock::new(START_MS);
        let queue = Queue::open_in_memory().map_err(|e| e.to_string())?;
        let mut state = HostState::new(Arc::new(clock.clone()), 7, queue);
        state.plex.client = Some(backend);
        // Images are not part of a recording (no Stash to fetch them from).
        let mut scenes = fixture.scenes()?;
        for scene in &mut scenes {
            scene.screenshot_url = None;
            scene.performers.iter_mut().for_each(|p| p.image_url = None);
        }
        state.stash.recorded = Some(scenes);
        state.log.prefix = "[sandbox] ".into();
        let session = PolicySession::start_because(runtime, state, settings, Why::Default)
            .map_err(|e| format!("it could not be started with its default settings: {e}"))?;
        Ok(Sandbox { session, clock, plex })
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.session.state_mut().map(|s| &mut s.queue.queue)
    }

    pub fn enqueue(&mut self, scene_id: &str, payload: &str) -> Result<(), String> {
        let now = self.clock.now_ms();
        let queue = self.queue().ok_or("no queue")?;
        queue.enqueue(scene_id, payload, now, now).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Drain for at most `limit_ms` of simulated time; steps, policy
    /// failures and the costliest call.
    pub fn drain(&mut self, limit_ms: i64) -> Drained {
        let mode = DrainMode {
            linger_ms: 30 * 60_000,
            max_total_wait_ms: u64::MAX,
            max_run_ms: 3 * 3_600_000,
            idle_linger_ms: 0,
        };
        let mut watch = Watch { until: self.clock.now_ms() + limit_ms, failures: 0, errors: Vec::new() };
        self.session.fuel_max = 0;
        let fuel_before = self.session.fuel_total;
        let report = drain::run(&mut self.session, &self.clock, mode, 0, &mut watch);
        Drained {
            steps: report.steps_worked,
            failures: watch.failures,
            errors: watch.errors,
            fuel_max: self.session.fuel_max,
            fuel_total: self.session.fuel_total - fuel_before,
            memory_peak: self.session.memory_peak(),
        }
    }

    fn refused(&self) -> u64 {
        self.session.state().map_or(0, |s| s.plex.stats.refused)
    }

    fn result(&self, name: &'static str, d: &Drained, problems: Vec<String>, what: &str) -> VectorResult {
        let mut problems = problems;
        if d.failures > 0 {
            problems.push(format!("the policy failed {} time(s): {}", d.failures, d.errors.join("; ")));
        }
        VectorResult {
            name,
            passed: problems.is_empty(),
            detail: if problems.is_empty() { what.to_string() } else { problems.join("; ") },
            fuel_max: d.fuel_max,
            fuel_total: d.fuel_total,
            memory_peak: d.memory_peak,
            steps: d.steps,
            plex_requests: self.plex.log().len(),
        }
    }

    fn fallback_payload(&mut self, fixture: &Fixture) -> VectorResult {
        self.plex.clear();
        let Some((scene, rating_key)) = fixture.matched.first().cloned() else {
            return failed("fallback-payload", "the fixture has no matched scene");
        };
        if let Err(e) = self.enqueue(&scene, &fallback_payload("Scene.Update.Post", &["id", "title"])) {
            return failed("fallback-payload", &e);
        }
        let d = self.drain(10 * 60_000);
        let mut problems = Vec::new();
        if self.refused() > 0 {
            problems.push(format!("{} request(s) were refused by the host's allow-list", self.refused()));
        }
        let log = self.plex.log();
        let writes: Vec<&str> = log.iter().filter(|s| s.write).map(|s| s.target.as_str()).collect();
        if let Some(w) = writes.iter().find(|t| !targets(t, &rating_key)) {
            problems.push(format!("a write went to another item than {rating_key}: {w}"));
        }
        let left = self.queue().and_then(|q| q.jobs(10, i64::MAX / 2).ok()).unwrap_or_default();
        if left.iter().any(|j| j.scene_id == scene && j.attempt > 0) {
            problems.push(format!(
                "the job of scene {scene} still fails after 10 minutes: {}",
                left.iter().find(|j| j.scene_id == scene).and_then(|j| j.last_error.clone()).unwrap_or_default()
            ));
        } else if left.iter().any(|j| j.scene_id == scene) {
            problems.push(format!("the job of scene {scene} was never handled in 10 minutes"));
        }
        let dead = self.queue().and_then(|q| q.counts(0).ok()).map_or(0, |c| c.dead);
        if dead > 0 {
            problems.push("the job was dead-lettered".into());
        }
        self.result(
            "fallback-payload",
            &d,
            problems,
            &format!("the host's payload was accepted; {} write(s), all to item {rating_key}", writes.len()),
        )
    }

    fn unknown_file(&mut self, fixture: &Fixture) -> VectorResult {
        self.plex.clear();
        let Some(scene) = fixture.unmatched.first().cloned() else {
            return failed("unknown-file", "the fixture has no unmatched scene");
        };
        if let Err(e) = self.enqueue(&scene, &fallback_payload("Scene.Update.Post", &["id", "title"])) {
            return failed("unknown-file", &e);
        }
        let d = self.drain(60_000);
        let log = self.plex.log();
        let mut problems = Vec::new();
        if let Some(w) = log.iter().find(|s| s.write && !s.target.contains("/refresh")) {
            problems.push(format!("a scene whose file Plex does not have was written somewhere: {}", w.target));
        }
        // Clean up for the next vectors.
        if let Some(q) = self.queue() {
            let _ = q.forget(&scene);
        }
        self.result("unknown-file", &d, problems, "no write for a file Plex does not have")
    }

    fn backoff(&mut self, fixture: &Fixture) -> VectorResult {
        self.plex.clear();
        self.plex.set_fault(Fault::Timeout);
        for (scene, _) in &fixture.matched {
            if let Err(e) = self.enqueue(scene, &fallback_payload("Scene.Update.Post", &["id", "title"])) {
                return failed("backoff", &e);
            }
        }
        let started = self.clock.now_ms();
        let d = self.drain(10 * 60_000);
        let now = self.clock.now_ms();
        let mut problems = Vec::new();
        let requests = self.plex.log().len();
        if requests > OUTAGE_MAX_REQUESTS {
            problems.push(format!(
                "{requests} Plex requests in {} minutes of timeouts (at most {OUTAGE_MAX_REQUESTS}): the policy does not back off",
                (now - started) / 60_000
            ));
        }
        let dead = self.queue().and_then(|q| q.dead_letters_matching(&DeadFilter::all(), 10).ok()).unwrap_or_default();
        if !dead.is_empty() {
            problems.push(format!("{} job(s) were dead-lettered during a ten-minute outage", dead.len()));
        }
        let jobs = self.queue().and_then(|q| q.jobs(100, now).ok()).unwrap_or_default();
        for j in &jobs {
            if j.not_before_ms > now + 86_400_000 {
                problems.push(format!("scene {} is due more than a day ahead", j.scene_id));
            }
        }
        self.result("backoff", &d, problems, &format!("{requests} request(s) in ten minutes of timeouts, no job lost"))
    }

    fn breaker(&mut self, fixture: &Fixture) -> VectorResult {
        self.plex.clear();
        self.plex.set_fault(Fault::None);
        let d = self.drain(20 * 60_000);
        let mut problems = Vec::new();
        let left = self.queue().and_then(|q| q.jobs(100, i64::MAX / 2).ok()).unwrap_or_default();
        if !left.is_empty() {
            problems.push(format!(
                "{} of {} job(s) were not synced within 20 minutes of Plex answering again",
                left.len(),
                fixture.matched.len()
            ));
        }
        let dead = self.queue().and_then(|q| q.counts(0).ok()).map_or(0, |c| c.dead);
        if dead > 0 {
            problems.push(format!("{dead} job(s) were dead-lettered"));
        }
        self.result("breaker", &d, problems, "every job synced after the outage")
    }
}

fn failed(name: &'static str, why: &str) -> VectorResult {
    VectorResult {
        name,
        passed: false,
        detail: why.to_string(),
        fuel_max: 0,
        fuel_total: 0,
        memory_peak: 0,
        steps: 0,
        plex_requests: 0,
    }
}

/// Does a write target item `rating_key` (the edit's `id`, or its path)?
fn targets(target: &str, rating_key: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    path.starts_with(&format!("/library/metadata/{rating_key}/"))
        || query.split('&').any(|kv| kv == format!("id={rating_key}") || kv == format!("key={rating_key}"))
}

pub struct Drained {
    pub steps: u64,
    pub failures: u32,
    pub errors: Vec<String>,
    pub fuel_max: u64,
    pub fuel_total: u64,
    pub memory_peak: usize,
}

/// Ends a vector's drain at its simulated time limit and counts failures.
struct Watch {
    until: i64,
    failures: u32,
    errors: Vec<String>,
}

impl Observer for Watch {
    fn before_step(&mut self, _session: &mut PolicySession, now_ms: i64) -> Gate {
        if now_ms >= self.until { Gate::Stop(Stopped::Observer) } else { Gate::Go }
    }
    fn after_step(&mut self, _session: &PolicySession, _started_ms: i64, outcome: &super::session::Call<StepOutcome>) {
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.failures += 1;
                if self.errors.len() < 3 {
                    self.errors.push(format!("step answered an error: {e}"));
                }
            }
            Err(e) => {
                self.failures += 1;
                if self.errors.len() < 3 {
                    self.errors.push(e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_checked_whole_before_anything_else() {
        assert!(check_bytes(b"not wasm at all").unwrap_err().contains("not WebAssembly"));
        let builtin = super::super::DEFAULT_POLICY;
        check_bytes(builtin).expect("the built-in policy validates");
        let truncated = &builtin[..builtin.len() / 2];
        let e = check_bytes(truncated).unwrap_err();
        assert!(e.contains("not a valid WebAssembly component (at byte"), "{e}");
        assert!(targets("/library/sections/1/all?type=1&id=42&title.value=x", "42"));
        assert!(!targets("/library/sections/1/all?type=1&id=421", "42"));
        assert!(targets("/library/metadata/42/posters", "42"));
    }

    #[test]
    fn the_builtin_policy_passes_every_vector() {
        let rt = Runtime::load_builtin(None, super::super::Limits::default()).unwrap();
        let report = admit(&rt).unwrap();
        assert!(report.passed(), "{report:#?}");
        assert_eq!(report.vectors.len(), 4);
        let backoff = &report.vectors[2];
        assert!(backoff.plex_requests <= OUTAGE_MAX_REQUESTS, "{backoff:?}");
        assert!(report.vectors.iter().all(|v| v.fuel_max > 0 && v.memory_peak > 0), "{report:#?}");
        assert!(report.imports.iter().all(|(_, k)| *k == ImportKind::World), "{:?}", report.imports);
    }
}
