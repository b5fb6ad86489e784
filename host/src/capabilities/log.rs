//! `log`: the policy's lines, prefixed with its name, into the host's log
//! (scrubbed of secrets like every other line), and path obfuscation.

use crate::obfuscate::Obfuscator;
use crate::plugin::log::{self as host_log, Level};
use crate::runtime::wit::log;

#[derive(Default)]
pub struct LogCap {
    pub obfuscator: Obfuscator,
    /// Shown before every policy log line.
    pub prefix: String,
    /// The last panic message the policy logged (its panic hook writes one
    /// before it traps), so the trap can be reported with it.
    guest_panic: Option<String>,
}

impl LogCap {
    pub fn take_guest_panic(&mut self) -> Option<String> {
        self.guest_panic.take()
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
        host_log::log(level, &format!("{}{}", self.prefix, message));
        Ok(())
    }

    fn obfuscate_path(&mut self, path: String) -> wasmtime::Result<String> {
        Ok(self.obfuscator.path(&path))
    }
}
