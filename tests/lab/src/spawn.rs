//! Running the stash2plex binary the way Stash does: one process, the JSON
//! on stdin, one JSON object back on stdout.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Plugin {
    pub exe: PathBuf,
    pub policy: Option<PathBuf>,
}

impl Plugin {
    /// `explicit`, or `stash2plex` beside this program. Under `cargo run`
    /// it is built first (same profile; a no-op when it is up to date), so
    /// the README's one command works on a fresh checkout and the bench
    /// never measures a binary older than the source.
    pub fn locate(explicit: Option<PathBuf>, policy: Option<PathBuf>) -> Result<Plugin, String> {
        if let Some(exe) = explicit {
            return if exe.is_file() {
                Ok(Plugin { exe, policy })
            } else {
                Err(format!("{} does not exist", exe.display()))
            };
        }
        let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let dir = me.parent().ok_or("this program has no folder")?;
        let exe = dir.join(format!("stash2plex{}", std::env::consts::EXE_SUFFIX));
        build_beside(dir)?;
        if exe.is_file() {
            Ok(Plugin { exe, policy })
        } else {
            Err(format!("{} is missing; build it with `cargo build --release -p stash2plex`", exe.display()))
        }
    }

    /// Run one invocation with `stdin`; return the answer object.
    pub fn invoke(&self, stdin: &Value) -> Result<Value, String> {
        let child = self.start(stdin)?;
        let out = child.wait_with_output().map_err(|e| format!("the plugin did not finish: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("the plugin's answer is not JSON ({e})"))
    }

    /// [`Plugin::invoke`], with the process's own peak resident set in KiB,
    /// measured through `stash2plex-lab child-rss` (see there); `None` off
    /// Unix. The answer itself is not kept.
    pub fn invoke_rss(&self, stdin: &Value) -> Result<Peak, String> {
        let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut cmd = Command::new(me);
        cmd.args(["child-rss", "--"]).arg(&self.exe);
        let (report, _) = finish(self.launch(cmd, stdin)?)?;
        let kib = |k: &str| report.get(k).and_then(Value::as_u64);
        Ok(Peak { rss_kib: kib("max_rss_kib"), floor_kib: kib("own_rss_kib") })
    }

    /// The plugin process, `stdin` written and closed.
    fn start(&self, stdin: &Value) -> Result<std::process::Child, String> {
        self.launch(Command::new(&self.exe), stdin)
    }

    /// `cmd` (the plugin, or something that runs it) with the plugin's
    /// arguments appended, started with `stdin` written and closed.
    fn launch(&self, mut cmd: Command, stdin: &Value) -> Result<std::process::Child, String> {
        cmd.arg("plugin");
        if let Some(p) = &self.policy {
            cmd.arg("--policy").arg(p);
        }
        let mut child = cmd
            // The lab runs Process Queue itself.
            .env("STASH2PLEX_AUTODRAIN", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.to_string().as_bytes()).map_err(|e| format!("cannot write to the plugin: {e}"))?;
        }
        Ok(child)
    }
}

/// A process's peak memory as [`Plugin::invoke_rss`] measured it, KiB.
pub struct Peak {
    pub rss_kib: Option<u64>,
    /// The measuring process's own peak: a figure at it is at most it.
    pub floor_kib: Option<u64>,
}

/// What [`Plugin::invoke_measured`] saw.
pub struct Measured {
    pub answer: Value,
    pub wall: std::time::Duration,
    /// The process's peak resident set (`VmHWM`, sampled every 10 ms; the
    /// last sample before it exited), in KiB; 0 where `/proc` is missing.
    pub peak_rss_kib: u64,
    /// The CPU time the process used, user and system (`None` off Unix).
    pub cpu: Option<std::time::Duration>,
    /// `wait4`'s `ru_maxrss`, KiB: the largest resident set of the process
    /// or of any child it waited for (`None` off Unix).
    pub max_rss_kib: Option<u64>,
}

impl Plugin {
    /// [`Plugin::invoke`], timed, with the process's peak memory.
    pub fn invoke_measured(&self, stdin: &Value) -> Result<Measured, String> {
        let started = std::time::Instant::now();
        let child = self.start(stdin)?;
        let status = format!("/proc/{}/status", child.id());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(vm_hwm_kib(&status).unwrap_or(0));
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                peak
            })
        };
        let finished = finish(child);
        let wall = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak_rss_kib = sampler.join().unwrap_or(0);
        let (answer, usage) = finished?;
        Ok(Measured {
            answer,
            wall,
            peak_rss_kib,
            cpu: usage.as_ref().map(|u| u.cpu),
            max_rss_kib: usage.map(|u| u.peak_rss_kib),
        })
    }
}

/// `cargo build -p stash2plex` for the profile this program was built with
/// (`target/<profile>/`), when cargo is at hand.
fn build_beside(dir: &Path) -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("release");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "stash2plex"]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("stash2plex-lab: building the stash2plex binary (nothing to do when it is up to date)");
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("building stash2plex failed ({status})")) }
}

/// `stash2plex-lab child-rss -- <command>`: run `command` with this
/// process's stdin, then print `{"answer", "max_rss_kib", "own_rss_kib"}`.
/// This process stays small, so the child's `ru_maxrss` (which `exec`
/// starts from the spawning process's peak) is the child's own unless it is
/// below `own_rss_kib`.
pub fn child_rss(command: &[std::ffi::OsString]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("child-rss: no command given")?;
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut input).map_err(|e| format!("cannot read stdin: {e}"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.to_string_lossy()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(&input).map_err(|e| format!("cannot write to the child: {e}"))?;
    }
    let (answer, usage) = finish(child)?;
    let own = vm_hwm_kib("/proc/self/status");
    let report = serde_json::json!({
        "answer": answer,
        "max_rss_kib": usage.map(|u| u.peak_rss_kib),
        "own_rss_kib": own,
    });
    println!("{report}");
    Ok(())
}

/// `VmHWM` (peak resident set, KiB) from a `/proc/<pid>/status` file.
fn vm_hwm_kib(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

/// Read the child's answer to its end, then reap it.
fn finish(mut child: std::process::Child) -> Result<(Value, Option<Usage>), String> {
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        std::io::Read::read_to_end(&mut pipe, &mut stdout).map_err(|e| format!("cannot read the plugin: {e}"))?;
    }
    let usage = reap(&mut child)?;
    let answer = serde_json::from_slice(&stdout).map_err(|e| format!("the plugin's answer is not JSON ({e})"))?;
    Ok((answer, usage))
}

/// What a finished child used.
struct Usage {
    /// Peak resident set, KiB.
    peak_rss_kib: u64,
    /// User plus system CPU time.
    cpu: std::time::Duration,
}

/// Wait for `child` and return what it used (`wait4`, so only that process
/// counts, not other children of the lab).
#[cfg(unix)]
fn reap(child: &mut std::process::Child) -> Result<Option<Usage>, String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: wait4 writes one status and one `rusage` into values we own;
    // the child is ours and not waited for anywhere else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(format!("waiting for the plugin failed: {}", std::io::Error::last_os_error()));
    }
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + std::time::Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Some(Usage {
        // Linux reports ru_maxrss in KiB.
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    }))
}

#[cfg(not(unix))]
fn reap(child: &mut std::process::Child) -> Result<Option<Usage>, String> {
    child.wait().map_err(|e| format!("the plugin did not finish: {e}"))?;
    Ok(None)
}
