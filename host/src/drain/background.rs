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
//! Races, and why every recorded change is drained without anyone pressing
//! a button, by one drainer at a time:
//!
//! - A hook commits its change before it checks the lock; every drain
//!   (a background drainer or a Stash task) looks at the queue again after
//!   it lets go of the lock and drains again if something came meanwhile
//!   (`rules::Left::late`). So a hook that saw the lock held is covered by
//!   the holder.
//! - Checking the lock takes it for a moment, so a starting drainer may
//!   find it held by a hook: it tries again for a few seconds
//!   (`drain::process`). One that still finds it held leaves the queue to
//!   the drainer holding it, and frees the start claim before its last try,
//!   so that a later hook is not kept from starting the next drainer by a
//!   claim nobody takes up.

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

/// Start this program again as a background Process Queue, detached from
/// Stash: stdout and stderr go nowhere (Stash reads our stdout until EOF, so
/// a drainer holding it would keep the hook "running"), stdin carries Stash's
/// connection, and the drainer gets its own process group so that nothing
/// aimed at the hook (a Stash shutdown, a console Ctrl+C) reaches it.
pub fn spawn(env: &Env) -> Result<(), String> {
    let exe = this_program()?;
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
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    platform::detach(&mut cmd)?;
    let mut child = cmd.spawn().map_err(|e| format!("cannot start a background drainer: {e}"))?;
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

/// The file this process runs from. `current_exe` reads `/proc/self/exe` on
/// Linux, which a chroot or a container without /proc lacks; Stash starts us
/// by a path (the plugin folder joined with `exec[0]`, or our launcher's
/// `exec` of the binary for this machine), so `argv[0]` is the fallback.
pub fn this_program() -> Result<std::path::PathBuf, String> {
    let current = std::env::current_exe();
    if let Ok(p) = &current
        && p.is_file()
    {
        return Ok(p.clone());
    }
    let arg0 = std::env::args_os().next().map(std::path::PathBuf::from);
    match arg0 {
        Some(p) if p.components().count() > 1 && p.is_file() => Ok(p),
        _ => Err(match current {
            Err(e) => format!("cannot find this program to start a drainer: {e}"),
            Ok(p) => format!("cannot find this program to start a drainer: {} is gone", p.display()),
        }),
    }
}

#[cfg(unix)]
mod platform {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Its own process group (no session change: the drainer keeps no
    /// terminal anyway, its stdio is /dev/null and a pipe).
    pub fn detach(cmd: &mut Command) -> Result<(), String> {
        cmd.process_group(0);
        Ok(())
    }
}

#[cfg(windows)]
mod platform {
    use std::os::windows::process::CommandExt;
    use std::process::Command;
    use windows_sys::Win32::Foundation::{HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation};
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE};
    use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};

    /// `DETACHED_PROCESS`: no console at all, so no window ever opens (and
    /// `CREATE_NO_WINDOW` would be ignored beside it); closing Stash's
    /// console does not end the drainer. `CREATE_NEW_PROCESS_GROUP`: a
    /// Ctrl+C or Ctrl+Break sent to the hook's group does not reach it.
    ///
    /// Windows children inherit every *inheritable* handle of the parent,
    /// not only the three they are given. Our stdin/stdout/stderr are the
    /// pipes Stash made inheritable for us; were the drainer to inherit them,
    /// Stash would wait for the drainer's exit before the hook counts as
    /// done. So they are made non-inheritable first (this process keeps
    /// using them; only inheritance changes).
    pub fn detach(cmd: &mut Command) -> Result<(), String> {
        for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
            // SAFETY: GetStdHandle has no preconditions; SetHandleInformation
            // is given a handle of this process (or skipped), and only its
            // inherit flag changes.
            unsafe {
                let handle: HANDLE = GetStdHandle(which);
                if handle.is_null() || handle == INVALID_HANDLE_VALUE {
                    continue;
                }
                // A console handle or a closed one may refuse; only pipes and
                // files matter here, so a refusal is not an error.
                SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0);
            }
        }
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
        Ok(())
    }
}

#[cfg(not(any(unix, windows)))]
mod platform {
    pub fn detach(_cmd: &mut std::process::Command) -> Result<(), String> {
        Err("background drainers need Unix or Windows here; run the Process Queue task".into())
    }
}
