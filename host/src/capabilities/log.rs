//! `log`: the policy's lines, prefixed with what the host knows the policy
//! to be, into the host's log (scrubbed of secrets, control characters
//! escaped, like every other line), at most [`MAX_LINES_PER_CALL`] lines
//! and [`MAX_BYTES_PER_CALL`] bytes per call into the policy; and path
//! obfuscation.

use super::wasi::Stdio;
use crate::obfuscate::Obfuscator;
use crate::plugin::log::{self as host_log, Level};
use crate::runtime::wit::{log, progress};

pub const MAX_LINES_PER_CALL: u32 = 1_000;
pub const MAX_BYTES_PER_CALL: usize = 1 << 20;

#[derive(Default)]
pub struct LogCap {
    pub obfuscator: Obfuscator,
    /// Shown before every policy log line.
    pub prefix: String,
    /// The last panic message the policy logged (its panic hook writes one
    /// before it traps), so the trap can be reported with it.
    guest_panic: Option<String>,
    lines: u32,
    bytes: usize,
    dropped: u32,
    /// WASI stdout/stderr of the instance, and how much of each was shown.
    stdio: Option<(Stdio, usize, usize)>,
    /// The last progress shown (thousandths), once the policy reported any.
    progress: Option<i64>,
}

impl LogCap {
    /// The policy reports the task's progress itself (a reconciliation),
    /// so the drain does not report its own.
    pub fn reports_progress(&self) -> bool {
        self.progress.is_some()
    }

    pub fn take_guest_panic(&mut self) -> Option<String> {
        self.guest_panic.take()
    }

    /// A call into the policy starts.
    pub fn begin_call(&mut self) {
        self.lines = 0;
        self.bytes = 0;
        self.dropped = 0;
    }

    /// The stdout/stderr pipes of a new instance.
    pub fn attach_stdio(&mut self, stdio: Stdio) {
        self.flush_stdio(true);
        self.stdio = Some((stdio, 0, 0));
    }

    /// Show what the policy wrote to stdout (info) and stderr (warnings)
    /// since the last time, as whole lines (`all`: the rest too).
    fn flush_stdio(&mut self, all: bool) {
        let Some((stdio, out_seen, err_seen)) = self.stdio.take() else { return };
        let mut seen = [out_seen, err_seen];
        for (i, (pipe, level, name)) in
            [(&stdio.stdout, Level::Info, "stdout"), (&stdio.stderr, Level::Warn, "stderr")].into_iter().enumerate()
        {
            let bytes = pipe.contents();
            let fresh = bytes.get(seen[i]..).unwrap_or_default();
            let end = if all { fresh.len() } else { fresh.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) };
            for line in String::from_utf8_lossy(&fresh[..end]).lines().filter(|l| !l.trim().is_empty()) {
                self.line(level, &format!("({name}) {line}"));
            }
            seen[i] += end;
        }
        self.stdio = Some((stdio, seen[0], seen[1]));
    }

    /// One line of the policy's, within the per-call bounds.
    fn line(&mut self, level: Level, message: &str) {
        if !host_log::enabled(level) {
            return;
        }
        if self.lines >= MAX_LINES_PER_CALL || self.bytes >= MAX_BYTES_PER_CALL {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.bytes += message.len().min(host_log::MAX_LINE_BYTES);
        host_log::log(level, &format!("{}{}", self.prefix, message));
    }

    /// A call into the policy ended: say how many lines were not shown.
    pub fn end_call(&mut self) {
        self.flush_stdio(false);
        if self.dropped > 0 {
            host_log::log(
                Level::Warn,
                &format!(
                    "{}{} more log line(s) of this call were not shown (at most {MAX_LINES_PER_CALL} lines or {} KiB per call)",
                    self.prefix,
                    self.dropped,
                    MAX_BYTES_PER_CALL >> 10
                ),
            );
            self.dropped = 0;
        }
    }
}

impl log::Host for LogCap {
    fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        if level == Level::Error && message.contains("panicked at") {
            self.guest_panic = Some(message.chars().take(500).collect());
        }
        self.line(level, &message);
        Ok(())
    }

    fn obfuscate_path(&mut self, path: String) -> wasmtime::Result<String> {
        Ok(self.obfuscator.path(&path))
    }
}

impl progress::Host for LogCap {
    fn report(&mut self, fraction: f64) -> wasmtime::Result<()> {
        if !fraction.is_finite() {
            return Ok(());
        }
        // A line only when the bar moves, within the call's line budget.
        let shown = (fraction.clamp(0.0, 1.0) * 1000.0).round() as i64;
        if self.progress != Some(shown) && self.lines < MAX_LINES_PER_CALL {
            self.lines += 1;
            self.progress = Some(shown);
            host_log::progress(fraction);
        }
        Ok(())
    }
}
