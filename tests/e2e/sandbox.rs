//! Design invariant 5: a policy component gets no ambient authority; every
//! call has bounded CPU (fuel) and bounded memory; a trap, hang or bad return
//! in a user policy is contained, reported clearly, and the host falls back
//! without losing the change.
//!
//! The misbehaving policy is `tests/policies/misbehave` (its `misbehave`
//! setting picks the fault), built once per test binary for
//! wasm32-unknown-unknown and componentized in-process. Components that
//! import WASI or unknown interfaces are made from WIT alone with
//! `wit_component::dummy_module`. Every run is the real binary with
//! `--policy <file>`, as a user would configure it.
//!

use crate::harness::{Outcome, PLEX_TOKEN, World};
use serde_json::{Value, json};
use stash2plex::runtime::{Limits, PolicyError, Runtime};
use stash2plex::store::{JobRow, Queue, QueueCounts};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// No run here should come near this; it only keeps a host bug from hanging
/// the suite (the child is killed and the test fails).
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Stash stops reading a plugin's stderr at a line longer than this.
const STASH_MAX_LINE: usize = 64 * 1024;

include!("../../host/guest_build.rs");

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ lives in the workspace root").to_path_buf()
}

// ---------------------------------------------------------------------------
// Components

/// The misbehave policy's core module, built once per test binary the way
/// host/build.rs builds the default policy (same nested target dir, so the
/// guest dependencies are shared; host-only flags removed). Cargo releases
/// its lock before it runs tests, so this works inside `cargo test`.
pub(crate) fn misbehave_core() -> &'static [u8] {
    static CORE: OnceLock<Vec<u8>> = OnceLock::new();
    CORE.get_or_init(|| {
        let root = workspace_root();
        let target_dir = root.join("target").join("policy-build");
        let started = Instant::now();
        let artifact = build_guest_crate(&root, &target_dir, "stash2plex-misbehave", "stash2plex_misbehave")
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("[sandbox] misbehave guest build: {:.2}s", started.elapsed().as_secs_f64());
        std::fs::read(&artifact).unwrap_or_else(|e| panic!("cannot read {}: {e}", artifact.display()))
    })
}

pub(crate) fn componentize(core: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|enc| enc.encode())
        .unwrap_or_else(|e| panic!("cannot encode a component: {e:#}"))
}

/// The misbehave policy as a component (its mode comes from the settings).
pub(crate) fn misbehave_component() -> &'static [u8] {
    static COMPONENT: OnceLock<Vec<u8>> = OnceLock::new();
    COMPONENT.get_or_init(|| componentize(misbehave_core()))
}

/// A component built against `stash2plex:policy@{version}`: our world's
/// WIT with only the package version changed (its core module is a dummy).
fn component_for_version(version: &str) -> Vec<u8> {
    let wit = std::fs::read_to_string(workspace_root().join("wit/since_v0.1.0/policy.wit")).expect("read policy.wit");
    let released = "package stash2plex:policy@0.1.0;";
    assert!(wit.contains(released), "policy.wit changed; update this test");
    let mut resolve = wit_parser::Resolve::new();
    let text = wit.replace(released, &format!("package stash2plex:policy@{version};"));
    let pkg = resolve.push_str("policy.wit", &text).expect("WIT parses");
    dummy_component(&resolve, pkg, "policy-component")
}

/// Stand-ins for interfaces outside our world: WASI's environment (what a
/// `wasm32-wasip2` std pulls in) and a made-up socket API.
const FOREIGN_PACKAGES: &[(&str, &str)] = &[
    (
        "wasi-cli.wit",
        "package wasi:cli@0.2.6;
         interface environment {
             get-environment: func() -> list<tuple<string, string>>;
             get-arguments: func() -> list<string>;
         }",
    ),
    (
        "evil-net.wit",
        "package evil:net@1.0.0;
         interface sockets {
             connect: func(host: string) -> u32;
         }",
    ),
];

/// A component that implements our whole world (every import, the `policy`
/// export) and also imports `extra` (`wasi:cli/environment@0.2.6`, ...). Its
/// core module is a dummy: nothing in it may ever run.
pub(crate) fn component_importing(extra: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::new();
    resolve.push_dir(workspace_root().join("wit/since_v0.1.0")).expect("our WIT parses");
    for (name, text) in FOREIGN_PACKAGES {
        resolve.push_str(name, text).expect("foreign WIT parses");
    }
    let world_text = format!(
        "package sandbox:test;
         world wants-more {{
             include stash2plex:policy/policy-component@0.1.0;
             import {extra};
         }}"
    );
    let pkg = resolve.push_str("sandbox.wit", &world_text).expect("sandbox world parses");
    dummy_component(&resolve, pkg, "wants-more")
}

/// A component whose `policy` export has the right name but a wrong shape:
/// `step` returns a bare `u32`.
fn component_with_wrong_step_type() -> Vec<u8> {
    let wit = std::fs::read_to_string(workspace_root().join("wit/since_v0.1.0/policy.wit")).expect("read policy.wit");
    let right = "step: func() -> result<step-outcome, string>;";
    assert!(wit.contains(right), "policy.wit changed; update this test");
    let mut resolve = wit_parser::Resolve::new();
    let pkg = resolve.push_str("policy.wit", &wit.replace(right, "step: func() -> u32;")).expect("WIT parses");
    dummy_component(&resolve, pkg, "policy-component")
}

fn dummy_component(resolve: &wit_parser::Resolve, pkg: wit_parser::PackageId, world: &str) -> Vec<u8> {
    let world = resolve.select_world(&[pkg], Some(world)).expect("world exists");
    let mut module = wit_component::dummy_module(resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, resolve, world, wit_component::StringEncoding::UTF8, false)
        .expect("embed the world");
    componentize(&module)
}

// ---------------------------------------------------------------------------
// Running the binary

/// Where the user's policy lives in a test (not `policy.wasm`, which the
/// host would pick up by itself).
pub(crate) fn install_policy(world: &World, name: &str, component: &[u8]) -> PathBuf {
    let path = world.plugin_dir.path().join(name);
    std::fs::write(&path, component).expect("write the policy component");
    path
}

/// The Stash plugin settings the next task reads (and saves for hooks).
pub(crate) fn set_settings(world: &World, extra: Value) {
    let mut settings = json!({ "plex_url": world.plex.url(), "plex_token": PLEX_TOKEN });
    if let (Some(map), Value::Object(more)) = (settings.as_object_mut(), extra) {
        map.extend(more);
    }
    world.stash.set_plugin_settings("Stash2Plex", settings);
}

pub(crate) fn hook_stdin(world: &World, scene_id: &str, fields: &[&str]) -> String {
    let mut input = serde_json::Map::new();
    input.insert("id".into(), json!(scene_id));
    for f in fields {
        input.insert((*f).into(), Value::Null);
    }
    json!({
        "server_connection": world.connection(),
        "args": {"hookContext": {"id": scene_id.parse::<u64>().unwrap_or(0), "type": "Scene.Update.Post",
                  "input": input, "inputFields": fields}},
    })
    .to_string()
}

pub(crate) fn task_stdin(world: &World, mode: &str) -> String {
    json!({ "server_connection": world.connection(), "args": { "mode": mode } }).to_string()
}

/// Background drainers off (as in `harness::run`), so no hook races the
/// test's own Process Queue.
pub(crate) const NO_AUTODRAIN: &[(&str, &str)] = &[("STASH2PLEX_AUTODRAIN", "0")];

/// A `Scene.Update.Post` hook for `scene_id`, run with the policy at `policy`.
pub(crate) fn hook_with(world: &World, policy: &Path, scene_id: &str) -> (Outcome, Duration) {
    let stdin = hook_stdin(world, scene_id, &["id", "title"]);
    run_bounded(&stdin, &["--policy", policy.to_str().unwrap()], NO_AUTODRAIN)
}

/// The Process Queue task, run with the policy at `policy`.
pub(crate) fn process_queue_with(world: &World, policy: &Path) -> (Outcome, Duration) {
    run_bounded(&task_stdin(world, "process_queue"), &["--policy", policy.to_str().unwrap()], NO_AUTODRAIN)
}

/// Like `harness::run_with_env`, but a run that outlives [`RUN_LIMIT`] is
/// killed and fails the test; returns how long the process ran.
pub(crate) fn run_bounded(stdin: &str, args: &[&str], vars: &[(&str, &str)]) -> (Outcome, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stash2plex"));
    cmd.envs(vars.iter().copied());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("STASH_PLUGIN_DATA").env_remove("PLEX_URL").env_remove("PLEX_TOKEN");
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn stash2plex");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for stash2plex") {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let outcome = Outcome {
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        code: status.and_then(|s| s.code()).unwrap_or(-1),
    };
    assert!(
        status.is_some(),
        "stash2plex {args:?} was still running after {RUN_LIMIT:?} and was killed; stderr tail:\n{}",
        tail(&outcome.stderr)
    );
    (outcome, elapsed)
}

pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].iter().map(|l| format!("{}\n", clip(l, 300))).collect()
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn log_time(what: &str, took: Duration) {
    eprintln!("[sandbox] {what}: {:.2}s", took.as_secs_f64());
}

// ---------------------------------------------------------------------------
// The queue, read directly

/// Live processes (not zombies) whose command line mentions `needle`: the
/// detached background drainers of one test's data dir.
pub(crate) fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Counts with every lease and retry time considered past.
pub(crate) fn all_counts(world: &World) -> QueueCounts {
    Queue::open(&world.queue_db()).expect("queue opens").counts(i64::MAX / 2).expect("counts")
}

pub(crate) fn pending(world: &World) -> Vec<JobRow> {
    Queue::open(&world.queue_db()).expect("queue opens").jobs(100, now_ms()).expect("jobs")
}

/// The stderr line that reports the drain's fallback: the policy failed on
/// the recorded event three times, and the host recorded the change itself.
fn fallback_line(out: &Outcome) -> String {
    let needle = "The host records the change itself so it is not lost";
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no fallback report in stderr:\n{}", tail(&out.stderr)))
        .to_string();
    let retries = out.stderr.lines().filter(|l| l.contains("it is kept and tried again")).count();
    assert_eq!(retries, 2, "tried three times before the fallback:\n{}", tail(&out.stderr));
    line
}

/// A hook only records the event (it never runs a policy).
fn assert_recorded(hook: &Outcome, scene_id: &str) {
    assert_eq!(hook.code, 0, "{}", hook.stderr);
    assert_eq!(
        hook.output(),
        format!("recorded Scene.Update.Post for {scene_id}; run the Process Queue task to sync it")
    );
    assert!(!hook.stderr.contains("policy"), "a hook does not load a policy: {}", tail(&hook.stderr));
}

/// A recorded event the policy failed on three times ended as a job with
/// the host's fallback payload; the three failures put the policy in
/// quarantine, and the built-in policy that took over in the same drain
/// synced the job.
fn assert_fallback_job_synced_by_the_builtin(world: &World, task: &Outcome) {
    assert!(task.output().contains("Processed 1 job(s)"), "{}", task.stdout);
    assert!(task.output().contains("Policy: stash2plex-default"), "{}", task.stdout);
    assert!(task.stderr.contains("put in quarantine"), "{}", tail(&task.stderr));
    assert!(task.stderr.contains("Switched policy: stash2plex-misbehave"), "{}", tail(&task.stderr));
    assert_eq!(all_counts(world), QueueCounts::default(), "the queue is empty afterwards");
    assert_eq!(Queue::open(&world.queue_db()).unwrap().count_events().unwrap(), 0, "no event is left");
    let (_, rk) = &world.scenes[0];
    assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"), "the built-in policy synced it");
}

/// The built-in policy (no `--policy`) syncs the waiting change of scene
/// `index` to Plex, and the queue ends empty.
fn assert_builtin_syncs(world: &World, index: usize, jobs: usize) {
    let (_, rk) = &world.scenes[index];
    let task = world.task("process_queue");
    assert!(task.output().contains(&format!("Processed {jobs} job")), "{}\n{}", task.stdout, tail(&task.stderr));
    assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"), "the built-in policy synced it");
    assert_eq!(all_counts(world), QueueCounts::default(), "the queue is empty afterwards");
}

/// The misbehave policy's fault for the next drain (read from Stash's
/// plugin settings, as every setting is).
fn misbehave_mode(world: &World, mode: &str) {
    set_settings(world, json!({ "misbehave": mode }));
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn the_misbehave_policy_in_none_mode_runs_end_to_end() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "none");
    let (scene_id, _) = world.scenes[0].clone();

    let (hook, took) = hook_with(&world, &policy, &scene_id);
    log_time("none: hook", took);
    assert_recorded(&hook, &scene_id);

    let (task, took) = process_queue_with(&world, &policy);
    log_time("none: process queue", took);
    // The user's policy read the event and worked the job: the built-in
    // would have sent Plex requests.
    assert!(task.output().contains("Processed 1 job(s) with 0 Plex request(s)"), "{}", task.stdout);
    assert!(task.output().contains("the queue is empty"), "{}", task.stdout);
    assert_eq!(all_counts(&world), QueueCounts::default());
    assert!(world.plex.requests().is_empty(), "the misbehave policy never talks to Plex");
}

#[test]
fn a_policy_importing_anything_outside_the_world_is_refused_and_the_builtin_takes_over() {
    let world = World::new(2);
    let cases = [("wasi:cli/environment@0.2.6", "wasi.wasm"), ("evil:net/sockets@1.0.0", "evil.wasm")];
    for (i, (import, file)) in cases.iter().enumerate() {
        let component = component_importing(import);
        // In-process: the host's linker holds the world and WASI (granting
        // nothing), so anything else is refused before anything in it runs.
        // The WASI one links, and is refused by admission: its dummy code
        // traps in `info`.
        match (Runtime::load(&component, None, Limits::default()), import.starts_with("wasi:")) {
            (Err(PolicyError::Contract(msg)), false) => {
                assert!(msg.contains(import), "the refusal names {import}: {msg}")
            }
            (Ok(rt), true) => {
                let report = stash2plex::runtime::admission::admit(&rt).expect("admission runs");
                assert!(!report.passed() && report.failure_sentence().contains("trapped"), "{report:#?}");
            }
            (Err(other), _) => panic!("refused for the wrong reason: {other}"),
            (Ok(_), false) => panic!("a component importing {import} was accepted"),
        }

        let policy = install_policy(&world, file, &component);
        let (scene_id, rk) = world.scenes[i].clone();
        let (hook, took) = hook_with(&world, &policy, &scene_id);
        log_time(&format!("foreign import {import}: hook"), took);
        assert_recorded(&hook, &scene_id);

        let (task, took) = process_queue_with(&world, &policy);
        log_time(&format!("foreign import {import}: process queue"), took);
        let report = task
            .stderr
            .lines()
            .find(|l| l.contains("was not used"))
            .unwrap_or_else(|| panic!("the refusal is reported:\n{}", tail(&task.stderr)));
        assert!(report.starts_with("\u{1}e\u{2}"), "reported as an error: {report:?}");
        if !import.starts_with("wasi:") {
            assert!(report.contains(import), "the report names the import {import}: {report}");
        }
        assert!(report.contains("Running the built-in default policy instead"), "{report}");
        assert!(task.output().contains("Processed 1 job"), "the built-in policy drained: {}", task.stdout);
        assert!(world.plex.item(&rk).unwrap().locked_fields.contains("title"), "the built-in policy synced {rk}");
    }
    assert_eq!(all_counts(&world), QueueCounts::default());
}

#[test]
fn an_endless_loop_in_on_event_is_stopped_by_fuel_and_the_change_is_recorded() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "loop-on-event");
    let (scene_id, _) = world.scenes[0].clone();

    let (hook, took) = hook_with(&world, &policy, &scene_id);
    log_time("loop-on-event: hook", took);
    assert_recorded(&hook, &scene_id);
    let (task, took) = process_queue_with(&world, &policy);
    log_time("loop-on-event: process queue (3 fuel-outs)", took);
    let line = fallback_line(&task);
    assert!(line.contains("the policy used up its CPU budget"), "{line}");
    assert!(task.stderr.contains(&format!("Recorded a job for {scene_id} for Scene.Update.Post without the policy")));
    assert_fallback_job_synced_by_the_builtin(&world, &task);
}

#[test]
fn a_memory_blow_up_in_on_event_hits_the_limit_and_the_change_is_recorded() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "alloc-on-event");
    let (scene_id, _) = world.scenes[0].clone();

    let (hook, took) = hook_with(&world, &policy, &scene_id);
    log_time("alloc-on-event: hook", took);
    assert_recorded(&hook, &scene_id);
    let (task, _) = process_queue_with(&world, &policy);
    let line = fallback_line(&task);
    let limit = format!("the policy exceeded its memory limit ({} MiB)", Limits::default().memory_bytes >> 20);
    assert!(line.contains(&limit), "{line}");
    assert!(!task.stderr.contains("nobody stopped me"), "the 1 GiB was never handed out");
    assert_fallback_job_synced_by_the_builtin(&world, &task);
}

#[test]
fn a_panic_in_on_event_is_reported_with_its_message_and_the_change_is_recorded() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "panic-on-event");
    let (scene_id, _) = world.scenes[0].clone();

    let (hook, took) = hook_with(&world, &policy, &scene_id);
    log_time("panic-on-event: hook", took);
    assert_recorded(&hook, &scene_id);
    let (task, _) = process_queue_with(&world, &policy);
    let line = fallback_line(&task);
    assert!(line.contains("the policy trapped"), "{line}");
    assert!(line.contains(&format!("misbehave: deliberate panic in on-event for scene {scene_id}")), "{line}");
    assert_fallback_job_synced_by_the_builtin(&world, &task);
}

#[test]
fn a_panic_in_step_while_holding_a_job_keeps_the_job() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    let lease_ms = 1_500;
    set_settings(&world, json!({ "misbehave": "panic-on-step", "misbehave_lease_ms": lease_ms }));

    let (task, took) = process_queue_with(&world, &policy);
    log_time("panic-on-step: process queue", took);
    let summary = task.output();
    let failures: Vec<&str> = task
        .stderr
        .lines()
        .filter(|l| l.contains("The policy failed and was restarted: stash2plex-misbehave 0.1.0 (sha256 "))
        .collect();
    // Given up on after 3 failures in 10 minutes: quarantine, and the
    // built-in policy takes over (the job is due again a second later).
    assert_eq!(failures.len(), 3, "{}", tail(&task.stderr));
    assert!(failures[0].contains("the policy trapped"), "{}", failures[0]);
    assert!(failures[0].contains("deliberate panic in step holding job"), "{}", failures[0]);
    assert!(task.stderr.contains("put in quarantine"), "{}", tail(&task.stderr));
    assert!(task.stderr.contains("Switched policy: stash2plex-misbehave"), "{}", tail(&task.stderr));

    // The host gave the held job back after each failure: the attempt does
    // not count (the policy failed, not the job), nothing else happened to
    // it (no error recorded, not dead-lettered), and the built-in policy
    // that took over synced it in the same drain.
    assert!(task.stderr.contains("Gave back 1 job(s) the policy held"), "{}", tail(&task.stderr));
    assert!(summary.contains("Processed 1 job(s)") && summary.contains("the queue is empty"), "{summary}");
    assert_eq!(all_counts(&world), QueueCounts::default());
    let handled = Queue::open(&world.queue_db()).unwrap().handled_for(Some(&scene_id), 100).unwrap();
    let outcomes: Vec<&str> = handled.iter().map(|h| h.outcome.as_str()).collect();
    // Given back once held (later steps panic before claiming, as the job
    // waits a second), then completed once.
    let (last, before) = outcomes.split_last().expect("outcomes");
    assert_eq!(*last, "complete", "{handled:#?}");
    assert!(!before.is_empty() && before.iter().all(|o| *o == "given-back"), "{handled:#?}");
    let builtin = stash2plex::runtime::Identity::sha256_of(stash2plex::runtime::DEFAULT_POLICY);
    let (done, given) = handled.split_last().expect("outcomes");
    assert_eq!(done.policy_sha256, builtin, "completed by the built-in policy");
    assert!(given.iter().all(|h| h.policy_sha256 != builtin), "given back by the misbehaving one");
    let (_, rk) = &world.scenes[0];
    assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"), "the built-in policy synced it");
}

#[test]
fn an_endless_loop_in_step_is_stopped_each_time_and_the_drain_ends() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    set_settings(&world, json!({ "misbehave": "loop-on-step" }));

    let (task, took) = process_queue_with(&world, &policy);
    log_time("loop-on-step: process queue (3 fuel-outs, then the built-in)", took);
    let summary = task.output();
    let fuel_outs = task
        .stderr
        .lines()
        .filter(|l| l.contains("The policy failed and was restarted") && l.contains("CPU budget"))
        .count();
    assert_eq!(fuel_outs, 3, "{}", tail(&task.stderr));
    // The loop never claimed the job, so the built-in policy that took over
    // synced it in the same drain.
    assert!(summary.contains("Processed 1 job(s)"), "{summary}");
    assert!(summary.contains("the queue is empty"), "{summary}");
    assert!(world.plex.item(&world.scenes[0].1).unwrap().locked_fields.contains("title"));
    assert_eq!(all_counts(&world), QueueCounts::default());
}

#[test]
fn a_huge_log_line_is_capped_and_cannot_forge_log_frames() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "huge-log");
    let (scene_id, _) = world.scenes[0].clone();

    let (hook, took) = hook_with(&world, &policy, &scene_id);
    log_time("huge-log: hook", took);
    assert_recorded(&hook, &scene_id);
    // The policy logs the huge line when it reads the event.
    let (hook, _) = process_queue_with(&world, &policy);
    assert!(hook.output().contains("Processed 1 job(s)"), "the policy went on: {}", hook.stdout);
    let longest = hook.stderr.split('\n').map(str::len).max().unwrap_or(0);
    assert!(longest <= STASH_MAX_LINE, "a stderr line of {longest} bytes would stop Stash's log reader");
    let huge = hook.stderr.lines().find(|l| l.contains("misbehave: huge line")).expect("the line is logged");
    // The prefix is what the host knows (the component's hash), not the
    // name the policy claims; the forged frame shows as text.
    assert!(huge.starts_with("\u{1}i\u{2}[policy "), "{}", clip(huge, 80));
    assert!(!huge.contains("[stash2plex-misbehave]"), "{}", clip(huge, 80));
    assert!(huge.contains("\\x01e\\x02misbehave forged"), "{}", clip(huge, 120));
    assert!(huge.ends_with("(truncated)"), "and marked as cut");
    assert!(
        !hook.stderr.lines().any(|l| l.starts_with("\u{1}e\u{2}misbehave forged")),
        "an embedded newline must not start a forged log record"
    );
}

/// A `step` that answers `wait-ms(0)` forever: every call is cheap and
/// returns, so fuel never runs out and the failure counter never moves. What
/// bounds it is drain.rs: waits are at least `MIN_WAIT_MS` (10 ms) and the
/// drain stops after `MAX_WAITS_WITHOUT_WORK` (1000) waits in a row without a
/// `worked`, i.e. after about 10 s.
#[test]
fn a_policy_that_always_says_wait_does_not_keep_process_queue_alive() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    set_settings(&world, json!({ "misbehave": "spin-step" }));

    let (task, took) = process_queue_with(&world, &policy);
    log_time("spin-step: process queue", took);
    assert_eq!(task.code, 0, "{}", tail(&task.stderr));
    let summary = task.output();
    assert!(summary.contains("Processed 0 job(s)"), "{summary}");
    assert!(summary.contains("asked to wait 1000 times in a row without doing any work"), "{summary}");
    assert!(took >= Duration::from_secs(9), "wait-ms(0) is not a hot loop: 1000 waits of >= 10 ms took {took:?}");
    let jobs = pending(&world);
    assert_eq!((jobs.len(), jobs[0].attempt), (1, 0), "the job is kept, untouched: {jobs:?}");
    assert_builtin_syncs(&world, 0, 1);
}

/// The drainer a hook starts in the background (auto-drain on) runs the same
/// user policy. With a `step` that always runs out of fuel and a job that
/// stays due, every round ends after 5 failures (~4 s), and the drainer must
/// then give up, not start another round.
#[test]
fn a_background_drainer_gives_up_on_a_failing_policy_in_bounded_time() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", misbehave_component());
    misbehave_mode(&world, "loop-on-step");
    let (scene_id, _) = world.scenes[0].clone();

    let stdin = hook_stdin(&world, &scene_id, &["id", "title"]);
    let (hook, _) = run_bounded(&stdin, &["--policy", policy.to_str().unwrap()], &[("STASH2PLEX_AUTODRAIN", "1")]);
    assert_eq!(hook.output(), format!("recorded Scene.Update.Post for {scene_id}"), "{}", hook.stderr);
    let marker = world.data_dir().to_string_lossy().into_owned();
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    let mut drainers = processes_mentioning(&marker);
    assert!(!drainers.is_empty(), "the hook started a background drainer");
    while !drainers.is_empty() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        drainers = processes_mentioning(&marker);
    }
    let took = started.elapsed();
    for pid in &drainers {
        // Still running at the limit: stop it (by id) before failing.
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let log = std::fs::read_to_string(world.data_dir().join("drainer.log")).unwrap_or_default();
    let rounds = log.lines().filter(|l| l.contains("Processing the queue:")).count();
    log_time(&format!("loop-on-step: background drainer ({rounds} rounds)"), took);
    assert!(drainers.is_empty(), "the background drainer was still running after {limit:?} ({rounds} rounds so far)");
    assert!(log.contains("the policy used up its CPU budget"), "the failures are in the drainer's log");
    assert!(log.contains("put in quarantine"), "the failing policy was given up on");
    assert!(pending(&world).is_empty(), "the built-in policy that took over synced the job");
    assert!(world.plex.item(&world.scenes[0].1).unwrap().locked_fields.contains("title"));
}

#[test]
fn a_policy_for_a_world_version_this_host_does_not_run_is_refused_by_name_and_loses_nothing() {
    let refusal = "this policy targets stash2plex:policy@0.9.0, this host supports 0.1–0.2";
    match Runtime::load(&component_for_version("0.9.0"), None, Limits::default()) {
        Err(PolicyError::Contract(msg)) => assert!(msg.contains(refusal), "{msg}"),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a policy for 0.9.0 was accepted"),
    }
    // A patch release of the world this host runs is the same contract.
    let patched = Runtime::load(&component_for_version("0.1.7"), None, Limits::default());
    assert!(patched.is_ok(), "0.1.7 is compatible with 0.1.0: {:?}", patched.err());

    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", &component_for_version("0.9.0"));
    let (scene_id, _) = world.scenes[0].clone();
    let (hook, _) = hook_with(&world, &policy, &scene_id);
    assert_recorded(&hook, &scene_id);
    let (task, _) = process_queue_with(&world, &policy);
    assert!(task.stderr.contains(refusal), "the refusal names the version: {}", tail(&task.stderr));
    assert!(task.output().contains("Processed 1 job"), "the built-in policy drained: {}", task.stdout);
    assert!(world.plex.item(&world.scenes[0].1).unwrap().locked_fields.contains("title"));
}

/// `step` returns `u32` instead of `result<step-outcome, string>`. Import and
/// export *names* match, so `Runtime::load` accepts it; the types are only
/// checked when an instance is made.
#[test]
fn a_policy_export_of_the_wrong_shape_is_refused_at_load_and_the_builtin_drains() {
    let world = World::new(1);
    let policy = install_policy(&world, "user-policy.wasm", &component_with_wrong_step_type());
    let (scene_id, rk) = world.scenes[0].clone();
    let (hook, _) = hook_with(&world, &policy, &scene_id);
    assert_recorded(&hook, &scene_id);
    let (task, _) = process_queue_with(&world, &policy);
    assert!(task.stderr.contains("was not used"), "{}", tail(&task.stderr));
    assert!(task.output().contains("Processed 1 job"), "the built-in policy drained: {}", task.stdout);
    assert!(world.plex.item(&rk).unwrap().locked_fields.contains("title"));
}
