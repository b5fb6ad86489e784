//! Running the real `stash2plex` binary the way Stash does: one process per
//! hook or task, Stash's JSON on stdin, one JSON object back on stdout.

use serde_json::{Value, json};
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::{FakePlex, FakeStash, fixtures};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PLEX_TOKEN: &str = "plex-token-0123456789";
pub const COOKIE: &str = "MTc2ODA0MjQ1OHxEdi1CQkFFQ180SUFBUkFCRUFBQV80";

pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Outcome {
    /// The one JSON object the plugin printed.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", self.stdout))
    }
    pub fn output(&self) -> String {
        let v = self.json();
        assert!(v.get("error").is_none(), "plugin answered an error: {v}\nstderr:\n{}", self.stderr);
        match v.get("output") {
            Some(Value::String(s)) => s.clone(),
            other => panic!("no output string: {other:?}"),
        }
    }
    pub fn error(&self) -> String {
        let v = self.json();
        v.get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| panic!("expected an error, got {v}"))
    }
}

/// A Stash with a Plex on loopback, a plugin folder, and a demo library.
pub struct World {
    pub stash: FakeStash,
    pub plex: FakePlex,
    pub plugin_dir: tempfile::TempDir,
    /// (scene id, Plex ratingKey)
    pub scenes: Vec<(String, String)>,
}

impl World {
    pub fn new(n_scenes: usize) -> World {
        Self::with_auth(n_scenes, StashAuth::Session { cookie_value: COOKIE.into(), api_key: None })
    }

    pub fn with_auth(n_scenes: usize, auth: StashAuth) -> World {
        let stash = FakeStash::start(auth).expect("fake Stash starts");
        let plex = FakePlex::start(Some(PLEX_TOKEN)).expect("fake Plex starts");
        let scenes = fixtures::install_demo(&stash, &plex, n_scenes);
        stash.set_plugin_settings("Stash2Plex", json!({ "plex_url": plex.url(), "plex_token": PLEX_TOKEN }));
        World { stash, plex, plugin_dir: tempfile::tempdir().expect("temp dir"), scenes }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.plugin_dir.path().join("data")
    }

    pub fn connection(&self) -> Value {
        json!({
            "Scheme": "http", "Host": "127.0.0.1", "Port": self.stash.port(),
            "SessionCookie": {"Name": "session", "Value": COOKIE, "Quoted": false, "Path": "", "Domain": "",
                "Expires": "0001-01-01T00:00:00Z", "RawExpires": "", "MaxAge": 0, "Secure": false, "HttpOnly": false,
                "SameSite": 0, "Partitioned": false, "Raw": "", "Unparsed": null},
            "Dir": "/root/.stash",
            "PluginDir": self.plugin_dir.path(),
        })
    }

    /// `Scene.Update.Post` as Stash sends it after a UI edit.
    pub fn hook(&self, trigger: &str, scene_id: &str, fields: &[&str]) -> Outcome {
        let mut input = serde_json::Map::new();
        input.insert("id".into(), json!(scene_id));
        for f in fields {
            input.insert((*f).into(), Value::Null);
        }
        let stdin = json!({
            "server_connection": self.connection(),
            "args": {"hookContext": {"id": scene_id.parse::<u64>().unwrap_or(0), "type": trigger,
                      "input": input, "inputFields": fields}},
        });
        run(&stdin.to_string(), &[])
    }

    /// Any hook, exactly as given: `input` is the mutation input (or null),
    /// `fields` the `inputFields` (omitted when `None`, as after a scan).
    pub fn raw_hook(&self, trigger: &str, id: u64, input: Value, fields: Option<&[&str]>) -> String {
        let mut ctx = json!({"id": id, "type": trigger, "input": input});
        if let Some(fields) = fields {
            ctx["inputFields"] = json!(fields);
        }
        json!({ "server_connection": self.connection(), "args": { "hookContext": ctx } }).to_string()
    }

    /// Run a hook with background drainers on, as in production.
    pub fn hook_autodrain(&self, stdin: &str) -> Outcome {
        run_with_env(stdin, &[], None, &[("STASH2PLEX_AUTODRAIN", "1")])
    }

    /// The detached drainers of this world that are alive now.
    pub fn drainers(&self) -> Vec<u32> {
        crate::sandbox::processes_mentioning(&self.data_dir().to_string_lossy())
    }

    /// Wait up to `limit` for every drainer of this world to end; `true`
    /// when they did. Stops any left at the limit (the test then fails).
    pub fn wait_for_drainers(&self, limit: std::time::Duration) -> bool {
        let ended = wait_until(limit, || self.drainers().is_empty());
        if !ended {
            for pid in self.drainers() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        ended
    }

    /// The background drainers' log.
    pub fn drainer_log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("drainer.log")).unwrap_or_default()
    }

    pub fn task(&self, mode: &str) -> Outcome {
        let stdin = json!({ "server_connection": self.connection(), "args": { "mode": mode } });
        run(&stdin.to_string(), &[])
    }

    pub fn queue_db(&self) -> PathBuf {
        self.data_dir().join("queue.db")
    }

    /// Changes kept for Plex: live jobs, and events hooks recorded that no
    /// drain has read yet.
    pub fn kept_changes(&self) -> u64 {
        let q = stash2plex::store::Queue::open(&self.queue_db()).expect("queue opens");
        let c = q.counts(i64::MAX / 2).expect("counts");
        c.ready + c.waiting + c.running + q.count_events().expect("events")
    }
}

/// Poll `cond` every 50 ms for up to `limit`; `true` once it holds.
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn run(stdin: &str, args: &[&str]) -> Outcome {
    run_in(stdin, args, None)
}

pub fn run_in(stdin: &str, args: &[&str], cwd: Option<&Path>) -> Outcome {
    run_with_env(stdin, args, cwd, &[("STASH2PLEX_AUTODRAIN", "0")])
}

/// Run with extra environment variables. Tests run with background drainers
/// off (`STASH2PLEX_AUTODRAIN=0`) unless they pass another value here, so a
/// hook never races the test's own Process Queue.
pub fn run_with_env(stdin: &str, args: &[&str], cwd: Option<&Path>, vars: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stash2plex"));
    cmd.envs(vars.iter().copied());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("STASH_PLUGIN_DATA").env_remove("PLEX_URL").env_remove("PLEX_TOKEN");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("spawn stash2plex");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        // Like Stash: write everything, then close.
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for stash2plex");
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}
