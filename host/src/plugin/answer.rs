//! Plugin-mode input and output: read Stash's stdin, and answer with exactly
//! one JSON object on stdout (`{"output": ...}` or `{"error": ...}`). Writes
//! never panic on a closed pipe.

use serde_json::{Value, json};
use std::io::{Read, Write};

/// Stash sends a few KiB; anything beyond this is not a plugin input.
const MAX_STDIN: u64 = 16 << 20;

pub fn read_stdin() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("could not read stdin: {e}"))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(format!("stdin is larger than {} MiB; this is not a Stash plugin input", MAX_STDIN >> 20));
    }
    Ok(buf)
}

/// What one invocation answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Output(Value),
    Error(String),
}

impl Answer {
    pub fn ok(text: impl Into<String>) -> Answer {
        Answer::Output(Value::String(text.into()))
    }

    pub fn to_json(&self) -> String {
        let v = match self {
            Answer::Output(o) => json!({ "output": o }),
            Answer::Error(e) => json!({ "error": e }),
        };
        // Whatever the answer holds (a task's report, a policy's text), no
        // secret leaves on stdout; the serialized form is scrubbed, so
        // JSON-escaped forms are caught too.
        crate::plugin::log::scrub(&v.to_string())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Answer::Output(_) => 0,
            Answer::Error(_) => 1,
        }
    }
}

pub fn write_answer(answer: &Answer) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(answer.to_json().as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_single_json_objects() {
        let v: Value = serde_json::from_str(&Answer::ok("done").to_json()).unwrap();
        assert_eq!(v, json!({"output":"done"}));
        let v: Value = serde_json::from_str(&Answer::Error("bad \"x\"".into()).to_json()).unwrap();
        assert_eq!(v, json!({"error":"bad \"x\""}));
        assert_eq!(Answer::Error(String::new()).exit_code(), 1);
    }

    #[test]
    fn answers_are_scrubbed_of_secrets_in_every_form() {
        crate::plugin::log::register_secret("answer-secret-42\"x");
        let out =
            Answer::ok("Plex said: GET /x?X-Plex-Token=answer-secret-42%22x failed; raw answer-secret-42\"x").to_json();
        assert!(!out.contains("answer-secret-42"), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["output"], "Plex said: GET /x?X-Plex-Token=**** failed; raw ****");
        let err = Answer::Error("token answer-secret-42\"x".into()).to_json();
        assert!(!err.contains("answer-secret-42"), "{err}");
    }
}
