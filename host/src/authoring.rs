//! The policy author's kit: `stash2plex policy check FILE` (the admission
//! report) and `stash2plex policy run FILE --scene scene.json` (the Plex
//! requests the policy would make for a scene, against a recorded Plex;
//! nothing is written anywhere). See docs/policy-authors.md.

use crate::runtime::admission::{self, ImportKind, Report, Sandbox};
use crate::runtime::fixture::{Fixture, scene_from_value};
use crate::runtime::source::read_capped;
use crate::runtime::{Limits, MAX_COMPONENT_BYTES, Runtime};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn load(file: &Path) -> Result<(Vec<u8>, Runtime, f64), String> {
    let bytes = read_capped(file).map_err(|e| format!("{}: {e}", file.display()))?;
    admission::check_bytes(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let started = Instant::now();
    let runtime = Runtime::load(&bytes, None, Limits::default()).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((bytes, runtime, started.elapsed().as_secs_f64() * 1000.0))
}

/// The admission report for `file`; `Ok((text, passed))`.
pub fn check(file: &Path) -> Result<(String, bool), String> {
    let (bytes, runtime, load_ms) = load(file)?;
    let started = Instant::now();
    let report = admission::admit(&runtime)?;
    let admit_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok((describe(&report, bytes.len(), load_ms, admit_ms), report.passed()))
}

fn describe(report: &Report, size: usize, load_ms: f64, admit_ms: f64) -> String {
    let limits = Limits::default();
    let mut out = String::new();
    let _ = writeln!(out, "policy:  {} {} for stash2plex:policy@{}", report.name, report.version, report.world);
    let _ = writeln!(out, "sha256:  {}", report.sha256);
    let _ = writeln!(out, "size:    {} (limit {})", mib(size), mib(MAX_COMPONENT_BYTES));
    let _ = writeln!(out, "load:    compiled in {load_ms:.0} ms; vectors ran in {admit_ms:.0} ms");
    let _ = writeln!(out, "imports:");
    for (name, kind) in &report.imports {
        let what = match kind {
            ImportKind::World => "the world",
            ImportKind::Wasi => "WASI: linked, grants nothing",
        };
        let _ = writeln!(out, "  {name:<44} {what}");
    }
    let _ = writeln!(out, "exports: {}", report.exports.join(", "));
    if let Some(p) = &report.problem {
        let _ = writeln!(out, "FAIL     {p}");
    }
    let _ = writeln!(
        out,
        "vectors (limits per call: {:.0} M fuel, {} memory):",
        limits.fuel_per_call as f64 / 1e6,
        mib(limits.memory_bytes)
    );
    for v in &report.vectors {
        let _ = writeln!(
            out,
            "  {} {:<17} fuel max {:>9.2} M   memory {:>9}   steps {:>4}   Plex requests {:>4}   {}",
            if v.passed { "pass" } else { "FAIL" },
            v.name,
            v.fuel_max as f64 / 1e6,
            mib(v.memory_peak),
            v.steps,
            v.plex_requests,
            v.detail
        );
    }
    let _ = writeln!(out, "{}", if report.passed() { "ADMITTED" } else { "REFUSED" });
    out
}

/// What `file` does for the scene in `scene_json` (Stash's `findScene`
/// JSON, or the contract's scene record) against `fixture` (the built-in
/// recording when `None`), with `settings` (the policy's own keys).
pub fn run(
    file: &Path,
    scene_json: &str,
    fixture: Option<&str>,
    settings: &Map<String, Value>,
) -> Result<String, String> {
    let (_, runtime, _) = load(file)?;
    let mut fixture = match fixture {
        Some(text) => Fixture::parse(text)?,
        None => Fixture::builtin(),
    };
    let value: Value = serde_json::from_str(scene_json).map_err(|e| format!("the scene is not JSON: {e}"))?;
    let scene = scene_from_value(&value).map_err(|e| format!("the scene: {e}"))?;
    let as_record = serde_json::to_value(&scene).map_err(|e| e.to_string())?;
    fixture.scenes.retain(|s| scene_from_value(s).map(|s| s.id != scene.id).unwrap_or(true));
    fixture.scenes.push(as_record);
    let mut sandbox = Sandbox::with_settings(runtime, &fixture, settings)?;
    sandbox.enqueue(&scene.id, &admission::fallback_payload("Scene.Update.Post", &["id", "title"]))?;
    let drained = sandbox.drain(10 * 60_000);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy {} {}: scene {} ({}), against {} (nothing is sent to a real Plex)",
        sandbox.session.info.name,
        sandbox.session.info.version,
        scene.id,
        scene.files.first().map_or("no file", |f| f.path.as_str()),
        if fixture.description.is_empty() { "the recorded Plex" } else { &fixture.description }
    );
    for seen in sandbox.plex.log() {
        let answer = match (seen.status, seen.write) {
            (_, true) => "not sent (a write)".to_string(),
            (Some(s), _) if seen.unrecorded => format!("{s} (not in the recording)"),
            (Some(s), _) => s.to_string(),
            (None, _) => "no answer".to_string(),
        };
        let _ = writeln!(out, "  {} {}  → {answer}", seen.method, seen.target);
    }
    let state = sandbox.session.state();
    let jobs = state.and_then(|s| s.queue.queue.jobs(10, i64::MAX / 2).ok()).unwrap_or_default();
    let dead = state
        .and_then(|s| s.queue.queue.dead_letters_matching(&crate::store::DeadFilter::all(), 10).ok())
        .unwrap_or_default();
    let outcome = match (jobs.iter().find(|j| j.scene_id == scene.id), dead.first()) {
        (_, Some(d)) => format!("dead-lettered [{}]: {}", d.error_class, d.message),
        (Some(j), _) => {
            format!("still queued (attempt {}, last error: {})", j.attempt, j.last_error.as_deref().unwrap_or("none"))
        }
        (None, None) => "completed".to_string(),
    };
    let _ = writeln!(
        out,
        "job: {outcome}; {} step(s), costliest call {:.2} M fuel, memory {}",
        drained.steps,
        drained.fuel_max as f64 / 1e6,
        mib(drained.memory_peak)
    );
    for e in &drained.errors {
        let _ = writeln!(out, "policy failure: {e}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_run_on_the_builtin_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.wasm");
        std::fs::write(&file, crate::runtime::DEFAULT_POLICY).unwrap();
        let (text, passed) = check(&file).unwrap();
        assert!(passed, "{text}");
        for needle in
            ["policy:  stash2plex-default", "stash2plex:policy/queue@0.1.0", "pass fallback-payload", "ADMITTED"]
        {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let fixture = Fixture::builtin();
        let scene = fixture.scenes[0].to_string();
        let text = run(&file, &scene, None, &Map::new()).unwrap();
        assert!(text.contains("GET /library/sections  → 200"), "{text}");
        assert!(text.contains("PUT /library/sections/"), "{text}");
        assert!(text.contains("not sent (a write)"), "{text}");
        assert!(text.contains("job: completed"), "{text}");
        std::fs::write(&file, b"\0asm\x01\0\0\0garbage").unwrap();
        assert!(check(&file).unwrap_err().contains("not a valid WebAssembly component"));
    }
}
