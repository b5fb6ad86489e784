//! Stash's raw plugin protocol: what arrives on stdin (`input`), the one
//! JSON object answered on stdout (`answer`), and the log lines on stderr
//! (`log`).

pub mod answer;
pub mod input;
#[macro_use]
pub mod log;
