//! `stash2plex-lab`: the project's tooling. `demo` and `bench` run the real
//! `stash2plex` binary the way Stash does (one process per hook or task)
//! against the loopback fakes of Stash and Plex from the test kit, so the
//! plugin binary itself carries no test code. `package` builds the plugin
//! zip for every platform and its plugin source, and checks them against the
//! test kit's model of Stash's installer and loader.

mod bench;
mod demo;
mod durability;
mod package;
mod spawn;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "stash2plex-lab",
    version,
    about = "Try and measure stash2plex against simulated Stash and Plex servers"
)]
struct Cli {
    /// The stash2plex binary to run (default: the one built beside this
    /// program, built first if it is missing).
    #[arg(long, global = true)]
    plugin_bin: Option<PathBuf>,
    /// Run this policy component instead of the built-in one.
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync a simulated Stash library into a simulated Plex server with the
    /// real engine, and show what changed.
    Demo {
        /// How many scenes the simulated library has.
        #[arg(long, default_value_t = 12)]
        scenes: usize,
    },
    /// Measure hook start-up, policy load, requests per scene and drain
    /// speed, and print a report.
    Bench {
        /// Warm hook processes to time per trigger (after one warm-up).
        #[arg(long, default_value_t = 200)]
        spawns: usize,
        /// Scenes in the simulated library (the metadata budgets are set
        /// for 1,000).
        #[arg(long, default_value_t = 1000)]
        scenes: usize,
        /// Only the reconciliation bench, at this many scenes and Plex items
        /// (repeat for several sizes: `--reconcile 10000 --reconcile 100000`).
        #[arg(long)]
        reconcile: Vec<usize>,
        /// Only what `synchronous=FULL` costs a hook's commit, on the disk
        /// of this folder (default: the temp folder).
        #[arg(long)]
        durability: bool,
        /// The folder for `--durability` (put it on the disk Stash's plugin
        /// folder is on).
        #[arg(long, requires = "durability")]
        dir: Option<PathBuf>,
    },
    /// Internal: run the command after `--` with this program's stdin and
    /// print its answer and peak memory as JSON. The bench measures a hook's
    /// memory through this small process: a child started by the lab itself
    /// would report the lab's (large) resident set, which `exec` carries
    /// into the child's `ru_maxrss`.
    #[command(hide = true)]
    ChildRss {
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Build the plugin zip (static Linux x86_64 and arm64 binaries, a
    /// Windows x86_64 one, the plugin YAML, a launcher) and a plugin source
    /// index.yml, installing the cross toolchains it needs first.
    Package {
        /// Output folder (default: target/package).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Build only these targets (repeat the option; default: all three).
        /// The zip then only runs on those.
        #[arg(long = "target", value_enum)]
        targets: Vec<package::Target>,
        /// Fail with the install command instead of installing a missing
        /// rustup target, PyPI tool or Debian package.
        #[arg(long)]
        no_install: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    stash2plex::plugin::log::set_stash_format(false);
    let locate = || spawn::Plugin::locate(cli.plugin_bin.clone(), cli.policy.clone());
    let result = match cli.command {
        Command::Demo { scenes } => locate().and_then(|plugin| {
            stash2plex::plugin::log::set_min_level(stash2plex::plugin::log::Level::Warn);
            demo::run(&plugin, scenes.clamp(1, 5000))
        }),
        Command::Bench { durability: true, dir, .. } => durability::run(dir.as_deref()),
        Command::Bench { spawns, scenes, reconcile, .. } => locate().and_then(|plugin| {
            stash2plex::plugin::log::set_min_level(stash2plex::plugin::log::Level::Error);
            if reconcile.is_empty() {
                bench::run(&plugin, bench::BenchArgs { spawns, scenes })
            } else {
                reconcile.iter().try_for_each(|n| bench::reconcile(&plugin, *n))
            }
        }),
        Command::ChildRss { command } => spawn::child_rss(&command),
        Command::Package { out, targets, no_install } => {
            package::run(package::Options { out, targets, install: !no_install }).map_err(|e| format!("package: {e}"))
        }
    };
    if let Err(e) = result {
        eprintln!("stash2plex-lab: {e}");
        std::process::exit(1);
    }
}
