//! `log`: the policy's lines, prefixed with what the host knows the policy
//! to be, into the host's log (scrubbed of secrets, control characters
//! escaped, like every other line), at most [`MAX_LINES_PER_CALL`] lines
//! and [`MAX_BYTES_PER_CALL`] bytes per call into the policy; and path
//! obfuscation.

use crate::obfuscate::Obfuscator;
use crate::plugin::log::{self as host_log, Level};
use crate::runtime::wit::log;

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
}

impl LogCap {
    pub fn take_guest_panic(&mut self) -> Option<String> {
        self.guest_panic.take()
    }

    /// A call into the policy starts.
    pub fn begin_call(&mut self) {
        self.lines = 0;
        self.bytes = 0;
        self.dropped = 0;
    }

    /// A call into the policy ended: say how many lines were not shown.
    pub fn end_call(&mut self) {
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
        if !host_log::enabled(level) {
            return Ok(());
        }
        if self.lines >= MAX_LINES_PER_CALL || self.bytes >= MAX_BYTES_PER_CALL {
            self.dropped += 1;
            return Ok(());
        }
        self.lines += 1;
        self.bytes += message.len().min(host_log::MAX_LINE_BYTES);
        host_log::log(level, &format!("{}{}", self.prefix, message));
        Ok(())
    }

    fn obfuscate_path(&mut self, path: String) -> wasmtime::Result<String> {
        Ok(self.obfuscator.path(&path))
    }
}
