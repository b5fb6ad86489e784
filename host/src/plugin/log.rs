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
pub const MAX_LINE_BYTES: usize = 16 * 1024;

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
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);
static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Debug as u8);
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Use Stash's `\x01l\x02` framing (plugin mode) or plain lines (CLI).
pub fn set_stash_format(on: bool) {
    STASH_FORMAT.store(on, Ordering::Relaxed);
}

/// Prefix plain lines with the UTC time (log files).
pub fn set_timestamps(on: bool) {
    TIMESTAMPS.store(on, Ordering::Relaxed);
}

pub fn set_min_level(level: Level) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Show only lines of `level` and above until the guard is dropped (the
/// chatter of admission's sandbox runs stays out of the user's log).
pub fn quieter(level: Level) -> impl Drop {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            MIN_LEVEL.store(self.0, Ordering::Relaxed);
        }
    }
    let before = MIN_LEVEL.fetch_max(level as u8, Ordering::Relaxed);
    Restore(before)
}

/// Register a value that must never appear in a log line or an answer (the
/// Plex token, the Stash cookie and API key), in the forms it can take on
/// the way: as is, percent-encoded (in a URL) and JSON-escaped. Every line
/// and every answer is scrubbed before it is written.
pub fn register_secret(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    // Percent-encoded as this host encodes query values, and with every
    // punctuation character escaped (as stricter encoders do).
    let encoded = crate::net::http::encode_component(secret);
    let strict = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_string();
    if let Ok(mut s) = SECRETS.lock() {
        for form in [secret.to_string(), encoded, strict, json] {
            if form.len() >= 4 && !s.contains(&form) {
                s.push(form);
            }
        }
        // Longest first, so a form that contains another is replaced whole.
        s.sort_by_key(|f| std::cmp::Reverse(f.len()));
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
    let msg = escape_controls(&msg);
    if STASH_FORMAT.load(Ordering::Relaxed) {
        format!("\x01{level_letter}\x02{msg}\n")
    } else if TIMESTAMPS.load(Ordering::Relaxed) {
        format!("{} {plain_word} {msg}\n", utc_now())
    } else {
        format!("{plain_word} {msg}\n")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for the current time.
fn utc_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// One record per line, and nothing a terminal or Stash's log reader would
/// act on: line breaks become spaces, other control characters (ESC, the
/// `\x01`/`\x02` of Stash's framing, ...) become visible `\xNN` text.
fn escape_controls(msg: &str) -> String {
    if !msg.chars().any(char::is_control) {
        return msg.to_string();
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A log file that rotates itself (the background drainer's log).
struct LogFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    written: u64,
    max_bytes: u64,
}

static LOG_FILE: Mutex<Option<LogFile>> = Mutex::new(None);

/// Send log lines to `path` (appending) instead of stderr. When the file
/// passes `max_bytes` it is renamed to `<path>.1` (replacing the previous
/// one) and a new file is started, so a long drain never fills the disk.
pub fn log_to_file(path: &std::path::Path, max_bytes: u64) -> std::io::Result<()> {
    let file = crate::files::open_append(path)?;
    let written = file.metadata().map(|m| m.len()).unwrap_or(0);
    if let Ok(mut slot) = LOG_FILE.lock() {
        *slot = Some(LogFile { path: path.to_path_buf(), file, written, max_bytes });
    }
    Ok(())
}

fn rotated(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    std::path::PathBuf::from(name)
}

fn write_line(line: &str) {
    if let Ok(mut slot) = LOG_FILE.lock()
        && let Some(log) = slot.as_mut()
    {
        if log.written + line.len() as u64 > log.max_bytes
            && std::fs::rename(&log.path, rotated(&log.path)).is_ok()
            && let Ok(f) = crate::files::open_append(&log.path)
        {
            log.file = f;
            log.written = 0;
        }
        if log.file.write_all(line.as_bytes()).is_ok() {
            log.written += line.len() as u64;
            return;
        }
    }
    // A closed or full stderr is not worth dying for.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Would a line at `level` be written?
pub fn enabled(level: Level) -> bool {
    (level as u8) >= MIN_LEVEL.load(Ordering::Relaxed)
}

pub fn log(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    write_line(&frame(level.letter(), level.word(), message));
}

/// The part of the task's progress bar the current phase fills (a Sync All
/// queues, then drains): `progress` maps 0.0–1.0 into it.
static PROGRESS_SPAN: std::sync::Mutex<(f64, f64)> = std::sync::Mutex::new((0.0, 1.0));

/// Let the next phase fill `from`..`to` of the task's progress bar.
pub fn progress_span(from: f64, to: f64) {
    if let Ok(mut span) = PROGRESS_SPAN.lock() {
        *span = (from.clamp(0.0, 1.0), to.clamp(0.0, 1.0));
    }
}

/// Task progress, clamped to 0.0–1.0. Only meaningful in Stash format.
pub fn progress(fraction: f64) {
    if !STASH_FORMAT.load(Ordering::Relaxed) {
        return;
    }
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let (from, to) = PROGRESS_SPAN.lock().map(|s| *s).unwrap_or((0.0, 1.0));
    let f = from + f * (to - from);
    let _ = std::io::stderr().lock().write_all(format!("\x01p\x02{f:.3}\n").as_bytes());
}

#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::plugin::log::log($crate::plugin::log::Level::Info, &format!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::plugin::log::log($crate::plugin::log::Level::Warn, &format!($($t)*)) } }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::plugin::log::log($crate::plugin::log::Level::Error, &format!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::plugin::log::log($crate::plugin::log::Level::Debug, &format!($($t)*)) } }

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
    fn control_characters_cannot_forge_frames_or_drive_a_terminal() {
        set_stash_format(true);
        let line = frame('i', "INFO", "a\x1b[2Jb\x01e\x02forged\u{9b}c");
        assert_eq!(line, "\x01i\x02a\\x1b[2Jb\\x01e\\x02forged\\x9bc\n");
    }

    #[test]
    fn utc_timestamps() {
        let t = utc_now();
        assert_eq!(t.len(), "2026-01-01T00:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn secrets_are_scrubbed_in_every_form() {
        register_secret("tok-123456789");
        assert_eq!(scrub("X-Plex-Token=tok-123456789&a=1"), "X-Plex-Token=****&a=1");
        register_secret("p@ss w/\"q\"+1");
        assert_eq!(scrub("url ?x=p%40ss%20w%2F%22q%22%2B1 end"), "url ?x=**** end");
        assert_eq!(scrub(r#"{"k":"p@ss w/\"q\"+1"}"#), r#"{"k":"****"}"#);
        assert_eq!(scrub("raw p@ss w/\"q\"+1"), "raw ****");
    }

    #[test]
    fn a_log_file_rotates_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drainer.log");
        log_to_file(&path, 200).unwrap();
        for i in 0..40 {
            write_line(&format!("line {i:03} with some padding to make it longer\n"));
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(current <= 200 && old <= 200, "{current} {old}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("line 039"), "the newest line is in the current file");
        if let Ok(mut slot) = LOG_FILE.lock() {
            *slot = None;
        }
    }

    #[test]
    fn long_lines_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let line = frame('w', "WARN", &long);
        assert!(line.len() < MAX_LINE_BYTES + 64);
        assert!(line.contains("(truncated)"));
    }
}
