//! Log lines for users, in Stash's plugin log protocol.
//!
//! Stash reads a plugin's stderr line by line: `\x01`, a level letter,
//! `\x02`, then the message sets the level (`t d i w e`), `p` carries task progress as a
//! fraction 0.0–1.0. Lines over 64 KiB stop Stash's reader, so messages are
//! capped. Writes are fallible: a closed stderr must never panic the plugin.
//! Outside Stash (a terminal), plain `LEVEL message` lines are easier to read.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Stash drops lines over 64 KiB; stay well below, counting the prefix.
const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

impl Level {
    fn letter(self) -> char {
        match self {
            Level::Trace => 't',
            Level::Debug => 'd',
            Level::Info => 'i',
            Level::Warn => 'w',
            Level::Error => 'e',
        }
    }
    fn word(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO ",
            Level::Warn => "WARN ",
            Level::Error => "ERROR",
        }
    }
}

static STASH_FORMAT: AtomicBool = AtomicBool::new(true);
static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Debug as u8);
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Use Stash's `\x01l\x02` framing (plugin mode) or plain lines (CLI).
pub fn set_stash_format(on: bool) {
    STASH_FORMAT.store(on, Ordering::Relaxed);
}

pub fn set_min_level(level: Level) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Register a value that must never appear in a log line (the Plex token, the
/// Stash cookie and API key). Every line is scrubbed before it is written.
pub fn register_secret(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    if let Ok(mut s) = SECRETS.lock()
        && !s.iter().any(|x| x == secret)
    {
        s.push(secret.to_string());
    }
}

/// Replace every registered secret in `text` with `****`.
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(secrets) = SECRETS.lock() {
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "****");
            }
        }
    }
    out
}

fn frame(level_letter: char, plain_word: &str, message: &str) -> String {
    let mut msg = scrub(message);
    if msg.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push_str(" … (truncated)");
    }
    // One record per line: embedded newlines would become unprefixed lines.
    let msg = msg.replace(['\r', '\n'], " ");
    if STASH_FORMAT.load(Ordering::Relaxed) {
        format!("\x01{level_letter}\x02{msg}\n")
    } else {
        format!("{plain_word} {msg}\n")
    }
}

pub fn log(level: Level, message: &str) {
    if (level as u8) < MIN_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let line = frame(level.letter(), level.word(), message);
    // A closed or full stderr is not worth dying for.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Task progress, clamped to 0.0–1.0. Only meaningful in Stash format.
pub fn progress(fraction: f64) {
    if !STASH_FORMAT.load(Ordering::Relaxed) {
        return;
    }
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let _ = std::io::stderr().lock().write_all(format!("\x01p\x02{f:.3}\n").as_bytes());
}

#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::stash_log::log($crate::stash_log::Level::Info, &format!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::stash_log::log($crate::stash_log::Level::Warn, &format!($($t)*)) } }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::stash_log::log($crate::stash_log::Level::Error, &format!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::stash_log::log($crate::stash_log::Level::Debug, &format!($($t)*)) } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_stash_prefix_and_one_line() {
        set_stash_format(true);
        let line = frame('i', "INFO", "two\nlines");
        assert_eq!(line, "\x01i\x02two lines\n");
    }

    #[test]
    fn secrets_are_scrubbed() {
        register_secret("tok-123456789");
        assert_eq!(scrub("X-Plex-Token=tok-123456789&a=1"), "X-Plex-Token=****&a=1");
    }

    #[test]
    fn long_lines_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let line = frame('w', "WARN", &long);
        assert!(line.len() < MAX_LINE_BYTES + 64);
        assert!(line.contains("(truncated)"));
    }
}
