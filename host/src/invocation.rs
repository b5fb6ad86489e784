//! One plugin invocation, from Stash's stdin to the answer: parse the
//! input, find the data directory, and dispatch to the hook path or a task.

use crate::env::{Env, Options, resolve_data_dir};
use crate::plugin::answer::Answer;
use crate::plugin::input::{self, Invocation};
use crate::{files, hook, tasks};

/// Run one plugin invocation on `raw` stdin bytes.
pub fn run_plugin(raw: &[u8], opts: Options) -> Answer {
    let input = match input::parse(raw) {
        Ok(i) => i,
        Err(e) => return Answer::Error(e.to_string()),
    };
    let data_dir = match resolve_data_dir(&opts, &input) {
        Ok(d) => d,
        Err(e) => return Answer::Error(e),
    };
    if let Err(e) = files::private_dir(&data_dir) {
        return Answer::Error(e);
    }
    let env = Env::new(opts, input, data_dir);
    match env.input.invocation.clone() {
        Invocation::Hook(ctx) => hook::run(&env, &ctx),
        Invocation::Task { mode, args } => tasks::run(&env, mode.as_deref(), &args),
    }
}
