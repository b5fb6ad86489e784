//! What Stash does with a plugin package and a plugin folder, for the
//! packaging command's self-check and the install tests (from Stash's
//! `pkg/pkg` and `pkg/plugin`, see shared/reference/stash-plugin-protocol.md):
//!
//! * [`read_index`]: a plugin source's `index.yml` (a list of packages).
//! * [`install_package`]: what *Install* / *Update* in Settings → Plugins
//!   do: check the zip's SHA-256 against the index, delete the files the
//!   previous version's `manifest` lists, write every file of the zip with
//!   the mode the zip stores, and write a new `manifest`. Anything else in
//!   the folder (our `data/`) is left alone.
//! * [`load_plugins`]: Stash's plugin loading: every `*.yml` below the
//!   plugins folder is decoded strictly (yaml.v2 `SetStrict`: an unknown or a
//!   duplicate key fails the plugin); the id is the file name.
//! * [`LoadedPlugin::command`]: the command line Stash runs for a task or a
//!   hook (`getExecCommand` and Go's `exec`): `exec[0]` looked up on PATH,
//!   else joined to the plugin folder, Windows adding `.exe`;
//!   `{pluginDir}` substituted in the arguments only.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A YAML mapping whose keys must be unique, as yaml.v2 in strict mode wants
/// (serde's own maps keep the last of two equal keys).
#[derive(Debug, Clone, PartialEq)]
pub struct StrictMap<V>(pub BTreeMap<String, V>);

impl<V> Default for StrictMap<V> {
    fn default() -> Self {
        StrictMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for StrictMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = StrictMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping with unique keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format!("key {k:?} already set in map")));
                    }
                    out.insert(k, v);
                }
                Ok(StrictMap(out))
            }
            // `key:` with nothing after it is null, which yaml.v2 takes as
            // an empty map.
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrictMap(BTreeMap::new()))
            }
        }
        d.deserialize_any(V2(std::marker::PhantomData))
    }
}

/// `pkg/plugin/config.go` `Config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub name: String,
    pub description: Option<String>,
    pub url: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub interface: Interface,
    #[serde(default)]
    pub exec: Vec<String>,
    #[serde(rename = "errLog", default)]
    pub err_log: String,
    #[serde(default)]
    pub tasks: Vec<OperationConfig>,
    #[serde(default)]
    pub hooks: Vec<OperationConfig>,
    pub ui: Option<UiConfig>,
    #[serde(default)]
    pub settings: StrictMap<SettingConfig>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub enum Interface {
    /// Absent or empty means raw.
    #[default]
    #[serde(rename = "raw", alias = "")]
    Raw,
    #[serde(rename = "rpc")]
    Rpc,
    #[serde(rename = "js")]
    Js,
}

/// A task (`OperationConfig`) or a hook (`HookConfig`, which is an
/// operation plus `triggeredBy`; a task with `triggeredBy` is refused by
/// [`parse_plugin_yaml`], as Stash's strict decoder does).
///
/// `defaultArgs` is `map[string]string` in Go; this is stricter than yaml.v2
/// (which turns `30` into "30"): values must be YAML strings, which is what
/// arrives in `args` anyway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "execArgs", default)]
    pub exec_args: Vec<String>,
    #[serde(rename = "defaultArgs", default)]
    pub default_args: StrictMap<String>,
    #[serde(rename = "triggeredBy")]
    pub triggered_by: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingConfig {
    /// Absent means STRING in Stash; see [`SettingConfig::kind`].
    #[serde(rename = "type")]
    pub declared_type: Option<SettingType>,
    #[serde(rename = "displayName", default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
}

impl SettingConfig {
    pub fn kind(&self) -> SettingType {
        self.declared_type.unwrap_or_default()
    }
}

/// Anything else is a load error in Stash.
#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
pub enum SettingType {
    #[default]
    #[serde(rename = "STRING")]
    String,
    #[serde(rename = "NUMBER")]
    Number,
    #[serde(rename = "BOOLEAN")]
    Boolean,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub javascript: Vec<String>,
    #[serde(default)]
    pub css: Vec<String>,
    #[serde(default)]
    pub assets: StrictMap<String>,
    pub csp: Option<UiCsp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiCsp {
    #[serde(rename = "script-src", default)]
    pub script_src: Vec<String>,
    #[serde(rename = "style-src", default)]
    pub style_src: Vec<String>,
    #[serde(rename = "connect-src", default)]
    pub connect_src: Vec<String>,
}

/// Every trigger Stash fires (`pkg/plugin/hook`); a misspelt one is not an
/// error in Stash, it just never fires, so [`PluginConfig::check_triggers`]
/// is a separate, stricter check.
pub const TRIGGERS: &[&str] = &[
    "Scene.Create.Post",
    "Scene.Update.Post",
    "Scene.Destroy.Post",
    "SceneMarker.Create.Post",
    "SceneMarker.Update.Post",
    "SceneMarker.Destroy.Post",
    "Image.Create.Post",
    "Image.Update.Post",
    "Image.Destroy.Post",
    "Gallery.Create.Post",
    "Gallery.Update.Post",
    "Gallery.Destroy.Post",
    "GalleryChapter.Create.Post",
    "GalleryChapter.Update.Post",
    "GalleryChapter.Destroy.Post",
    "Group.Create.Post",
    "Group.Update.Post",
    "Group.Destroy.Post",
    "Movie.Create.Post",
    "Movie.Update.Post",
    "Movie.Destroy.Post",
    "Performer.Create.Post",
    "Performer.Update.Post",
    "Performer.Destroy.Post",
    "Studio.Create.Post",
    "Studio.Update.Post",
    "Studio.Destroy.Post",
    "Tag.Create.Post",
    "Tag.Update.Post",
    "Tag.Merge.Post",
    "Tag.Destroy.Post",
];

/// Decode a plugin YAML the way Stash does (strict).
pub fn parse_plugin_yaml(text: &str) -> Result<PluginConfig, String> {
    let config = serde_norway::from_str::<PluginConfig>(text).map_err(|e| format!("Error loading plugin: {e}"))?;
    if let Some(task) = config.tasks.iter().find(|t| t.triggered_by.is_some()) {
        return Err(format!(
            "Error loading plugin: task {:?}: field triggeredBy not found in type plugin.OperationConfig",
            task.name
        ));
    }
    Ok(config)
}

impl PluginConfig {
    /// Triggers that Stash never fires.
    pub fn check_triggers(&self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .hooks
            .iter()
            .flat_map(|h| h.triggered_by.iter().flatten())
            .map(String::as_str)
            .filter(|t| !TRIGGERS.contains(t))
            .collect();
        if unknown.is_empty() { Ok(()) } else { Err(format!("triggers Stash never fires: {unknown:?}")) }
    }
}

/// A plugin as Stash loaded it.
#[derive(Debug)]
pub struct LoadedPlugin {
    /// The YAML's file name without `.yml`.
    pub id: String,
    pub yml: PathBuf,
    pub config: PluginConfig,
}

/// Load every `*.yml` below `plugins_dir` (recursively, following symlinks)
/// as Stash does. Any file that fails makes the whole result an error
/// (Stash logs it and skips that plugin; for a package that is a broken
/// install). Ids must be unique regardless of case.
pub fn load_plugins(plugins_dir: &Path) -> Result<Vec<LoadedPlugin>, String> {
    let mut ymls = Vec::new();
    walk(plugins_dir, &mut ymls).map_err(|e| format!("cannot walk {}: {e}", plugins_dir.display()))?;
    ymls.sort();
    let mut out: Vec<LoadedPlugin> = Vec::new();
    for yml in ymls {
        let text = std::fs::read_to_string(&yml).map_err(|e| format!("cannot read {}: {e}", yml.display()))?;
        let config = parse_plugin_yaml(&text).map_err(|e| format!("{}: {e}", yml.display()))?;
        let id = yml.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if out.iter().any(|p| p.id.eq_ignore_ascii_case(&id)) {
            return Err(format!("plugin id {id} is used twice ({})", yml.display()));
        }
        out.push(LoadedPlugin { id, yml, config });
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // metadata() follows symlinks, as Stash's walk does.
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Which operating system's process rules [`LoadedPlugin::command`] follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Os {
    Unix,
    /// Go's `exec` on Windows: a program named without an extension is
    /// found by trying `PATHEXT`'s extensions; the bare name is never run.
    Windows,
}

const WINDOWS_PATHEXT: [&str; 4] = [".com", ".exe", ".bat", ".cmd"];

impl LoadedPlugin {
    pub fn dir(&self) -> PathBuf {
        self.yml.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// The program and arguments Stash starts for `exec_args` (a task's or
    /// hook's `execArgs`), with `search_path` as PATH. `Err` when Go's
    /// `exec` would not find the program either.
    pub fn command(&self, exec_args: &[String], search_path: &[PathBuf], os: Os) -> Result<Vec<String>, String> {
        let mut argv: Vec<String> = self.config.exec.iter().chain(exec_args).cloned().collect();
        let Some(first) = argv.first().cloned() else {
            return Err(format!("plugin {} has no exec", self.id));
        };
        let dir = self.dir();
        // LookPath: a bare name is searched on PATH; a name with a slash
        // would be tried relative to Stash's working directory (not
        // modelled: ours is a bare name).
        let bare = !first.contains('/') && !first.contains('\\');
        let on_path = search_path.iter().filter(|_| bare).find_map(|p| find_executable(&p.join(&first), os));
        let program = match on_path {
            Some(p) => p,
            None => {
                let joined = dir.join(&first);
                find_executable(&joined, os)
                    .ok_or_else(|| format!("{} (exec[0] joined to the plugin folder) is not there", joined.display()))?
            }
        };
        argv[0] = program.to_string_lossy().into_owned();
        let dir_text = dir.to_string_lossy().into_owned();
        for arg in argv.iter_mut().skip(1) {
            *arg = arg.replace("{pluginDir}", &dir_text);
        }
        Ok(argv)
    }
}

fn find_executable(path: &Path, os: Os) -> Option<PathBuf> {
    match os {
        Os::Unix => is_executable(path).then(|| path.to_path_buf()),
        Os::Windows => {
            let name = path.file_name()?.to_string_lossy().into_owned();
            if path.extension().is_some() && path.is_file() {
                return Some(path.to_path_buf());
            }
            WINDOWS_PATHEXT.iter().map(|ext| path.with_file_name(format!("{name}{ext}"))).find(|p| p.is_file())
        }
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// One entry of a plugin source's `index.yml` (`pkg/pkg` `RemotePackage`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub id: String,
    pub name: String,
    pub version: String,
    /// UTC, `YYYY-MM-DD hh:mm:ss`; Stash offers an update when it is later
    /// than the installed one's.
    pub date: String,
    /// The zip, relative to the index (or a URL).
    pub path: String,
    /// Lower-case hex, compared with Go's `%x` of the zip's SHA-256.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_norway::Value>,
}

impl IndexEntry {
    /// The checks Stash's reader makes (a date it can parse), plus the ones
    /// that break installs silently (an absolute or escaping path).
    pub fn validate(&self) -> Result<(), String> {
        let d = self.date.as_bytes();
        let shape_ok = d.len() == 19
            && d.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(format!("date {:?} is not `YYYY-MM-DD hh:mm:ss`", self.date));
        }
        if self.id.is_empty() || self.name.is_empty() || self.version.is_empty() {
            return Err("id, name and version must be set".into());
        }
        if !(self.sha256.len() == 64 && self.sha256.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))) {
            return Err(format!("sha256 {:?} is not 64 lower-case hex digits", self.sha256));
        }
        if !self.path.contains("://") && !relative_inside(Path::new(&self.path)) {
            return Err(format!("path {:?} must be relative to the index", self.path));
        }
        Ok(())
    }
}

pub fn read_index(index: &Path) -> Result<Vec<IndexEntry>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("cannot read {}: {e}", index.display()))?;
    let entries: Vec<IndexEntry> =
        serde_norway::from_str(&text).map_err(|e| format!("{} is not a plugin index: {e}", index.display()))?;
    for e in &entries {
        e.validate().map_err(|msg| format!("{}: package {}: {msg}", index.display(), e.id))?;
    }
    Ok(entries)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Stash's record of an installed package (`<package dir>/manifest`).
#[derive(Debug, Deserialize, Serialize)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    pub date: String,
    pub files: Vec<String>,
}

/// Install package `id` from the source `index` into
/// `<source_dir>/<id>/`, as Stash's installer does (see the module doc).
/// Returns the package folder.
pub fn install_package(index: &Path, id: &str, source_dir: &Path) -> Result<PathBuf, String> {
    let entries = read_index(index)?;
    let entry = entries.iter().find(|e| e.id == id).ok_or_else(|| format!("no package {id} in {}", index.display()))?;
    let zip_path = index.parent().unwrap_or(Path::new(".")).join(&entry.path);
    let bytes = std::fs::read(&zip_path).map_err(|e| format!("cannot read {}: {e}", zip_path.display()))?;
    let sha = sha256_hex(&bytes);
    if sha != entry.sha256 {
        return Err(format!("package data ({sha}) does not match expected SHA256 ({})", entry.sha256));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("reading zip data: {e}"))?;
    let pkg_dir = source_dir.join(&entry.id);
    let manifest_path = pkg_dir.join("manifest");
    // Update: the previous version's files go first (errors ignored).
    if let Ok(text) = std::fs::read_to_string(&manifest_path) {
        let old: Manifest = serde_norway::from_str(&text).map_err(|e| format!("reading manifest: {e}"))?;
        for f in old.files {
            let _ = std::fs::remove_file(pkg_dir.join(f));
        }
        std::fs::remove_file(&manifest_path).map_err(|e| format!("deleting manifest: {e}"))?;
    }
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| format!("reading zip entry {i}: {e}"))?;
        if file.is_dir() {
            continue;
        }
        let name = file.name().map_err(|e| format!("zip entry {i} has a bad name: {e}"))?.into_owned();
        if !relative_inside(Path::new(&name)) {
            return Err(format!("zip entry {name:?} leaves the package folder"));
        }
        // Go's FileHeader.Mode(): the Unix mode when the zip was made on
        // Unix; otherwise (MS-DOS attributes) no execute bits.
        let mode = file.unix_mode().unwrap_or(0o666) & 0o777;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| format!("reading {name}: {e}"))?;
        let dest = pkg_dir.join(&name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating directory {}: {e}", parent.display()))?;
        }
        write_with_mode(&dest, &data, mode).map_err(|e| format!("writing file {name:?}: {e}"))?;
        files.push(name);
    }
    let manifest = Manifest {
        id: entry.id.clone(),
        name: entry.name.clone(),
        version: entry.version.clone(),
        date: entry.date.clone(),
        files,
    };
    let text = serde_norway::to_string(&manifest).map_err(|e| format!("writing manifest: {e}"))?;
    std::fs::write(&manifest_path, text).map_err(|e| format!("writing manifest: {e}"))?;
    Ok(pkg_dir)
}

/// Stash's *Uninstall*: the manifest's files, the manifest, then the folder
/// if it is empty now (Stash ignores that error, so `data/` survives).
pub fn uninstall_package(source_dir: &Path, id: &str) -> Result<(), String> {
    let pkg_dir = source_dir.join(id);
    let manifest_path = pkg_dir.join("manifest");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| format!("getting manifest: {e}"))?;
    let manifest: Manifest = serde_norway::from_str(&text).map_err(|e| format!("getting manifest: {e}"))?;
    for f in manifest.files {
        let _ = std::fs::remove_file(pkg_dir.join(f));
    }
    std::fs::remove_file(&manifest_path).map_err(|e| format!("deleting manifest: {e}"))?;
    let _ = std::fs::remove_dir(&pkg_dir);
    Ok(())
}

/// `O_CREATE|O_TRUNC` with `mode` (the umask applies, as in Go).
fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)?.write_all(data)
}

fn relative_inside(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_loading_refuses_unknown_and_duplicate_keys_and_bad_types() {
        let ok = "name: X\nexec:\n  - x\ntasks:\n  - name: T\n    defaultArgs:\n      mode: a\nsettings:\n  k:\n    type: BOOLEAN\n";
        let c = parse_plugin_yaml(ok).unwrap();
        assert_eq!(c.interface, Interface::Raw);
        assert_eq!(c.settings.0["k"].kind(), SettingType::Boolean);
        for (bad, why) in [
            ("name: X\nid: X\n", "unknown top-level key"),
            ("name: X\nname: Y\n", "duplicate top-level key"),
            ("settings:\n  k:\n    type: BOOL\n", "bad setting type"),
            ("settings:\n  k:\n    type: STRING\n  k:\n    type: NUMBER\n", "duplicate setting"),
            ("tasks:\n  - name: T\n    defaultArg:\n      mode: a\n", "unknown task key"),
            ("tasks:\n  - name: T\n    triggeredBy: [Scene.Update.Post]\n", "a task is no hook"),
            ("tasks:\n  - name: T\n    defaultArgs:\n      mode: a\n      mode: b\n", "duplicate arg"),
            ("interface: python\n", "bad interface"),
            ("requires: [Other]\n", "requires is a comment, not a key"),
        ] {
            assert!(parse_plugin_yaml(bad).is_err(), "{why} must fail: {bad:?}");
        }
        let hooks = parse_plugin_yaml("hooks:\n  - name: H\n    triggeredBy: [Scene.Updated.Post]\n").unwrap();
        assert!(hooks.check_triggers().is_err());
    }

    #[test]
    fn index_entries_are_checked() {
        let good = IndexEntry {
            id: "P".into(),
            name: "P".into(),
            version: "1".into(),
            date: "2026-01-02 03:04:05".into(),
            path: "P.zip".into(),
            sha256: "a".repeat(64),
            requires: vec![],
            metadata: BTreeMap::new(),
        };
        assert!(good.validate().is_ok());
        for bad in [
            IndexEntry { date: "2026-01-02T03:04:05Z".into(), ..good.clone() },
            IndexEntry { path: "/srv/P.zip".into(), ..good.clone() },
            IndexEntry { path: "../P.zip".into(), ..good.clone() },
            IndexEntry { sha256: "A".repeat(64), ..good.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
