//! The raw plugin protocol: stdin shapes, one JSON object on stdout, log
//! lines on stderr, and what happens with bad input.

use crate::harness::{World, run};
use serde_json::json;

#[test]
fn malformed_stdin_is_an_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "{not json",
        "[1,2]",
        r#"{"args":"x"}"#,
        r#"{"args":{"hookContext":{"id":"4x","type":"Scene.Update.Post"}}}"#,
    ] {
        let out =
            crate::harness::run_in(bad, &["plugin", "--plugin-dir", dir.path().to_str().unwrap()], Some(dir.path()));
        assert_eq!(out.code, 1, "input {bad:?} must fail: {}", out.stdout);
        let err = out.error();
        assert!(!err.is_empty());
        assert!(out.stderr.contains("\u{1}e\u{2}"), "the error is logged at error level: {:?}", out.stderr);
    }
    assert!(!dir.path().join("data").exists(), "no queue is created for bad input");
}

#[test]
fn unknown_task_mode_is_explained() {
    let world = World::new(0);
    let out = world.task("frobnicate");
    assert_eq!(out.code, 1);
    assert!(out.error().contains("known modes: process_queue"), "{}", out.stdout);
}

#[test]
fn hook_for_another_object_type_is_ignored_quickly() {
    let world = World::new(1);
    let stdin = json!({"server_connection": world.connection(),
        "args": {"hookContext": {"id": 3, "type": "Performer.Update.Post", "input": null}}});
    let out = run(&stdin.to_string(), &[]);
    assert!(out.output().starts_with("ignored"), "{}", out.stdout);
    assert_eq!(world.stash.requests().len(), 0, "a hook does not call Stash");
}

#[test]
fn log_lines_use_stash_framing_and_stdout_is_one_object() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id"]).output();
    let out = world.task("process_queue");
    assert_eq!(out.stdout.trim().lines().count(), 1, "stdout must hold exactly one JSON object: {:?}", out.stdout);
    for line in out.stderr.lines().filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        assert!(b.len() >= 3 && b[0] == 1 && b[2] == 2 && b"tdiwep".contains(&b[1]), "unframed log line: {line:?}");
    }
    assert!(out.stderr.contains("\u{1}p\u{2}1.000"), "progress ends at 1.0 on stderr");
}

#[test]
fn a_broken_policy_in_the_plugin_folder_never_loses_a_change() {
    let world = World::new(1);
    std::fs::write(world.plugin_dir.path().join("policy.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    let (scene_id, rk) = world.scenes[0].clone();
    let hook = world.hook("Scene.Update.Post", &scene_id, &["id", "title"]);
    assert_eq!(hook.code, 0, "{}", hook.stderr);
    assert!(hook.stderr.contains("was not used"), "the broken policy is reported: {}", hook.stderr);
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 1 job"), "{}", task.stdout);
    assert!(world.plex.item(&rk).unwrap().locked_fields.contains("title"), "the built-in policy synced it");
}

#[test]
fn a_closed_stdout_does_not_panic() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash2plex"))
        .args(["plugin", "--plugin-dir", dir.path().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}
