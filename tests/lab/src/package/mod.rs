//! `stash2plex-lab package`: the plugin zip for every platform Stash runs
//! on, and a plugin source (`index.yml`) naming it.
//!
//! One zip serves all platforms because Stash has one index entry per
//! plugin and runs `exec[0]` (`stash2plex`) from the plugin folder, with
//! no `{pluginDir}` substitution there:
//!
//! ```text
//! Stash2Plex.yml                  exec: [stash2plex, plugin, --plugin-dir, "{pluginDir}"]
//! stash2plex                      0755  POSIX sh launcher: `uname` -> exec bin/linux-<arch>/stash2plex
//! stash2plex.exe                        Windows: Go's exec finds it for the bare name `stash2plex`
//! bin/linux-x86_64/stash2plex     0755  static x86_64-unknown-linux-musl
//! bin/linux-aarch64/stash2plex    0755  static aarch64-unknown-linux-musl
//! ```
//!
//! The zip records Unix modes (Stash's installer creates each file with the
//! mode stored in the zip) and every entry carries the source date, so the
//! same commit gives the same zip. After writing, the result is checked the
//! way Stash will use it: the index's sha256 against the zip, the entries
//! and modes, an install into a scratch plugins folder, the strict load of
//! every `.yml` there, and the command Stash would run on each OS.

mod binary;
mod toolchain;

use stash2plex_testkit::stash_plugins::{self, IndexEntry, Os};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use zip::write::SimpleFileOptions;

pub const PLUGIN_ID: &str = stash2plex::env::DEFAULT_PLUGIN_ID;
pub const ZIP_NAME: &str = "Stash2Plex.zip";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    #[value(name = "x86_64-unknown-linux-musl")]
    LinuxX86_64,
    #[value(name = "aarch64-unknown-linux-musl")]
    LinuxAarch64,
    #[value(name = "x86_64-pc-windows-gnu")]
    WindowsX86_64,
}

pub const ALL_TARGETS: [Target; 3] = [Target::LinuxX86_64, Target::LinuxAarch64, Target::WindowsX86_64];

impl Target {
    pub fn triple(self) -> &'static str {
        match self {
            Target::LinuxX86_64 => "x86_64-unknown-linux-musl",
            Target::LinuxAarch64 => "aarch64-unknown-linux-musl",
            Target::WindowsX86_64 => "x86_64-pc-windows-gnu",
        }
    }

    /// Where the binary sits in the plugin folder (and the zip).
    pub fn zip_path(self) -> &'static str {
        match self {
            Target::LinuxX86_64 => "bin/linux-x86_64/stash2plex",
            Target::LinuxAarch64 => "bin/linux-aarch64/stash2plex",
            Target::WindowsX86_64 => "stash2plex.exe",
        }
    }

    fn uses_zig(self) -> bool {
        matches!(self, Target::LinuxX86_64 | Target::LinuxAarch64)
    }

    fn file_name(self) -> &'static str {
        if self == Target::WindowsX86_64 { "stash2plex.exe" } else { "stash2plex" }
    }
}

pub struct Options {
    pub out: Option<PathBuf>,
    pub targets: Vec<Target>,
    pub install: bool,
}

/// The workspace this program was built from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

pub fn run(opts: Options) -> Result<(), String> {
    let root = workspace_root().canonicalize().map_err(|e| format!("cannot find the source tree: {e}"))?;
    let target_dir = target_dir(&root);
    let out = opts.out.clone().unwrap_or_else(|| target_dir.join("package"));
    let mut targets = if opts.targets.is_empty() { ALL_TARGETS.to_vec() } else { opts.targets.clone() };
    targets.sort_by_key(|t| ALL_TARGETS.iter().position(|a| a == t));
    targets.dedup();

    let tools = toolchain::ensure(&targets, &target_dir, opts.install)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut binaries = Vec::new();
    for &t in &targets {
        eprintln!("stash2plex-lab package: building {}", t.triple());
        let mut cmd = tools.build_command(t, &cargo)?;
        cmd.current_dir(&root);
        let status = cmd.status().map_err(|e| format!("cannot start the build for {}: {e}", t.triple()))?;
        if !status.success() {
            return Err(format!("building stash2plex for {} failed ({status})", t.triple()));
        }
        let path = target_dir.join(t.triple()).join("release").join(t.file_name());
        binary::check(&path, t)?;
        binaries.push((t, path));
    }

    let source = Source::of(&root)?;
    let files = stage(&root, &binaries)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let zip_path = out.join(ZIP_NAME);
    write_zip(&zip_path, &files, &source)?;
    let zip_bytes = std::fs::read(&zip_path).map_err(|e| format!("cannot read {}: {e}", zip_path.display()))?;
    let entry = IndexEntry {
        id: PLUGIN_ID.into(),
        name: PLUGIN_ID.into(),
        version: source.version.clone(),
        date: source.date.clone(),
        path: ZIP_NAME.into(),
        sha256: stash2plex_testkit::stash_plugins::sha256_hex(&zip_bytes),
        requires: vec![],
        metadata: Default::default(),
    };
    let index_path = out.join("index.yml");
    write_index(&index_path, &entry)?;
    let checked = verify(&out, &targets)?;

    println!("stash2plex plugin package {} ({})", entry.version, entry.date);
    for (t, path) in &binaries {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!("  {:<28} {:>12} bytes  {}", t.triple(), size, t.zip_path());
    }
    println!("  {:<28} {:>12} bytes  sha256 {}", zip_path.display(), zip_bytes.len(), entry.sha256);
    println!(
        "  {:<28} (plugin source: add its URL or path in Settings -> Plugins -> Available Plugins)",
        index_path.display()
    );
    println!("  checked: {checked}");
    if targets.len() < ALL_TARGETS.len() {
        println!("  partial package: only {}", targets.iter().map(|t| t.triple()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

/// The version and date of what is packaged: the YAML's version plus the
/// commit (as Stash's CommunityScripts index does), and the commit's time
/// (so Stash's "newer" test, which compares dates, follows the history).
/// Uncommitted changes are marked and dated now.
struct Source {
    version: String,
    date: String,
    /// For the zip entries' timestamps.
    time: std::time::SystemTime,
}

impl Source {
    fn of(root: &Path) -> Result<Source, String> {
        let yml = std::fs::read_to_string(root.join("host/plugin/Stash2Plex.yml"))
            .map_err(|e| format!("cannot read host/plugin/Stash2Plex.yml: {e}"))?;
        let config = stash_plugins::parse_plugin_yaml(&yml)?;
        let yml_version = config.version.ok_or("host/plugin/Stash2Plex.yml has no version")?;
        let crate_version = env!("CARGO_PKG_VERSION");
        if yml_version != crate_version {
            return Err(format!(
                "host/plugin/Stash2Plex.yml says version {yml_version} but the crates are {crate_version}; make them agree"
            ));
        }
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let (version, time) = match (git(&["rev-parse", "--short=7", "HEAD"]), git(&["log", "-1", "--format=%ct"])) {
            (Some(hash), Some(ct)) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
                let secs: u64 = ct.parse().map_err(|_| format!("git printed a strange commit time {ct:?}"))?;
                if dirty {
                    (format!("{yml_version}-{hash}-dirty"), std::time::SystemTime::now())
                } else {
                    (format!("{yml_version}-{hash}"), std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                }
            }
            _ => (yml_version, std::time::SystemTime::now()),
        };
        // RFC 3339 "YYYY-MM-DDThh:mm:ssZ" -> Stash's "YYYY-MM-DD hh:mm:ss" (UTC).
        let rfc = humantime::format_rfc3339_seconds(time).to_string();
        let date = rfc.trim_end_matches('Z').replacen('T', " ", 1);
        Ok(Source { version, date, time })
    }
}

/// A file of the plugin folder: its path in the zip, its bytes, its mode.
struct Staged {
    name: String,
    bytes: Vec<u8>,
    mode: u32,
}

fn stage(root: &Path, binaries: &[(Target, PathBuf)]) -> Result<Vec<Staged>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let plugin = root.join("host/plugin");
    // A Windows checkout may have turned the launcher's line ends into CRLF,
    // which /bin/sh cannot run.
    let launcher: Vec<u8> = read(&plugin.join("stash2plex"))?.into_iter().filter(|&b| b != b'\r').collect();
    let mut files = vec![
        Staged {
            name: format!("{PLUGIN_ID}.yml"),
            bytes: read(&plugin.join(format!("{PLUGIN_ID}.yml")))?,
            mode: 0o644,
        },
        Staged { name: "stash2plex".into(), bytes: launcher, mode: 0o755 },
    ];
    for (t, path) in binaries {
        files.push(Staged { name: t.zip_path().into(), bytes: read(path)?, mode: 0o755 });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn write_zip(path: &Path, files: &[Staged], source: &Source) -> Result<(), String> {
    let rfc = humantime::format_rfc3339_seconds(source.time).to_string();
    let part = |a: usize, b: usize| rfc.get(a..b).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    let stamp = zip::DateTime::from_date_and_time(
        part(0, 4),
        part(5, 7) as u8,
        part(8, 10) as u8,
        part(11, 13) as u8,
        part(14, 16) as u8,
        part(17, 19) as u8,
    )
    .map_err(|e| format!("cannot date the zip entries ({rfc}): {e}"))?;
    let tmp = path.with_extension("zip.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    for f in files {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9))
            .unix_permissions(f.mode)
            .last_modified_time(stamp);
        zip.start_file(f.name.as_str(), opts).map_err(|e| format!("zip: {e}"))?;
        zip.write_all(&f.bytes).map_err(|e| format!("zip: {e}"))?;
    }
    zip.finish().map_err(|e| format!("zip: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_index(path: &Path, e: &IndexEntry) -> Result<(), String> {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let text = format!(
        "# A Stash plugin source. In Stash: Settings -> Plugins -> Available Plugins -> Add Source,\n\
         # with the URL (or path) of this file. Written by `stash2plex-lab package`.\n\
         - id: {}\n  name: {}\n  version: {}\n  date: {}\n  path: {}\n  sha256: {}\n  metadata:\n    description: {}\n",
        q(&e.id),
        q(&e.name),
        q(&e.version),
        q(&e.date),
        q(&e.path),
        q(&e.sha256),
        q("Keeps Plex in step with Stash. One static binary, no Python: Linux x86_64/arm64 and Windows x86_64."),
    );
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The zip's entries and the modes they must carry, for `targets`.
pub fn expected_entries(targets: &[Target]) -> Vec<(String, u32)> {
    let mut v = vec![(format!("{PLUGIN_ID}.yml"), 0o644), ("stash2plex".to_string(), 0o755)];
    v.extend(targets.iter().map(|t| (t.zip_path().to_string(), 0o755)));
    v.sort();
    v
}

/// Check the package in `out` as Stash will use it. Returns what was
/// checked, for the report.
pub fn verify(out: &Path, targets: &[Target]) -> Result<String, String> {
    let index = out.join("index.yml");
    let entries = stash_plugins::read_index(&index)?;
    let [entry] = entries.as_slice() else {
        return Err(format!("{} should list one package, it lists {}", index.display(), entries.len()));
    };
    let zip_bytes = std::fs::read(out.join(&entry.path)).map_err(|e| format!("cannot read {}: {e}", entry.path))?;
    if stash_plugins::sha256_hex(&zip_bytes) != entry.sha256 {
        return Err(format!("{}: the sha256 in index.yml does not match the zip", out.display()));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&zip_bytes))
        .map_err(|e| format!("{} is not a zip: {e}", entry.path))?;
    let mut found = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index(i).map_err(|e| format!("zip entry {i}: {e}"))?;
        let name = f.name().map_err(|e| format!("zip entry {i} has a bad name: {e}"))?.into_owned();
        let mode = f.unix_mode().ok_or_else(|| format!("{name} carries no Unix mode"))?;
        found.push((name, mode & 0o777));
    }
    found.sort();
    let want = expected_entries(targets);
    if found != want {
        return Err(format!("the zip holds {found:?}, expected {want:?}"));
    }
    // Install it as Stash would and load the plugins folder.
    let scratch = out.join(".verify");
    let _ = std::fs::remove_dir_all(&scratch);
    let source_dir = scratch.join("plugins").join("source");
    let pkg_dir = stash_plugins::install_package(&index, PLUGIN_ID, &source_dir)?;
    let loaded = stash_plugins::load_plugins(&scratch.join("plugins"))?;
    let [plugin] = loaded.as_slice() else {
        return Err(format!("the package holds {} plugin YAML files; Stash would load each", loaded.len()));
    };
    if plugin.id != PLUGIN_ID {
        return Err(format!("the plugin id would be {:?}, not {PLUGIN_ID}", plugin.id));
    }
    plugin.config.check_triggers()?;
    let unix = plugin.command(&[], &[], Os::Unix)?;
    if Path::new(&unix[0]) != pkg_dir.join("stash2plex") {
        return Err(format!("on Linux Stash would run {}, not the launcher", unix[0]));
    }
    let mut checked =
        format!("sha256, {} entries with their modes, strict YAML load, Linux runs the launcher", found.len());
    if targets.contains(&Target::WindowsX86_64) {
        let win = plugin.command(&[], &[], Os::Windows)?;
        if Path::new(&win[0]) != pkg_dir.join("stash2plex.exe") {
            return Err(format!("on Windows Stash would run {}, not stash2plex.exe", win[0]));
        }
        checked.push_str(", Windows runs stash2plex.exe");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(checked)
}
