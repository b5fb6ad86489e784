//! `stash2plex`: the native host. Stash runs it once per hook and once per
//! task (raw plugin interface); it also has a command for people.

use stash2plex::env::{DEFAULT_PLUGIN_ID, Options};
use stash2plex::plugin::{answer, log};
use stash2plex::{clock, drain, invocation, store, tasks};

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "stash2plex", version, about = "Keeps Plex in step with Stash (a Stash plugin)")]
struct Cli {
    /// The plugin folder (Stash also sends it on stdin).
    #[arg(long, global = true)]
    plugin_dir: Option<PathBuf>,
    /// Where the queue and caches live (default: <plugin folder>/data, or $STASH_PLUGIN_DATA).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The plugin id Stash knows this plugin by (the YAML file's name).
    #[arg(long, global = true, default_value = DEFAULT_PLUGIN_ID)]
    plugin_id: String,
    /// Run this policy component instead of the built-in one.
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// Write plain, timestamped log lines to this file (rotated at 1 MiB)
    /// instead of Stash's log framing on stderr (the background drainer).
    #[arg(long, global = true, hide = true)]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Plugin mode (the default): read Stash's JSON on stdin, answer on stdout.
    Plugin,
    /// Show the queue in a data directory.
    Status,
    /// For policy authors: check a policy component, or try it on a scene.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The admission report: size, imports, world version, and the
    /// conformance vectors with the fuel and memory each used; exits 1 if
    /// the host would refuse the component.
    Check { file: PathBuf },
    /// The Plex requests the policy would make for a scene, against a
    /// recorded Plex (nothing is written to any Plex).
    Run {
        file: PathBuf,
        /// The scene: Stash's `findScene` JSON (or the contract's scene record).
        #[arg(long)]
        scene: PathBuf,
        /// A recorded Plex (see docs/policy-authors.md); default: the
        /// recording the conformance vectors use.
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// A policy setting, `key=value` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

fn main() {
    stash2plex::restrict_new_files();
    let cli = Cli::parse();
    let opts = Options {
        plugin_id: cli.plugin_id.clone(),
        data_dir: cli.data_dir.clone(),
        plugin_dir: cli.plugin_dir.clone(),
        policy_path: cli.policy.clone(),
        ..Options::default()
    };
    let code = match cli.command {
        None | Some(Command::Plugin) => plugin_mode(opts, cli.log_file.as_deref()),
        Some(Command::Status) => {
            log::set_stash_format(false);
            status(opts)
        }
        Some(Command::Policy { command }) => {
            log::set_stash_format(false);
            // The report is on stdout; the sandbox's own lines only when they matter.
            log::set_min_level(if matches!(command, PolicyCommand::Check { .. }) {
                log::Level::Warn
            } else {
                log::Level::Info
            });
            policy_command(command)
        }
    };
    std::process::exit(code);
}

fn plugin_mode(opts: Options, log_file: Option<&std::path::Path>) -> i32 {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!(
            "stash2plex is run by Stash as a plugin: it reads Stash's JSON on stdin.\n\
             To try it without Stash, run `cargo run --release -p stash2plex-lab -- demo` in its source tree;\n\
             see `stash2plex --help` for more."
        );
        return 2;
    }
    let to_file = log_file.is_some_and(|path| {
        log::log_to_file(path, drain::background::LOG_MAX_BYTES)
            .inspect_err(|e| eprintln!("cannot write the log file {}: {e}", path.display()))
            .is_ok()
    });
    log::set_stash_format(!to_file);
    log::set_timestamps(to_file);
    let answer = match answer::read_stdin() {
        Ok(raw) => invocation::run_plugin(&raw, opts),
        Err(e) => answer::Answer::Error(e),
    };
    if let answer::Answer::Error(e) = &answer {
        stash2plex::error!("{e}");
    }
    answer::write_answer(&answer);
    answer.exit_code()
}

fn policy_command(command: PolicyCommand) -> i32 {
    use stash2plex::authoring;
    let result = match command {
        PolicyCommand::Check { file } => authoring::check(&file).map(|(text, passed)| {
            print!("{text}");
            if passed { 0 } else { 1 }
        }),
        PolicyCommand::Run { file, scene, fixture, settings } => (|| {
            let scene = std::fs::read_to_string(&scene).map_err(|e| format!("{}: {e}", scene.display()))?;
            let fixture = match fixture {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?),
                None => None,
            };
            let mut map = serde_json::Map::new();
            for kv in &settings {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv:?}: expected key=value"))?;
                map.insert(k.trim().to_string(), serde_json::Value::String(v.to_string()));
            }
            authoring::run(&file, &scene, fixture.as_deref(), &map).map(|text| {
                print!("{text}");
                0
            })
        })(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("stash2plex policy: {e}");
        2
    })
}

fn status(opts: Options) -> i32 {
    let Some(dir) = opts.data_dir.clone().or_else(|| opts.plugin_dir.as_ref().map(|d| d.join("data"))) else {
        eprintln!("stash2plex status: pass --data-dir (or --plugin-dir)");
        return 2;
    };
    let db = dir.join("queue.db");
    if !db.is_file() {
        eprintln!("stash2plex status: no queue at {} (nothing recorded yet, or a different data folder)", db.display());
        return 1;
    }
    let queue = match store::Queue::open(&db) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("stash2plex status: {e}");
            return 1;
        }
    };
    match tasks::status_report(&queue, clock::Clock::now_ms(&clock::SystemClock)) {
        Ok(r) => {
            print!("{r}");
            0
        }
        Err(e) => {
            eprintln!("stash2plex status: {e}");
            1
        }
    }
}
