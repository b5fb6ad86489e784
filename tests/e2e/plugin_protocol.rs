//! The raw plugin protocol: stdin shapes, one JSON object on stdout, log
//! lines on stderr, and what happens with bad input.

use crate::harness::{World, run};
use serde_json::json;
use stash2plex::runtime::wit::policy::SettingKind;
use stash2plex::runtime::{DEFAULT_POLICY, Limits, Runtime};

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
        assert!(err.contains("stdin"), "the error says what was wrong with the input: {err}");
        assert!(out.stderr.contains("\u{1}e\u{2}"), "the error is logged at error level: {:?}", out.stderr);
    }
    assert!(!dir.path().join("data").exists(), "no queue is created for bad input");
}

#[test]
fn unknown_task_mode_is_explained() {
    let world = World::new(0);
    let out = world.task("frobnicate");
    assert_eq!(out.code, 1);
    let err = out.error();
    assert!(err.contains("known modes: all, recent, process_queue"), "{err}");
    assert!(err.contains("health_check"), "the policy's tasks are listed too: {err}");
}

/// A hook records whatever Stash fires (it does not judge, so it stays
/// fast); the drain's policy finds nothing to sync in an image edit.
#[test]
fn a_hook_with_nothing_to_sync_is_recorded_and_leaves_no_job() {
    let world = World::new(1);
    let stdin = json!({"server_connection": world.connection(),
        "args": {"hookContext": {"id": 3, "type": "Image.Update.Post", "input": null}}});
    let out = run(&stdin.to_string(), &[]);
    assert!(out.output().starts_with("recorded Image.Update.Post for 3"), "{}", out.stdout);
    assert_eq!(world.stash.requests().len(), 0, "a hook does not call Stash");
    assert_eq!(world.kept_changes(), 1);
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 0 job"), "{}", task.stdout);
    assert_eq!(world.kept_changes(), 0, "read, and nothing queued");
    assert_eq!(world.plex.count("PUT", "/"), 0);
}

#[test]
fn log_lines_use_stash_framing_and_stdout_is_one_object() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
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
    let task = world.task("process_queue");
    assert!(task.stderr.contains("was not used"), "the broken policy is reported: {}", task.stderr);
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

/// Stash loads the plugin YAML strictly: an unknown key or a bad setting type
/// makes the whole plugin fail to load. Load the shape we ship with the test
/// kit's model of Stash's loader, and check that every task mode and setting
/// it declares is one the binary knows.
#[test]
fn the_plugin_yaml_only_uses_keys_stash_accepts_and_modes_we_handle() {
    use stash2plex_testkit::stash_plugins::{Interface, SettingType, parse_plugin_yaml};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/Stash2Plex.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = parse_plugin_yaml(&text).expect("Stash loads the plugin YAML");
    config.check_triggers().unwrap();
    assert_eq!(config.interface, Interface::Raw);
    assert_eq!(config.exec, ["stash2plex", "plugin", "--plugin-dir", "{pluginDir}"]);
    let modes: Vec<String> = config.tasks.iter().filter_map(|t| t.default_args.0.get("mode").cloned()).collect();
    assert_eq!(modes.len(), config.tasks.len(), "every task names its mode");
    let settings: Vec<String> = config.settings.0.keys().cloned().collect();
    for (key, s) in &config.settings.0 {
        assert!(s.declared_type.is_some(), "{key} declares its type");
    }
    let triggers: Vec<String> = config.hooks.iter().flat_map(|h| h.triggered_by.iter().flatten().cloned()).collect();
    // The modes the host runs and the ones the built-in policy declares.
    let runtime = Runtime::load(DEFAULT_POLICY, None, Limits::default()).expect("the built-in policy loads");
    let info = stash2plex::runtime::session::admit(&runtime).expect("the built-in policy is admitted");
    let mut known: Vec<String> = stash2plex::tasks::HOST_MODES.iter().map(|(m, _)| m.to_string()).collect();
    known.extend(info.tasks.iter().map(|t| t.name.clone()));
    assert!(modes.len() >= 5, "{modes:?}");
    for m in &modes {
        assert!(known.contains(m), "task mode {m:?} is not handled by the binary");
    }
    // Every setting is declared by the host or the policy, with the kind its
    // Stash type stores.
    let mut specs = stash2plex::settings::host_specs();
    specs.extend(info.settings.iter().cloned());
    for (key, setting) in &config.settings.0 {
        let spec = specs.iter().find(|s| &s.key == key).unwrap_or_else(|| panic!("{key} is read by nobody"));
        let ty = setting.kind();
        let fits = matches!(
            (ty, &spec.kind),
            (SettingType::Boolean, SettingKind::Flag)
                | (SettingType::Number, SettingKind::Whole(_))
                | (SettingType::String, SettingKind::Text | SettingKind::Choice(_))
        );
        assert!(fits, "{key} is {ty:?} in the YAML but {:?} in the binary", spec.kind);
    }
    for t in [
        "Scene.Update.Post",
        "Scene.Create.Post",
        "Scene.Destroy.Post",
        "Performer.Update.Post",
        "Studio.Update.Post",
        "Tag.Update.Post",
        "Tag.Merge.Post",
        "Group.Update.Post",
        "Movie.Update.Post",
    ] {
        assert!(triggers.iter().any(|x| x == t), "{triggers:?}");
    }
    // Every declared setting is accepted by the binary and the policy:
    // a Process Queue with all of them set to valid values runs.
    let world = World::new(1);
    let mut values = serde_json::Map::new();
    for key in &settings {
        let v = match key.as_str() {
            "plex_url" => json!(world.plex.url()),
            "plex_token" => json!(crate::harness::PLEX_TOKEN),
            "plex_library" => json!("Stash"),
            "max_retries" => json!(5),
            "connect_timeout" => json!(5),
            "read_timeout" => json!(30),
            "dlq_retention_days" => json!(30),
            "max_tags" => json!(100),
            "sync_sort_title" => json!("date"),
            "plex_path_map" => json!("/nowhere=>/data"),
            "content_rating" => json!("X"),
            "plex_labels" => json!("Stash, Synced"),
            "policy_path" | "plex_proxy" => json!(""),
            "reconcile_schedule" => json!("never"),
            "reconcile_scope" => json!("all"),
            "reconcile_mode" => json!("report"),
            "policy_fuel_millions" => json!(20_000),
            "policy_memory_mb" => json!(256),
            k if k.starts_with("sync_") || k == "enabled" || k == "strict_matching" => json!(true),
            _ => json!(false),
        };
        values.insert(key.clone(), v);
    }
    world.stash.set_plugin_settings("Stash2Plex", serde_json::Value::Object(values));
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let out = world.task("process_queue");
    assert!(out.output().contains("the queue is empty"), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn obfuscate_paths_hides_every_path_in_the_logs() {
    let world = World::new(3);
    world.stash.set_plugin_settings(
        "Stash2Plex",
        json!({ "plex_url": world.plex.url(), "plex_token": crate::harness::PLEX_TOKEN, "obfuscate_paths": true }),
    );
    // One scene Plex has not scanned yet, so its path shows up in a warning.
    let mut scene = stash2plex_testkit::fake_stash::SceneSpec::new("90");
    scene.title = Some("Secret Title".into());
    scene.files =
        vec![stash2plex_testkit::fake_stash::SceneFile::new("990", "/data/Stash/Private Folder/secret-file.mp4")];
    world.stash.upsert_scene(scene);
    let mut stderr = String::new();
    for id in ["1", "2", "90"] {
        stderr.push_str(&world.hook("Scene.Update.Post", id, &["id", "title"]).stderr);
    }
    let task = world.task("process_queue");
    stderr.push_str(&task.stderr);
    stderr.push_str(&world.task("queue_status").stderr);
    assert!(task.output().contains("Processed"), "{}", task.stdout);
    assert!(stderr.contains(".mp4"), "paths are still logged, in disguise: {stderr}");
    for secret in ["/data/Stash", "Private Folder", "secret-file", "Northwind Pictures", "Quiet Harbor (2019"] {
        assert!(!stderr.contains(secret), "{secret:?} leaked into the log:\n{stderr}");
    }
}
