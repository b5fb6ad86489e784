//! Least authority: a policy can make the host do what syncing needs and
//! nothing else, and the host keeps its secrets, files and resources to
//! itself. The hostile policy is the misbehave policy's `attack` task and
//! its `hollow-step` mode (`tests/policies/misbehave`), run by the real
//! binary with `--policy`, as a user would configure a policy from
//! someone else.

use crate::harness::{COOKIE, Outcome, PLEX_TOKEN, World};
use crate::sandbox::{
    NO_AUTODRAIN, all_counts, componentize, install_policy, misbehave_core, pending, process_queue_with, run_bounded,
    set_settings, tail,
};
use serde_json::json;
use stash2plex::store::Queue;
use stash2plex_testkit::StashAuth;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const API_KEY: &str = "stash-api-key-0123456789abcdef";

/// A world whose Stash has a password (cookie) and an API key, with the
/// misbehave policy installed and its settings saved.
fn hostile_world() -> (World, PathBuf) {
    let world = World::with_auth(1, StashAuth::Session { cookie_value: COOKIE.into(), api_key: Some(API_KEY.into()) });
    let policy = install_policy(&world, "someone-elses-policy.wasm", crate::sandbox::misbehave_component());
    set_settings(&world, json!({}));
    (world, policy)
}

fn attack(world: &World, policy: &Path, which: &str) -> Outcome {
    let stdin = json!({ "server_connection": world.connection(), "args": { "mode": "attack", "which": which } });
    let (out, _) = run_bounded(&stdin.to_string(), &["--policy", policy.to_str().unwrap()], NO_AUTODRAIN);
    out
}

/// Every secret of the world.
fn secrets(world: &World) -> Vec<String> {
    let _ = world;
    vec![PLEX_TOKEN.to_string(), COOKIE.to_string(), API_KEY.to_string()]
}

/// No secret in `text`, in any of the forms it could leak in.
fn assert_no_secret(world: &World, what: &str, text: &str) {
    for s in secrets(world) {
        let encoded: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
        assert!(!text.contains(&s) && !text.contains(&encoded), "{what} holds a secret");
    }
}

/// No secret in any file of the data directory.
fn assert_no_secret_in_data_dir(world: &World) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut files = Vec::new();
    walk(&world.data_dir(), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert_no_secret(world, &f.display().to_string(), &text);
    }
}

#[test]
fn every_plex_request_syncing_does_not_need_is_refused_before_it_is_sent() {
    let (world, policy) = hostile_world();
    let cases = [
        ("mint-token", "GET /security/token is not a request syncing needs"),
        ("prefs", "PUT /:/prefs is not a request syncing needs"),
        ("poster-url", "POST /library/metadata/{id}/posters may not carry the query parameter \\\"url\\\""),
        ("token-in-query", "may not carry the query parameter \\\"X-Plex-Token\\\""),
        ("absolute-url", "no rule allows the path http://evil.example/x"),
        ("edit-thumb", "may not carry the query parameter \\\"thumb.value\\\""),
        ("stash-settings-as-image", "takes no body; a Stash image is only the body of an image upload"),
    ];
    for (which, rule) in cases {
        let out = attack(&world, &policy, which);
        let answer = out.output();
        assert!(
            answer.starts_with(&format!("attack {which}: refused: TransportError::InvalidRequest(")),
            "{which}: {answer}"
        );
        assert!(answer.contains("refused by the host") && answer.contains(rule), "{which}: {answer}");
        let logged = out.stderr.lines().find(|l| l.contains("Refused a request of the policy")).unwrap_or("");
        assert!(
            logged.starts_with("\u{1}w\u{2}") && logged.contains(rule.replace("\\\"", "\"").as_str()),
            "{which}: {}",
            tail(&out.stderr)
        );
        assert_no_secret(&world, "stdout", &out.stdout);
        assert_no_secret(&world, "stderr", &out.stderr);
    }
    let reached: Vec<String> = world.plex.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(reached.is_empty(), "nothing reached Plex: {reached:?}");
    assert!(world.stash.requests().iter().all(|r| r.path == "/graphql"), "no Stash image was fetched");
    assert_no_secret_in_data_dir(&world);
}

#[test]
fn a_policy_cannot_read_another_policys_state_even_under_its_name() {
    let (world, _) = hostile_world();
    // The built-in policy saves its reliability state.
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    assert!(world.task("process_queue").output().contains("Processed 1 job"));
    let q = Queue::open(&world.queue_db()).unwrap();
    let mut builtin = Queue::open(&world.queue_db()).unwrap();
    builtin.set_namespace("stash2plex-default");
    assert!(builtin.state_get("resilience/v1").unwrap().is_some(), "the built-in policy has state");
    drop(q);

    // A policy that claims to be the built-in one.
    let (from, to) =
        (b"misbehave-name=stash2plex-misbehave".as_slice(), b"misbehave-name=stash2plex-default\0\0".as_slice());
    let mut core = misbehave_core().to_vec();
    let at: Vec<usize> = core.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "the name slot occurs exactly once");
    core[at[0]..at[0] + to.len()].copy_from_slice(to);
    let impostor = install_policy(&world, "impostor.wasm", &componentize(&core));
    let out = attack(&world, &impostor, "snoop-state");
    // The task's answer, then the lines saying which policy ran it.
    assert_eq!(out.output().lines().next(), Some("attack snoop-state: Ok(None)"), "{}", tail(&out.stderr));

    // Its lines are labelled by its hash, not by the name it claims.
    let out = attack(&world, &impostor, "log-flood");
    let first = out.stderr.lines().find(|l| l.contains("misbehave flood line 0")).expect("logged");
    assert!(first.starts_with("\u{1}i\u{2}[policy ") && !first.contains("[stash2plex-default]"), "{first}");
}

#[test]
fn a_policy_cannot_fill_the_queue_the_state_or_the_log() {
    let (world, policy) = hostile_world();
    let out = attack(&world, &policy, "state-flood");
    let answer = out.output();
    assert!(
        answer.contains("one MiB value: Err(QueueError::Refused(\"the state value of \\\"big\\\" is over 256 KiB\"))"),
        "{answer}"
    );
    assert!(
        answer.contains("2000 keys at once: Err(QueueError::Refused(\"2000 state writes in one call; at most 64\"))"),
        "{answer}"
    );

    let out = attack(&world, &policy, "payload-flood");
    let answer = out.output();
    assert!(
        answer.contains("1 MiB payload: Err(QueueError::Refused(\"a payload of 1024 KiB is over 64 KiB\"))"),
        "{answer}"
    );
    assert!(answer.contains("due at the end of time: Ok(EnqueueOutcome::Created)"), "{answer}");
    assert!(
        answer.contains("bad scene id: Err(QueueError::Refused(\"\\\"../../etc/passwd\\\" is not a Stash scene id"),
        "{answer}"
    );
    let jobs = pending(&world);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let month_ahead = crate::sandbox::now_ms() + 30 * 86_400_000 + 60_000;
    assert!(jobs[0].not_before_ms <= month_ahead, "a job is due at most 30 days ahead: {}", jobs[0].not_before_ms);

    let out = attack(&world, &policy, "enqueue-flood");
    assert_eq!(out.output().lines().next(), Some("attack enqueue-flood: 1000 of 2000 enqueues refused"));
    assert_eq!(all_counts(&world).ready, 1001, "1000 accepted in one call (and the earlier one)");
    let db = std::fs::metadata(world.queue_db()).unwrap().len();
    assert!(db < 2 << 20, "the queue database stays small: {db} bytes");

    let out = attack(&world, &policy, "log-flood");
    assert_eq!(out.output().lines().next(), Some("attack log-flood: logged 100000 lines"));
    let flood = out.stderr.lines().filter(|l| l.contains("misbehave flood line")).count();
    assert_eq!(flood, 1000, "at most 1000 lines per call reach the log");
    assert!(out.stderr.contains("99000 more log line(s) of this call were not shown"), "{}", tail(&out.stderr));
}

/// `worked` without touching the queue or Plex is no work: the drain ends
/// as if the policy had only waited (about 10 s), and says so.
#[test]
fn a_step_that_always_says_worked_without_working_does_not_keep_a_drain_alive() {
    let (world, policy) = hostile_world();
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    set_settings(&world, json!({ "misbehave": "hollow-step" }));
    let started = Instant::now();
    let (task, _) = process_queue_with(&world, &policy);
    let summary = task.output();
    assert!(summary.contains("asked to wait 1000 times in a row without doing any work"), "{summary}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    assert!(task.stderr.lines().count() < 100, "the log is not flooded: {} lines", task.stderr.lines().count());
    assert_eq!(all_counts(&world).ready, 1, "the change is kept");
}

#[test]
fn proxy_variables_are_not_obeyed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let world = World::with_auth(2, StashAuth::Session { cookie_value: COOKIE.into(), api_key: Some(API_KEY.into()) });
    for (id, _) in world.scenes.clone() {
        world.hook("Scene.Update.Post", &id, &["id", "title"]).output();
    }
    let vars = [
        ("STASH2PLEX_AUTODRAIN", "0"),
        ("HTTP_PROXY", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("all_proxy", proxy.as_str()),
    ];
    let stdin = json!({ "server_connection": world.connection(), "args": { "mode": "process_queue" } });
    let (out, _) = run_bounded(&stdin.to_string(), &[], &vars);
    assert!(out.output().contains("Processed 2 job"), "synced directly: {}", tail(&out.stderr));
    assert!(listener.accept().is_err(), "the \"proxy\" received a connection");
}

#[test]
fn a_password_in_plex_url_is_refused_and_never_written_anywhere() {
    let world = World::new(1);
    world.stash.set_plugin_settings(
        "Stash2Plex",
        json!({ "plex_url": format!("http://admin:hunter2-pw@127.0.0.1:{}", world.plex.port()), "plex_token": PLEX_TOKEN }),
    );
    let out = world.task("process_queue");
    let err = out.error();
    assert!(err.contains("plex_url must not contain a user name or password"), "{err}");
    for text in [out.stdout.as_str(), out.stderr.as_str()] {
        assert!(!text.contains("hunter2-pw"), "the password is repeated: {text}");
    }
    let mut files = Vec::new();
    for e in std::fs::read_dir(world.data_dir()).into_iter().flatten().flatten() {
        files.push(e.path());
    }
    for f in files.iter().filter(|f| f.is_file()) {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        assert!(!text.contains("hunter2"), "{} holds the password", f.display());
    }
}

#[test]
fn a_swapped_compiled_cache_file_is_refused_and_recompiled() {
    let (world, policy) = hostile_world();
    let cache = world.data_dir().join("cache");
    let artifacts = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        v.sort();
        v
    };
    // Hooks never load a policy; a task that asks the policy does.
    assert!(world.task("queue_status").output().contains("Policy: stash2plex-default"));
    let builtin = artifacts();
    assert_eq!(builtin.len(), 1, "the built-in policy was compiled and cached");
    let out = attack(&world, &policy, "snoop-state");
    assert!(out.output().starts_with("attack snoop-state"));
    let other: Vec<PathBuf> = artifacts().into_iter().filter(|p| !builtin.contains(p)).collect();
    assert_eq!(other.len(), 1, "the other policy has its own artifact");

    // Put the other policy's compiled code where the built-in one's is.
    std::fs::copy(&other[0], &builtin[0]).unwrap();
    let out = world.task("queue_status");
    assert!(out.stderr.contains("failed its integrity check"), "{}", tail(&out.stderr));
    assert!(out.output().contains("Policy: stash2plex-default"), "the real built-in policy ran: {}", out.stdout);
    // It was compiled again and cached; the next run loads it quietly.
    let out = world.task("queue_status");
    assert!(!out.stderr.contains("integrity"), "{}", tail(&out.stderr));
    assert!(out.stderr.contains("loaded from the compiled cache"), "{}", tail(&out.stderr));
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    assert!(world.task("process_queue").output().contains("Processed 1 job"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&world.data_dir()), 0o700);
    let mut seen = 0;
    for dir in [world.data_dir(), world.data_dir().join("cache")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "{}", p.display());
            seen += 1;
        }
    }
    assert!(seen >= 4, "queue, lock, cache key and artifact at least");
}
