//! Starting a drainer without blocking Stash.
//!
//! After a hook records a change, it makes sure a drainer will run: if no
//! process holds the drain lock, it starts this binary again, detached (its
//! own process group, stdin/stdout/stderr not shared with Stash), as a
//! background Process Queue. The hook returns at once; Stash never waits for
//! the drain, and the drainer's log goes to `<data>/drainer.log` (rotated to
//! `drainer.log.1` at 1 MiB).
//!
//! Why not a Stash task (`runPluginTask`)? Stash runs one task at a time: a
//! drain waiting out a Plex outage would hold up the user's scans, and a
//! scan's hooks would queue one task per new file. A Stash task remains
//! available as "Process Queue" for doing it by hand.
//!
//! Race: a drainer that is about to exit still holds the lock when a hook
//! checks it. The drainer therefore re-checks the queue after it releases the
//! lock (see `drain::process`), and the hook commits its change before
//! it checks the lock, so one of the two always sees the new job.

use crate::env::Env;
use crate::settings::parse::flag_word;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

/// The drainer log rotates to `.1` beyond this size.
pub const LOG_MAX_BYTES: u64 = 1 << 20;

/// Is starting background drainers allowed? `STASH2PLEX_AUTODRAIN=0` (for
/// operators and tests) or the `auto_drain` setting turn it off.
pub fn enabled(auto_drain_setting: bool) -> bool {
    let env_off = std::env::var("STASH2PLEX_AUTODRAIN").is_ok_and(|v| flag_word(&v) == Some(false));
    auto_drain_setting && !env_off
}

/// A claimed start that no drainer took up within this long (it failed to
/// start) may be claimed again.
const START_CLAIM_MS: i64 = 10_000;

/// Start a background drainer unless one is running or starting. Returns
/// whether one was started.
pub fn ensure_drainer(env: &Env) -> Result<bool, String> {
    // Probe the lock without keeping it: held means a drainer is running.
    if super::lock::is_held(&env.data_dir)? {
        return Ok(false);
    }
    // Of many hooks at once, one starts the drainer; it clears the claim
    // when it holds the lock, so a later hook can start the next one.
    let now = env.now_ms();
    let mut queue = env.open_queue()?;
    if !queue.claim_drainer_start(now, now - START_CLAIM_MS).map_err(|e| format!("cannot start a drainer: {e}"))? {
        return Ok(false);
    }
    spawn(env).map(|()| true)
}

#[cfg(unix)]
pub fn spawn(env: &Env) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let log_path = env.data_dir.join("drainer.log");
    let mut cmd = Command::new(exe);
    cmd.arg("plugin")
        .arg("--log-file")
        .arg(&log_path)
        .arg("--plugin-id")
        .arg(&env.opts.plugin_id)
        .arg("--data-dir")
        .arg(&env.data_dir);
    if let Some(p) = &env.opts.policy_path {
        cmd.arg("--policy").arg(p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start a background drainer: {e}"))?;
    let input = json!({
        "server_connection": env.input.connection,
        "args": { "mode": "process_queue", "background": true },
    });
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(input.to_string().as_bytes())
    {
        let _ = child.kill();
        return Err(format!("cannot hand the connection to the background drainer: {e}"));
    }
    // The child is not waited for: it outlives this process.
    Ok(())
}

#[cfg(not(unix))]
pub fn spawn(_env: &Env) -> Result<(), String> {
    Err("background drainers are only supported on Unix; run the Process Queue task".into())
}
