//! The plugin package as Stash installs and runs it: built by the real
//! `stash2plex-lab package`, installed by the test kit's model of Stash's
//! installer (sha256 from index.yml, zip modes, manifest), loaded with
//! Stash's strict YAML rules, and started with the command line Stash would
//! build, against the loopback fakes of Stash and Plex.
//!
//! Always run (CI included): the x86_64 musl package, its binary in a root
//! holding nothing but the plugin folder (no libc, no /proc, no /dev), and
//! the launcher in an Alpine-like root (a static busybox only).
//!
//! `#[ignore]`d because they build the other two targets (several minutes
//! each on 2 cores): the arm64 binary under qemu-user in such a root, and the
//! Windows binary under wine. `.ci/run` runs them with
//! `STASH2PLEX_PACKAGE_ALL=1`; by hand:
//! `cargo test --release -p stash2plex-lab --test package -- --include-ignored`.
//!
//! The roots are entered with chroot (as root) or `unshare -r chroot`.

use serde_json::{Value, json};
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::stash_plugins::{self, Os};
use stash2plex_testkit::{FakePlex, FakeStash, fixtures};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PLEX_TOKEN: &str = "package-test-plex-token";
const ID: &str = "Stash2Plex";
const X86_64: &str = "x86_64-unknown-linux-musl";
const ALL: [&str; 3] = [X86_64, "aarch64-unknown-linux-musl", "x86_64-pc-windows-gnu"];

// --- building the package (once per test binary and target set) ---

struct Package {
    out: PathBuf,
    targets: Vec<&'static str>,
}

fn build(name: &str, targets: &[&'static str]) -> Package {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stash2plex-lab"));
    cmd.arg("package").arg("--out").arg(&out);
    for t in targets {
        cmd.args(["--target", t]);
    }
    let status = cmd.status().expect("run stash2plex-lab package");
    assert!(status.success(), "stash2plex-lab package failed ({status})");
    Package { out, targets: targets.to_vec() }
}

/// The x86_64 musl package (the zip then holds that binary only).
fn short_package() -> &'static Package {
    static P: OnceLock<Package> = OnceLock::new();
    P.get_or_init(|| build("package-x86_64", &[X86_64]))
}

fn full_package() -> &'static Package {
    static P: OnceLock<Package> = OnceLock::new();
    P.get_or_init(|| build("package-all", &ALL))
}

impl Package {
    fn index(&self) -> PathBuf {
        self.out.join("index.yml")
    }

    /// Install into `<plugins>/community/Stash2Plex`, as Stash does for a
    /// plugin source; returns the plugin folder.
    fn install(&self, plugins: &Path) -> PathBuf {
        stash_plugins::install_package(&self.index(), ID, &plugins.join("community")).expect("Stash installs it")
    }

    /// Installed into a fresh plugins folder: (its temp dir, the plugins
    /// folder, the plugin folder).
    fn install_fresh(&self) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let plugins = tmp.path().join("plugins");
        let dir = self.install(&plugins);
        (tmp, plugins, dir)
    }
}

// --- Stash and Plex on loopback ---

struct World {
    stash: FakeStash,
    plex: FakePlex,
    /// (scene id, Plex ratingKey)
    scenes: Vec<(String, String)>,
}

impl World {
    fn new(n: usize) -> World {
        let stash = FakeStash::start(StashAuth::None).expect("fake Stash");
        let plex = FakePlex::start(Some(PLEX_TOKEN)).expect("fake Plex");
        let scenes = fixtures::install_demo(&stash, &plex, n);
        stash.set_plugin_settings(ID, json!({ "plex_url": plex.url(), "plex_token": PLEX_TOKEN }));
        World { stash, plex, scenes }
    }

    /// Stash's stdin for a task; `plugin_dir` as the binary sees it.
    fn task(&self, plugin_dir: &str, mode: &str) -> String {
        json!({"server_connection": self.connection(plugin_dir), "args": {"mode": mode}}).to_string()
    }

    /// `Scene.Update.Post` after a title edit.
    fn hook(&self, plugin_dir: &str, scene: usize) -> String {
        let id = &self.scenes[scene].0;
        json!({"server_connection": self.connection(plugin_dir),
               "args": {"hookContext": {"id": id.parse::<u64>().unwrap_or(0), "type": "Scene.Update.Post",
                        "input": {"id": id, "title": null}, "inputFields": ["id", "title"]}}})
        .to_string()
    }

    fn connection(&self, plugin_dir: &str) -> Value {
        json!({"Scheme": "http", "Host": "0.0.0.0", "Port": self.stash.port(), "SessionCookie": null,
               "Dir": "/config", "PluginDir": plugin_dir})
    }

    /// Has the scene's title reached Plex (written and locked)?
    fn synced(&self, scene: usize) -> bool {
        self.plex.item(&self.scenes[scene].1).is_some_and(|i| i.locked_fields.contains("title"))
    }

    fn wait_synced(&self, scene: usize, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.synced(scene) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.synced(scene)
    }
}

// --- running a process the way Stash does ---

struct Outcome {
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}): {:?}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    fn output(&self) -> String {
        let v = self.json();
        assert!(v.get("error").is_none(), "the plugin answered an error: {v}\nstderr:\n{}", self.stderr);
        v.get("output").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| panic!("no output: {v}"))
    }
}

/// Write `stdin`, close it, read stdout to EOF (as Stash does: a process
/// that leaves its stdout to a child keeps Stash waiting here).
fn run(mut cmd: Command, stdin: &str) -> Outcome {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for the plugin");
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// `argv` run inside `root` (chroot), with an empty environment but `vars`.
fn in_root(root: &Path, argv: &[String], vars: &[(&str, &str)]) -> Command {
    // By absolute path: the child's environment is emptied below.
    let chroot = tool(&["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"], "coreutils");
    let mut cmd = if is_root() {
        Command::new(chroot)
    } else {
        let mut c = Command::new(tool(&["/usr/bin/unshare", "/bin/unshare"], "util-linux"));
        c.args(["--user", "--map-root-user"]).arg(chroot);
        c
    };
    cmd.arg(root).args(argv).env_clear().envs(vars.iter().copied());
    cmd
}

/// A path of the host as seen inside `root`.
fn inside(root: &Path, path: &Path) -> String {
    format!("/{}", path.strip_prefix(root).expect("under the root").display())
}

/// Stash's command line for a task or hook of the installed plugin, for `os`.
fn stash_command(plugins: &Path, os: Os) -> Vec<String> {
    let loaded = stash_plugins::load_plugins(plugins).expect("Stash loads the plugins folder");
    assert_eq!(loaded.len(), 1, "one plugin YAML in the package: {loaded:?}");
    loaded[0].command(&[], &[], os).expect("Stash finds the program")
}

/// A tool a test needs (CI installs it; see .ci/run).
fn tool(paths: &[&str], package: &str) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{} is missing: apt-get install {package}", paths[0]))
}

// --- the package itself ---

#[test]
fn the_zip_the_index_and_the_yaml_are_what_stash_installs_and_upgrades() {
    let pkg = short_package();
    let entries = stash_plugins::read_index(&pkg.index()).expect("index.yml reads");
    let [entry] = entries.as_slice() else { panic!("one package in {entries:?}") };
    assert_eq!((entry.id.as_str(), entry.name.as_str(), entry.path.as_str()), (ID, ID, "Stash2Plex.zip"));
    assert!(entry.version.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION"))), "{}", entry.version);
    let zip_bytes = std::fs::read(pkg.out.join(&entry.path)).unwrap();
    assert_eq!(stash_plugins::sha256_hex(&zip_bytes), entry.sha256);

    // Layout and the modes the zip records.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&zip_bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mode = f.unix_mode().expect("Unix mode recorded") & 0o777;
        let want = if name.ends_with(".yml") { 0o644 } else { 0o755 };
        assert_eq!(mode, want, "{name}: {mode:o}");
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["Stash2Plex.yml", "bin/linux-x86_64/stash2plex", "stash2plex"]);
    assert_eq!(pkg.targets, [X86_64]);

    // Installed, the files keep their modes; the YAML is the repository's
    // and loads strictly; it is the only plugin YAML.
    let (tmp, plugins, dir) = pkg.install_fresh();
    for exe in ["stash2plex", "bin/linux-x86_64/stash2plex"] {
        let mode = mode_of(&dir.join(exe));
        assert_eq!(mode & 0o111, 0o111, "{exe} is executable after the install: {mode:o}");
    }
    let shipped = std::fs::read_to_string(dir.join("Stash2Plex.yml")).unwrap();
    let repo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/plugin/Stash2Plex.yml"));
    assert_eq!(shipped, repo.unwrap());
    let loaded = stash_plugins::load_plugins(&plugins).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, ID);
    loaded[0].config.check_triggers().unwrap();
    assert_eq!(loaded[0].config.exec[0], "stash2plex", "exec[0] is one bare name for every OS");
    assert_eq!(stash_command(&plugins, Os::Unix)[0], dir.join("stash2plex").display().to_string());

    // An update replaces the package's files and keeps data/ (the queue).
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/queue.db"), b"the queue").unwrap();
    std::fs::write(dir.join("bin/linux-x86_64/stash2plex"), b"an old binary").unwrap();
    assert_eq!(pkg.install(&plugins), dir);
    assert_eq!(std::fs::read(dir.join("data/queue.db")).unwrap(), b"the queue");
    assert!(std::fs::metadata(dir.join("bin/linux-x86_64/stash2plex")).unwrap().len() > 1_000_000);
    assert_eq!(mode_of(&dir.join("bin/linux-x86_64/stash2plex")) & 0o111, 0o111);
    // Uninstall removes the package's files; the data folder stays (and so
    // does the plugin folder holding it) until the user deletes it.
    stash_plugins::uninstall_package(&plugins.join("community"), ID).unwrap();
    assert!(!dir.join("stash2plex").exists() && !dir.join("Stash2Plex.yml").exists());
    assert!(dir.join("data/queue.db").exists());

    // A zip that is not the one index.yml names is refused.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut tampered = zip_bytes.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    std::fs::write(bad.join("Stash2Plex.zip"), tampered).unwrap();
    std::fs::copy(pkg.index(), bad.join("index.yml")).unwrap();
    let err = stash_plugins::install_package(&bad.join("index.yml"), ID, &bad.join("plugins")).unwrap_err();
    assert!(err.contains("does not match expected SHA256"), "{err}");
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode()
}

// --- Linux x86_64: a root with no libc ---

/// A root holding only `plugins/community/Stash2Plex`, installed from the
/// zip. Returns (root, plugin folder).
fn bare_root(pkg: &Package) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = pkg.install(&root.path().join("plugins"));
    let top: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top, ["plugins"], "nothing but the plugin folder: no libc, no /proc, no /dev");
    (root, dir)
}

#[test]
fn the_x86_64_musl_binary_answers_hooks_and_tasks_in_a_root_without_libc() {
    let pkg = short_package();
    let (root, dir) = bare_root(pkg);
    let world = World::new(3);
    let seen_dir = inside(root.path(), &dir);
    // What the launcher execs: the binary itself, by its path in the root.
    let argv: Vec<String> =
        [format!("{seen_dir}/bin/linux-x86_64/stash2plex"), "plugin".into(), "--plugin-dir".into(), seen_dir.clone()]
            .into();

    let status = run(in_root(root.path(), &argv, &[]), &world.task(&seen_dir, "queue_status"));
    assert!(status.output().contains("=== Queue Status ==="), "{}", status.stderr);
    let hook = run(in_root(root.path(), &argv, &[("STASH2PLEX_AUTODRAIN", "0")]), &world.hook(&seen_dir, 0));
    assert!(hook.json().get("error").is_none(), "{}", hook.stdout);
    assert!(!world.synced(0), "a hook only records the change");
    let drained = run(in_root(root.path(), &argv, &[]), &world.task(&seen_dir, "process_queue"));
    drained.output();
    assert!(world.synced(0), "Process Queue wrote the scene to Plex: {}", drained.stderr);
    assert!(dir.join("data/queue.db").is_file(), "the queue lives in the plugin's data folder");
}

/// Stash's own command line, through the launcher, in a root holding a
/// static busybox (sh, uname, tr) and the plugin folder: Alpine without
/// its libc. (Busybox runs its own `uname`, so another machine cannot be
/// faked here; the arm64 branch is the same three lines.)
#[test]
fn stash_starts_the_launcher_which_runs_the_binary_for_the_machine() {
    let pkg = short_package();
    let (root, dir) = bare_root(pkg);
    let busybox = tool(&["/bin/busybox", "/usr/bin/busybox"], "busybox-static");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "uname", "tr"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let world = World::new(2);
    let argv: Vec<String> = stash_command(&root.path().join("plugins"), Os::Unix)
        .into_iter()
        .map(|a| if a.starts_with(&root.path().display().to_string()) { inside(root.path(), Path::new(&a)) } else { a })
        .collect();
    let seen_dir = inside(root.path(), &dir);
    assert_eq!(argv, [format!("{seen_dir}/stash2plex"), "plugin".into(), "--plugin-dir".into(), seen_dir.clone()]);
    let vars = [("PATH", "/bin"), ("STASH2PLEX_AUTODRAIN", "0")];
    let hook = run(in_root(root.path(), &argv, &vars), &world.hook(&seen_dir, 0));
    assert!(hook.json().get("error").is_none(), "{}\n{}", hook.stdout, hook.stderr);
    let out = run(in_root(root.path(), &argv, &vars), &world.task(&seen_dir, "process_queue"));
    out.output();
    assert!(world.synced(0), "{}", out.stderr);

    // Unpacked by a tool that dropped the modes: the launcher says what to
    // do, in Stash's log and as the task's error.
    let binary = dir.join("bin/linux-x86_64/stash2plex");
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = run(in_root(root.path(), &argv, &vars), &world.task(&seen_dir, "queue_status"));
    let err = refused.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("is not executable") && err.contains("chmod +x"), "{err}");
    assert!(refused.stderr.starts_with("\u{1}e\u{2}"), "an error line for Stash's log: {:?}", refused.stderr);
    // A package without this machine's binary answers with an error too.
    std::fs::remove_file(&binary).unwrap();
    let refused = run(in_root(root.path(), &argv, &vars), &world.task(&seen_dir, "queue_status"));
    let err = refused.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("no binary for Linux x86_64"), "{err}");
}

/// A hook with automatic sync starts a background drainer. With no /proc
/// in the root, the binary finds itself by argv[0]. Plex answers slowly, so
/// the drainer is still at work when the hook's stdout closes: the drainer
/// does not hold Stash's pipe. (The root gets a /dev/null, which the
/// drainer's stdio needs, as every real system has; making it needs root.)
#[test]
fn a_hook_starts_a_detached_drainer_in_a_root_without_proc() {
    if !is_root() {
        eprintln!("skipped: creating <root>/dev/null needs root");
        return;
    }
    let pkg = short_package();
    let (root, dir) = bare_root(pkg);
    let dev = root.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let mknod = tool(&["/usr/bin/mknod", "/bin/mknod"], "coreutils");
    let made = Command::new(mknod).arg(dev.join("null")).args(["c", "1", "3"]).status().unwrap();
    assert!(made.success(), "mknod <root>/dev/null");
    std::fs::set_permissions(dev.join("null"), std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let world = World::new(3);
    let seen_dir = inside(root.path(), &dir);
    let argv: Vec<String> =
        [format!("{seen_dir}/bin/linux-x86_64/stash2plex"), "plugin".into(), "--plugin-dir".into(), seen_dir.clone()]
            .into();
    // A task first: it stores the settings hooks use.
    run(in_root(root.path(), &argv, &[]), &world.task(&seen_dir, "process_queue")).output();
    world.plex.set_latency(Duration::from_millis(1500));
    let hook = run(in_root(root.path(), &argv, &[]), &world.hook(&seen_dir, 1));
    assert!(hook.json().get("error").is_none(), "{}\n{}", hook.stdout, hook.stderr);
    assert!(!world.synced(1), "the hook returned before the drainer synced");
    assert!(world.wait_synced(1, Duration::from_secs(60)), "the background drainer synced the scene");
    let log = std::fs::read_to_string(dir.join("data/drainer.log")).unwrap_or_default();
    assert!(!log.is_empty(), "the drainer logs to data/drainer.log");
}

// --- the slow ones: the other targets ---

#[test]
#[ignore = "builds the arm64 and Windows binaries; .ci/run runs it with STASH2PLEX_PACKAGE_ALL=1"]
fn the_full_zip_holds_every_binary_and_stash_finds_the_right_one_per_os() {
    let pkg = full_package();
    let (_tmp, plugins, dir) = pkg.install_fresh();
    let manifest = std::fs::read_to_string(dir.join("manifest")).expect("Stash wrote its manifest");
    let mut files = serde_norway::from_str::<stash_plugins::Manifest>(&manifest).unwrap().files;
    files.sort();
    assert_eq!(
        files,
        [
            "Stash2Plex.yml",
            "bin/linux-aarch64/stash2plex",
            "bin/linux-x86_64/stash2plex",
            "stash2plex",
            "stash2plex.exe"
        ]
    );
    assert_eq!(stash_command(&plugins, Os::Unix)[0], dir.join("stash2plex").display().to_string());
    assert_eq!(stash_command(&plugins, Os::Windows)[0], dir.join("stash2plex.exe").display().to_string());
}

#[test]
#[ignore = "builds the arm64 binary; .ci/run runs it with STASH2PLEX_PACKAGE_ALL=1"]
fn the_arm64_binary_answers_hooks_and_tasks_under_qemu_in_a_root_without_libc() {
    let pkg = full_package();
    let (root, dir) = bare_root(pkg);
    let qemu = tool(&["/usr/bin/qemu-aarch64-static", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"], "qemu-user-static");
    std::fs::copy(&qemu, root.path().join("qemu-aarch64")).unwrap();
    let world = World::new(2);
    let seen_dir = inside(root.path(), &dir);
    let argv: Vec<String> = [
        "/qemu-aarch64".into(),
        format!("{seen_dir}/bin/linux-aarch64/stash2plex"),
        "plugin".into(),
        "--plugin-dir".into(),
        seen_dir.clone(),
    ]
    .into();
    // No binfmt here: a background drainer (exec of an arm64 file) could
    // not start, so hooks only record.
    let vars = [("STASH2PLEX_AUTODRAIN", "0")];
    let hook = run(in_root(root.path(), &argv, &vars), &world.hook(&seen_dir, 0));
    assert!(hook.json().get("error").is_none(), "{}\n{}", hook.stdout, hook.stderr);
    let out = run(in_root(root.path(), &argv, &vars), &world.task(&seen_dir, "process_queue"));
    out.output();
    assert!(world.synced(0), "{}", out.stderr);
    let status = run(in_root(root.path(), &argv, &vars), &world.task(&seen_dir, "queue_status"));
    assert!(status.output().contains("Dead letters: 0"));
}

// --- Windows under wine ---

struct Wine {
    wine: PathBuf,
    prefix: PathBuf,
}

impl Wine {
    /// A prefix of our own, booted, with a wineserver that stays up: the
    /// plugin's processes then start quickly and the server (which would
    /// otherwise be started by, and hold the pipes of, the first one) is
    /// not ours to wait for.
    fn start() -> Wine {
        let wine = tool(&["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"], "wine64");
        let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wine-prefix");
        let w = Wine { wine, prefix };
        let server = w.wine.with_file_name(if w.wine.ends_with("wine64") { "wineserver64" } else { "wineserver" });
        let server = if server.is_file() { server } else { PathBuf::from("wineserver") };
        let mut boot = w.command();
        boot.arg("wineboot").arg("--init").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        assert!(boot.status().expect("wineboot").success(), "wineboot --init");
        let mut persist = Command::new(server);
        persist.arg("-p").env("WINEPREFIX", &w.prefix).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = persist.status();
        w
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.wine);
        cmd.env("WINEPREFIX", &self.prefix).env("WINEDEBUG", "-all").env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    }

    /// Wine's drive Z: is the Unix root.
    fn windows_path(path: &Path) -> String {
        format!("Z:{}", path.display()).replace('/', "\\")
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let server =
            self.wine.with_file_name(if self.wine.ends_with("wine64") { "wineserver64" } else { "wineserver" });
        let _ = Command::new(if server.is_file() { server } else { PathBuf::from("wineserver") })
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .status();
    }
}

fn tmp_stderr(dir: &Path) -> std::fs::File {
    std::fs::File::create(dir.join("hook-stderr.txt")).unwrap()
}

/// Wine 8 (Debian 12) lacks `bcryptprimitives.dll`, whose `ProcessPrng`
/// Rust's std calls for random bytes on Windows 10 and later. The test puts
/// a DLL with that one function (RtlGenRandom underneath) beside the exe;
/// real Windows has its own.
fn bcryptprimitives_for_wine(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine/bcryptprimitives.c");
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(&src)
        .arg("-ladvapi32")
        .status()
        .expect("x86_64-w64-mingw32-gcc (apt-get install gcc-mingw-w64-x86-64)");
    assert!(status.success(), "building the bcryptprimitives.dll stand-in");
}

#[test]
#[ignore = "builds the Windows binary and boots a wine prefix; .ci/run runs it with STASH2PLEX_PACKAGE_ALL=1"]
fn the_windows_binary_answers_hooks_and_tasks_under_wine_and_detaches_its_drainer() {
    let pkg = full_package();
    let (_tmp, plugins, dir) = pkg.install_fresh();
    let argv = stash_command(&plugins, Os::Windows);
    assert_eq!(argv[0], dir.join("stash2plex.exe").display().to_string(), "Go's exec adds .exe");
    bcryptprimitives_for_wine(&dir);
    let wine = Wine::start();
    let unix_dir = dir.display().to_string();
    let win_dir = Wine::windows_path(&dir);
    // As Stash on Windows would pass it: {pluginDir} is a Windows path.
    let args: Vec<String> = argv[1..].iter().map(|a| a.replace(&unix_dir, &win_dir)).collect();
    assert_eq!(args, ["plugin", "--plugin-dir", win_dir.as_str()]);
    let world = World::new(3);
    let plugin = |vars: &[(&str, &str)]| {
        let mut cmd = wine.command();
        cmd.arg(&argv[0]).args(&args).envs(vars.iter().copied());
        cmd
    };

    let status = run(plugin(&[]), &world.task(&win_dir, "queue_status"));
    assert!(status.output().contains("=== Queue Status ==="), "{}", status.stderr);
    let hook = run(plugin(&[("STASH2PLEX_AUTODRAIN", "0")]), &world.hook(&win_dir, 0));
    assert!(hook.json().get("error").is_none(), "{}\n{}", hook.stdout, hook.stderr);
    assert!(!world.synced(0));
    let out = run(plugin(&[]), &world.task(&win_dir, "process_queue"));
    out.output();
    assert!(world.synced(0), "{}", out.stderr);
    assert!(dir.join("data").join("queue.db").is_file(), "the data folder is in the plugin folder");

    // The hook's background drainer: detached, and not holding the hook's
    // stdout (Windows hands inheritable handles to every child), so Stash
    // gets EOF while the drainer still waits on a slow Plex. Only stdout
    // is read here: wine (not Windows) leaves the Unix stderr of a process
    // open in the processes it starts, whatever their handles say.
    world.plex.set_latency(Duration::from_millis(1500));
    let stderr_file = tmp_stderr(&dir);
    let mut cmd = plugin(&[]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr_file.try_clone().unwrap());
    let mut child = cmd.spawn().expect("start the hook under wine");
    let _ = child.stdin.take().unwrap().write_all(world.hook(&win_dir, 1).as_bytes());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(!world.synced(1), "Stash saw the hook's stdout close before its drainer synced");
    let _ = child.wait();
    let hook = Outcome { stdout, stderr: std::fs::read_to_string(dir.join("hook-stderr.txt")).unwrap_or_default() };
    assert!(hook.json().get("error").is_none(), "{}\n{}", hook.stdout, hook.stderr);
    assert!(hook.stderr.contains("Started a background drainer"), "{}", hook.stderr);
    assert!(hook.stderr.contains("loaded from the compiled cache"), "a later process uses the cache: {}", hook.stderr);
    assert!(world.wait_synced(1, Duration::from_secs(90)), "the background drainer synced the scene");
    let log = std::fs::read_to_string(dir.join("data").join("drainer.log")).unwrap_or_default();
    assert!(!log.is_empty(), "the drainer logs to data\\drainer.log");
}
